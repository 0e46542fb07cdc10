//! Input parsing for `fibo`: numbers and ranges from arguments, files or stdin.
//!
//! A token is `N`, `A..B` (end excluded) or `A..=B` (end included). A number is
//! decimal digits with optional single `_` separators (`1_000_000`), with or
//! without a decimal point and an exponent (`1e6`, `1E+6`, `2.5e3`, `1.0`), as
//! long as its value is a whole number (`2.5` and `1e-3` are refused).
//! Every value must fit in a `u64`. Each rejection carries a one-line,
//! lower-case reason.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};

/// One parsed input: a single n or an inclusive, non-empty run of n.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item {
    /// A single n.
    Single(u64),
    /// Every n from `first` to `last`, both included; always `first <= last`.
    Range {
        /// The first n of the run.
        first: u64,
        /// The last n of the run.
        last: u64,
    },
}

impl Item {
    /// How many n this item yields; saturates at `u64::MAX` for `0..=u64::MAX`. Never 0: a
    /// range holds `first..=last` with `first <= last`, so there is no `is_empty`.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u64 {
        match *self {
            Item::Single(_) => 1,
            Item::Range { first, last } => (last - first).saturating_add(1),
        }
    }

    /// The largest n this item yields.
    pub fn max(&self) -> u64 {
        match *self {
            Item::Single(n) | Item::Range { last: n, .. } => n,
        }
    }

    /// The n of this item, in increasing order.
    pub fn iter(&self) -> std::ops::RangeInclusive<u64> {
        match *self {
            Item::Single(n) => n..=n,
            Item::Range { first, last } => first..=last,
        }
    }
}

/// Where a token came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// 1-based position among the positional inputs.
    Arg(usize),
    /// A line of a file (path as given) or of stdin (`"<stdin>"`), 1-based.
    Line {
        /// The file path as given, or `"<stdin>"`; shared by every line of one file.
        source: std::sync::Arc<str>,
        /// The 1-based line number.
        line: usize,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Arg(i) => write!(f, "argument {i}"),
            Origin::Line { source, line } => write!(f, "{}:{line}", shown(source)),
        }
    }
}

/// A token that is not a valid number or range, with where it came from and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid input '{token}' at {origin}: {reason}")]
pub struct InputError {
    /// The offending token as [`shown`]: control characters escaped, cut when long.
    pub token: String,
    /// Where the token came from.
    pub origin: Origin,
    /// Why it was rejected (one lower-case line).
    pub reason: String,
}

/// Failure to read inputs from a file or stdin.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A token was read but is invalid.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The file could not be opened or read.
    #[error("cannot read '{path}': {source}")]
    Io {
        /// The file path as given, or `"<stdin>"`.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A line (outside its comment) is not valid UTF-8.
    #[error("'{path}' line {line} is not valid UTF-8")]
    Utf8 {
        /// The file path as given, or `"<stdin>"`.
        path: String,
        /// The 1-based line number.
        line: usize,
    },
}

/// How many characters of a bad token an error line shows.
const SHOWN_CHARS: usize = 40;

/// A token as an error line shows it: control characters escaped (`\u{1b}`, `\0`, `\t`), and
/// cut after its first 40 characters with the full size added (`1234...5 (104857600 bytes)`),
/// so a 100 MB bad line gives a short error line and nothing raw reaches the terminal.
pub fn shown(token: &str) -> String {
    let mut out = String::new();
    let mut chars = token.chars();
    for c in chars.by_ref().take(SHOWN_CHARS) {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    if chars.next().is_some() {
        out.push_str(&format!("... ({} bytes)", token.len()));
    }
    out
}

impl InputError {
    /// The error for `token` at `origin`: the token kept as [`shown`].
    pub fn new(token: &str, origin: Origin, reason: String) -> Self {
        let token = shown(token);
        InputError {
            token,
            origin,
            reason,
        }
    }
}

fn io_error(path: &str) -> impl FnOnce(std::io::Error) -> ReadError + '_ {
    move |source| ReadError::Io {
        path: path.to_owned(),
        source,
    }
}

const EMPTY: &str = "empty input; expected a number such as 42 or a range such as 1..10";
const NEGATIVE: &str = "negative numbers are not accepted";
const PLUS: &str = "a leading '+' is not accepted; write the number without a sign";
const HEX: &str = "hexadecimal is not accepted; write decimal digits";
const OCTAL: &str = "octal is not accepted; write decimal digits";
const BINARY: &str = "binary is not accepted; write decimal digits";
const FRACTION: &str = "fractions are not accepted; write a whole number";
const OVERFLOW: &str = "does not fit in 64 bits (max 18446744073709551615)";
const UNDERSCORE: &str = "'_' is accepted only as a single separator between digits";
const WHITESPACE: &str = "contains whitespace; give one number or range per argument";
const NO_MANTISSA: &str = "missing digits before the exponent; write e.g. 1e6";
const NO_EXPONENT: &str = "missing exponent digits after 'e'; write e.g. 1e6";
const NOT_A_NUMBER: &str =
    "not a number; expected decimal digits (42, 1_000), scientific (1e6) or a range (1..10)";
const NO_START: &str = "range has no start; write 1..10 or 1..=10";
const NO_END: &str = "range has no end; write 1..10 or 1..=10";
const TOO_MANY_DOTS: &str = "too many dots in range; write 1..10 or 1..=10";
const TWO_RANGES: &str = "only one '..' is accepted in a range; write 1..10 or 1..=10";

/// Parses one number; on failure returns the reason it was rejected.
pub fn parse_number(token: &str) -> Result<u64, String> {
    number(token).map_err(str::to_owned)
}

/// Parses one token (`N`, `A..B` or `A..=B`); `Ok(None)` for an empty range `A..A`.
pub fn parse_token(token: &str) -> Result<Option<Item>, String> {
    let Some(dots) = token.find("..") else {
        return parse_number(token).map(|n| Some(Item::Single(n)));
    };
    let (start, rest) = (&token[..dots], &token[dots + 2..]);
    let (inclusive, end) = match rest.strip_prefix('=') {
        Some(end) => (true, end),
        None => (false, rest),
    };
    let shape = if end.starts_with('.') {
        Some(TOO_MANY_DOTS)
    } else if end.contains("..") {
        Some(TWO_RANGES)
    } else if start.is_empty() {
        Some(NO_START)
    } else if end.is_empty() {
        Some(NO_END)
    } else {
        None
    };
    if let Some(reason) = shape {
        return Err(reason.to_owned());
    }
    let (first, end) = (parse_number(start)?, parse_number(end)?);
    if first > end {
        return Err(format!("range start {first} is greater than its end {end}"));
    }
    if first == end && !inclusive {
        return Ok(None);
    }
    let last = if inclusive { end } else { end - 1 };
    Ok(Some(Item::Range { first, last }))
}

fn number(t: &str) -> Result<u64, &'static str> {
    let b = t.as_bytes();
    // Fast path: plain decimal digits that cannot overflow.
    if !b.is_empty() && b.len() <= 19 && b.iter().all(u8::is_ascii_digit) {
        return Ok(b.iter().fold(0, |acc, &d| acc * 10 + u64::from(d - b'0')));
    }
    match b {
        [] => return Err(EMPTY),
        [b'-', ..] => return Err(NEGATIVE),
        [b'+', ..] => return Err(PLUS),
        [b'0', b'x' | b'X', ..] => return Err(HEX),
        [b'0', b'o' | b'O', ..] => return Err(OCTAL),
        [b'0', b'b' | b'B', ..] => return Err(BINARY),
        _ => {}
    }
    if t.contains(char::is_whitespace) {
        return Err(WHITESPACE);
    }
    if let Some((num, den)) = t.split_once('/') {
        let both = digits(num).is_ok() && digits(den).is_ok();
        return Err(if both { FRACTION } else { NOT_A_NUMBER });
    }
    let (mantissa, exponent) = match t.split_once(['e', 'E']) {
        Some(("", _)) => return Err(NO_MANTISSA),
        Some((m, e)) => (m, Some(e)),
        None => (t, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    digits(int)?;
    frac.map_or(Ok(()), digits)?;
    let Some(exponent) = exponent else {
        return scale(int, frac.unwrap_or(""), 0);
    };
    let (negative, magnitude) = match exponent.as_bytes().first() {
        Some(b'-') => (true, &exponent[1..]),
        Some(b'+') => (false, &exponent[1..]),
        _ => (false, exponent),
    };
    if magnitude.is_empty() {
        return Err(NO_EXPONENT);
    }
    digits(magnitude)?;
    // Saturates, so a huge exponent costs nothing and still overflows (or is a fraction).
    let e = digit_values(magnitude).fold(0, |acc: i64, d| {
        acc.saturating_mul(10).saturating_add(i64::from(d))
    });
    scale(int, frac.unwrap_or(""), if negative { -e } else { e })
}

/// The digit values of an already validated run, skipping `_`.
fn digit_values(s: &str) -> impl DoubleEndedIterator<Item = u8> + '_ {
    s.bytes().filter(u8::is_ascii_digit).map(|d| d - b'0')
}

/// Checks a run of decimal digits with single `_` separators between digits.
fn digits(s: &str) -> Result<(), &'static str> {
    let b = s.as_bytes();
    if b.is_empty() || !b.iter().all(|&c| c.is_ascii_digit() || c == b'_') {
        Err(NOT_A_NUMBER)
    } else if b[0] == b'_' || b[b.len() - 1] == b'_' || s.contains("__") {
        Err(UNDERSCORE)
    } else {
        Ok(())
    }
}

/// The value of `int.frac * 10^exp` (validated digit runs), if whole and in range.
fn scale(int: &str, frac: &str, exp: i64) -> Result<u64, &'static str> {
    let all = || digit_values(int).chain(digit_values(frac));
    let total = all().count();
    let lead = all().take_while(|&d| d == 0).count();
    if lead == total {
        return Ok(0);
    }
    let trail = all().rev().take_while(|&d| d == 0).count();
    let wide = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let shift = exp.saturating_add(wide(trail) - wide(digit_values(frac).count()));
    if shift < 0 {
        return Err(FRACTION);
    }
    let shift = u32::try_from(shift).map_err(|_| OVERFLOW)?;
    all()
        .skip(lead)
        .take(total - lead - trail)
        .try_fold(0u64, |acc, d| {
            acc.checked_mul(10)?.checked_add(u64::from(d))
        })
        .and_then(|m| 10u64.checked_pow(shift)?.checked_mul(m))
        .ok_or(OVERFLOW)
}

/// The inputs of one run, in order, stored compactly: about 4 to 7 bytes per token.
///
/// Consecutive values merge into one run (`1 2 3 4` is stored as `1..=4`), so `seq 1 10000000`
/// costs a few bytes in all. Other entries are varint-encoded in one byte buffer with the place
/// of their token as a delta from the previous one (an argument number, or a file and line),
/// instead of an `(Item, Origin)` pair of about 48 bytes (94 with the vector's slack). The
/// place is kept because messages about an input name it; a merged run carries the place of
/// its last token, whose n is the run's largest.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// Entries before `open`, encoded (see [`Inputs::encode`]).
    bytes: Vec<u8>,
    /// The last entry, still open to merging.
    open: Option<Entry>,
    /// Files and stdin, by index; arguments have the source [`ARGS`].
    sources: Vec<std::sync::Arc<str>>,
    /// The source and line of the last encoded entry, the base of the next delta.
    base: (u32, u64),
    count: u64,
    entries: usize,
    max: Option<(u64, Origin)>,
}

/// The source index of positional arguments (the "line" is the argument number).
const ARGS: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    first: u64,
    last: u64,
    source: u32,
    line: u64,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = bytes[*pos];
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return v;
        }
        shift += 7;
    }
}

const RANGE: u8 = 1;
const NEW_SOURCE: u8 = 2;

impl Inputs {
    /// No inputs.
    pub fn new() -> Self {
        Inputs::default()
    }

    /// Appends `item`, which came from `origin`.
    pub fn push(&mut self, item: Item, origin: &Origin) {
        let (source, line) = match origin {
            Origin::Arg(i) => (ARGS, *i as u64),
            Origin::Line { source, line } => {
                let same = self
                    .sources
                    .last()
                    .is_some_and(|s| std::sync::Arc::ptr_eq(s, source));
                if !same {
                    self.sources.push(std::sync::Arc::clone(source));
                }
                (self.sources.len() as u32 - 1, *line as u64)
            }
        };
        self.push_at(item, source, line, origin);
    }

    fn push_at(&mut self, item: Item, source: u32, line: u64, origin: &Origin) {
        let (first, last) = match item {
            Item::Single(n) => (n, n),
            Item::Range { first, last } => (first, last),
        };
        self.count = self.count.saturating_add(item.len());
        if self.max.as_ref().is_none_or(|(m, _)| last > *m) {
            self.max = Some((last, origin.clone()));
        }
        if let Some(open) = &mut self.open {
            if open.last.checked_add(1) == Some(first) {
                *open = Entry {
                    last,
                    source,
                    line,
                    ..*open
                };
                return;
            }
        }
        let next = Entry {
            first,
            last,
            source,
            line,
        };
        if let Some(done) = self.open.replace(next) {
            self.encode(done);
        }
        self.entries += 1;
    }

    /// One entry: a tag (range? new source?), the first n, the run length, the source if it
    /// changed, and the line (a delta within one source).
    fn encode(&mut self, e: Entry) {
        let new_source = e.source != self.base.0 || self.bytes.is_empty();
        let tag =
            if e.last != e.first { RANGE } else { 0 } | if new_source { NEW_SOURCE } else { 0 };
        self.bytes.push(tag);
        put_varint(&mut self.bytes, e.first);
        if tag & RANGE != 0 {
            put_varint(&mut self.bytes, e.last - e.first);
        }
        if new_source {
            put_varint(&mut self.bytes, u64::from(e.source));
            put_varint(&mut self.bytes, e.line);
        } else {
            put_varint(&mut self.bytes, e.line - self.base.1);
        }
        self.base = (e.source, e.line);
    }

    #[cfg_attr(not(test), allow(dead_code))] // for `fibo serve`
    /// Appends every input of `other`, in order.
    pub fn append(&mut self, other: Inputs) {
        for (item, origin) in other.iter() {
            self.push(item, &origin);
        }
    }

    /// How many n the inputs yield (saturating at `u64::MAX`).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether there is no input at all.
    pub fn is_empty(&self) -> bool {
        self.open.is_none()
    }

    #[cfg_attr(not(test), allow(dead_code))] // for `fibo serve`
    /// How many runs are stored (after merging).
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// The largest n and the place of its (first) token.
    pub fn max(&self) -> Option<(u64, &Origin)> {
        self.max.as_ref().map(|(n, o)| (*n, o))
    }

    /// Heap bytes these inputs hold.
    pub fn heap_bytes(&self) -> u64 {
        let sources: usize = self.sources.iter().map(|s| s.len() + 16).sum();
        (self.bytes.capacity() + self.sources.capacity() * 8 + sources) as u64
    }

    /// The inputs with their places, in order.
    pub fn iter(&self) -> impl Iterator<Item = (Item, Origin)> + '_ {
        let mut cursor = Cursor::default();
        std::iter::from_fn(move || cursor.next(&self.bytes))
            .chain(self.open)
            .map(|e| (e.item(), self.origin(e)))
    }

    /// The inputs without their places, in order, owning the storage: what a run consumes.
    pub fn into_items(self) -> impl Iterator<Item = Item> + Send + 'static {
        let Inputs { bytes, open, .. } = self;
        let mut cursor = Cursor::default();
        std::iter::from_fn(move || cursor.next(&bytes))
            .chain(open)
            .map(|e| e.item())
    }

    fn origin(&self, e: Entry) -> Origin {
        if e.source == ARGS {
            Origin::Arg(e.line as usize)
        } else {
            Origin::Line {
                source: std::sync::Arc::clone(&self.sources[e.source as usize]),
                line: e.line as usize,
            }
        }
    }
}

impl Entry {
    fn item(self) -> Item {
        if self.first == self.last {
            Item::Single(self.first)
        } else {
            Item::Range {
                first: self.first,
                last: self.last,
            }
        }
    }
}

/// A decoding position in [`Inputs::bytes`].
#[derive(Default)]
struct Cursor {
    pos: usize,
    base: (u32, u64),
}

impl Cursor {
    fn next(&mut self, bytes: &[u8]) -> Option<Entry> {
        let tag = *bytes.get(self.pos)?;
        self.pos += 1;
        let first = get_varint(bytes, &mut self.pos);
        let last = if tag & RANGE != 0 {
            first + get_varint(bytes, &mut self.pos)
        } else {
            first
        };
        let (source, line) = if tag & NEW_SOURCE != 0 {
            let source = get_varint(bytes, &mut self.pos) as u32;
            (source, get_varint(bytes, &mut self.pos))
        } else {
            (self.base.0, self.base.1 + get_varint(bytes, &mut self.pos))
        };
        self.base = (source, line);
        Some(Entry {
            first,
            last,
            source,
            line,
        })
    }
}

#[cfg_attr(not(test), allow(dead_code))] // for `fibo serve`
/// Parses whitespace-separated tokens read line by line; `#` starts a comment to
/// the end of the line (also right after a token: `10#x` is the token `10`).
/// Comments may hold any bytes; the rest of each line must be UTF-8.
pub fn parse_text<R: BufRead>(reader: R, source: &str) -> Result<Inputs, ReadError> {
    let mut inputs = Inputs::new();
    parse_text_into(reader, source, &mut inputs)?;
    Ok(inputs)
}

/// [`parse_text`], appending to `inputs`.
pub fn parse_text_into<R: BufRead>(
    mut reader: R,
    source: &str,
    inputs: &mut Inputs,
) -> Result<(), ReadError> {
    let mut buf = Vec::with_capacity(256);
    let mut line = 0;
    let shared: std::sync::Arc<str> = source.into();
    loop {
        buf.clear();
        let read = reader.read_until(b'\n', &mut buf);
        if read.map_err(io_error(source))? == 0 {
            inputs.bytes.shrink_to_fit();
            return Ok(());
        }
        line += 1;
        let mut bytes = buf.as_slice();
        if line == 1 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        if let Some(hash) = bytes.iter().position(|&b| b == b'#') {
            bytes = &bytes[..hash];
        }
        let path = || source.to_owned();
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Err(ReadError::Utf8 { path: path(), line });
        };
        let mut origin = None;
        for token in text.split_whitespace() {
            let origin = origin.get_or_insert_with(|| Origin::Line {
                source: std::sync::Arc::clone(&shared),
                line,
            });
            match parse_token(token) {
                Ok(Some(item)) => inputs.push(item, origin),
                Ok(None) => {}
                Err(reason) => return Err(InputError::new(token, origin.clone(), reason).into()),
            }
        }
    }
}

/// Parses positional arguments, one token each.
pub fn parse_args(args: &[String]) -> Result<Inputs, InputError> {
    let mut inputs = Inputs::new();
    for (i, arg) in args.iter().enumerate() {
        match parse_token(arg) {
            Ok(item) => {
                if let Some(item) = item {
                    inputs.push(item, &Origin::Arg(i + 1));
                }
            }
            Err(reason) => return Err(InputError::new(arg, Origin::Arg(i + 1), reason)),
        }
    }
    Ok(inputs)
}

#[cfg_attr(not(test), allow(dead_code))] // for `fibo serve`
/// Reads and parses a whole file; `-` means stdin (source name `"<stdin>"`).
pub fn read_file(path: &str) -> Result<Inputs, ReadError> {
    let mut inputs = Inputs::new();
    read_file_into(path, &mut inputs)?;
    Ok(inputs)
}

/// [`read_file`], appending to `inputs`.
pub fn read_file_into(path: &str, inputs: &mut Inputs) -> Result<(), ReadError> {
    if path == "-" {
        return parse_text_into(std::io::stdin().lock(), "<stdin>", inputs);
    }
    let file = File::open(path).map_err(io_error(path))?;
    parse_text_into(BufReader::with_capacity(1 << 16, file), path, inputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn items(inputs: &Inputs) -> Vec<Item> {
        inputs.iter().map(|(item, _)| item).collect()
    }

    fn values(inputs: &Inputs) -> Vec<u64> {
        inputs.iter().flat_map(|(item, _)| item.iter()).collect()
    }

    fn range(first: u64, last: u64) -> Item {
        Item::Range { first, last }
    }

    #[test]
    fn accepts_every_number_form() {
        let cases = "0=0 42=42 007=7 1_000_000=1000000 1e6=1000000 1E6=1000000 1e+6=1000000 \
            2.5e3=2500 2.50e3=2500 1000e-3=1 1e0=1 0e999999999999=0 1_0e1_0=100000000000 \
            18446744073709551615=18446744073709551615 1e19=10000000000000000000 \
            10000000000000000000=10000000000000000000 000000000000000000000042=42 \
            1.8446744073709551615e19=18446744073709551615 1.0=1 2.00=2 10.000=10 100.0e-2=1";
        for case in cases.split(' ') {
            let (token, value) = case.split_once('=').unwrap();
            let value: u64 = value.parse().unwrap();
            assert_eq!(parse_number(token), Ok(value), "{token}");
            assert_eq!(parse_token(token), Ok(Some(Item::Single(value))), "{token}");
        }
    }

    #[test]
    fn rejects_with_clear_reasons() {
        // Each line: tokens | words their reason must contain.
        let cases = "
            -5 -1..3 3..-1 | negative numbers are not accepted
            2.5 1.5e0 1e-3 1/2 1e-999999999999 0.1 2.05 | fractions are not accepted; write a whole number
            0x10 0X10 | hexadecimal is not accepted; write decimal digits
            0o7 | octal is not accepted
            0b1 | binary is not accepted
            18446744073709551616 | does not fit in 64 bits (max 18446744073709551615)
            99999999999999999999999 1e20 1e999999999999 1.9e19 | does not fit in 64 bits
            10..5 | range start 10 is greater than its end 5
            10..=9 | range start 10 is greater than its end 9
            1.. 1..= | range has no end
            ..5 ..=5 | range has no start
            1...5 | too many dots
            1..2..3 | only one '..'
            +5 +1..3 | a leading '+' is not accepted
            1__0 _1 1_ 1e1_ | '_' is accepted only as a single separator between digits
            abc 1. .5 1e5e3 0_x 1,000 ten | not a number
            1e 1e+ 1e- | missing exponent
            e5 E5 | missing digits before the exponent";
        for line in cases.lines().skip(1) {
            let (tokens, needle) = line.split_once(" | ").unwrap();
            for token in tokens.split_whitespace() {
                let reason = parse_token(token).unwrap_err();
                assert!(
                    reason.contains(needle),
                    "{token}: {reason:?} lacks {needle:?}"
                );
                assert_eq!(reason, reason.to_lowercase(), "{token}");
            }
        }
        assert!(parse_token("").unwrap_err().starts_with("empty input"));
        assert!(parse_number("1 2").unwrap_err().contains("whitespace"));
        assert_eq!(parse_number("-5").unwrap_err(), NEGATIVE);
    }

    #[test]
    fn huge_tokens_are_cheap() {
        let long = "9".repeat(1_000_000);
        assert_eq!(parse_number(&long).unwrap_err(), OVERFLOW);
        let tiny = format!("0.{}1e5", "0".repeat(1_000_000));
        assert_eq!(parse_number(&tiny).unwrap_err(), FRACTION);
    }

    #[test]
    fn error_lines_cut_long_tokens_and_escape_control_characters() {
        let long = format!("x{}", "9".repeat(100 << 20));
        let err = parse_args(&[long]).unwrap_err().to_string();
        assert!(err.len() < 200, "{} bytes", err.len());
        assert!(err.contains("'x999999999999999999999999999999999999999... (104857601 bytes)'"));
        let raw = "\u{1b}[31mred\0\t\u{7f}";
        let err = parse_args(&[raw.to_owned()]).unwrap_err().to_string();
        assert!(!err.chars().any(char::is_control), "{err:?}");
        assert!(err.contains(r"'\u{1b}[31mred\0\t\u{7f}'"), "{err}");
        assert_eq!(shown("short"), "short");
        assert_eq!(shown(&"é".repeat(40)), "é".repeat(40));
        assert_eq!(
            shown(&"é".repeat(41)),
            format!("{}... (82 bytes)", "é".repeat(40))
        );
    }

    #[test]
    fn parses_ranges_and_items() {
        assert_eq!(parse_token("1..4"), Ok(Some(range(1, 3))));
        assert_eq!(parse_token("1..=4"), Ok(Some(range(1, 4))));
        assert_eq!(parse_token("5..6"), Ok(Some(range(5, 5))));
        assert_eq!(parse_token("5..=5"), Ok(Some(range(5, 5))));
        assert_eq!(parse_token("5..5"), Ok(None));
        assert_eq!(parse_token("1e3..=1_002"), Ok(Some(range(1000, 1002))));
        let full = parse_token("0..=18446744073709551615").unwrap().unwrap();
        assert_eq!(full, range(0, u64::MAX));
        assert_eq!((full.len(), full.max()), (u64::MAX, u64::MAX));
        let tail = parse_token("7..=18446744073709551615").unwrap().unwrap();
        assert_eq!(tail.len(), u64::MAX - 6);
        let single = Item::Single(9);
        assert_eq!((single.len(), single.max()), (1, 9));
        assert_eq!(single.iter().collect::<Vec<_>>(), [9]);
        assert_eq!(range(3, 6).iter().collect::<Vec<_>>(), [3, 4, 5, 6]);
        let top: Vec<u64> = range(u64::MAX - 2, u64::MAX).iter().collect();
        assert_eq!(top, [u64::MAX - 2, u64::MAX - 1, u64::MAX]);
    }

    #[test]
    fn origin_and_error_display() {
        assert_eq!(Origin::Arg(3).to_string(), "argument 3");
        let line = |source: &str, line| Origin::Line {
            source: source.into(),
            line,
        };
        assert_eq!(line("nums.txt", 12).to_string(), "nums.txt:12");
        assert_eq!(line("<stdin>", 4).to_string(), "<stdin>:4");
        let err = InputError::new("10..5", Origin::Arg(2), "r".into());
        let shown = err.to_string();
        assert_eq!(shown, "invalid input '10..5' at argument 2: r");
        assert_eq!(ReadError::from(err).to_string(), shown);
    }

    #[test]
    fn args_keep_positions_and_first_error_wins() {
        let args = ["5", "2..2", "1..=3"].map(String::from);
        let expected = [
            (Item::Single(5), Origin::Arg(1)),
            (range(1, 3), Origin::Arg(3)),
        ];
        assert_eq!(
            parse_args(&args).unwrap().iter().collect::<Vec<_>>(),
            expected
        );
        let err = parse_args(&["1", "x", "-1"].map(String::from)).unwrap_err();
        assert_eq!((err.token.as_str(), err.origin), ("x", Origin::Arg(2)));
        assert!(parse_args(&[]).unwrap().is_empty());
    }

    #[test]
    fn text_comments_blank_lines_and_crlf() {
        let text = "\u{feff}# header\r\n\r\n1 2\t3#tail\r\n  \n4..=5 # note ### \r\n6..6\r\n7";
        let parsed = parse_text(text.as_bytes(), "nums.txt").unwrap();
        assert_eq!(values(&parsed), [1, 2, 3, 4, 5, 7]);
        // 1 2 3 and 4..=5 merge into one run, placed at its last token.
        assert_eq!(items(&parsed), [range(1, 5), Item::Single(7)]);
        let lines = parsed.iter().map(|(_, origin)| origin.to_string());
        assert_eq!(
            lines.collect::<Vec<_>>(),
            [5, 7].map(|n| format!("nums.txt:{n}"))
        );
        assert!(parse_text(&b""[..], "e").unwrap().is_empty());
    }

    #[test]
    fn inputs_are_compact_and_keep_order_places_and_duplicates() {
        // Regression: every token cost about 94 bytes (942 MB for 10^7 tokens).
        let mut text = String::new();
        let mut want = Vec::new();
        let mut x = 12_345u64;
        for i in 0..200_000u64 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let n = (x >> 40) % 10_000_000;
            want.push(n);
            text.push_str(&format!("{n}{}", if i % 3 == 0 { '\n' } else { ' ' }));
        }
        text.push_str("5 5 6 7 10..=12 13 u\n");
        let err = parse_text(text.as_bytes(), "t").unwrap_err().to_string();
        assert!(err.contains("'u' at t:66668"), "{err}");
        let text = text.trim_end_matches("u\n");
        let parsed = parse_text(text.as_bytes(), "t").unwrap();
        want.extend([5, 5, 6, 7, 10, 11, 12, 13]);
        assert_eq!(values(&parsed), want);
        assert_eq!(parsed.count(), want.len() as u64);
        assert!(
            parsed.heap_bytes() < 8 * want.len() as u64,
            "{} bytes for {} tokens",
            parsed.heap_bytes(),
            want.len()
        );
        // Consecutive values merge; repeats do not.
        let tail: Vec<Item> = items(&parsed).split_off(parsed.entries() - 3);
        assert_eq!(tail, [Item::Single(5), range(5, 7), range(10, 13)]);
        let (n, origin) = parsed.max().unwrap();
        assert_eq!(n, *want.iter().max().unwrap());
        let first = want.iter().position(|&v| v == n).unwrap() as u64;
        assert_eq!(origin.to_string(), format!("t:{}", first.div_ceil(3) + 1));
        let owned: Vec<u64> = parsed.clone().into_items().flat_map(|i| i.iter()).collect();
        assert_eq!(owned, want);
        let all = parse_text(&b"0..=18446744073709551615 18446744073709551615"[..], "m").unwrap();
        assert_eq!(all.count(), u64::MAX);
        assert_eq!(all.entries(), 2);
        // Sources and places survive appending.
        let mut joined = parse_args(&["3".into(), "9".into()]).unwrap();
        joined.append(parse_text(&b"4\n\n8\n"[..], "f").unwrap());
        let places: Vec<String> = joined.iter().map(|(_, o)| o.to_string()).collect();
        assert_eq!(places, ["argument 1", "argument 2", "f:1", "f:3"]);
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let err = parse_text(&b"1\n2 \xff3\n"[..], "<stdin>").unwrap_err();
        assert!(matches!(&err, ReadError::Utf8 { path, line: 2 } if path == "<stdin>"));
        assert_eq!(err.to_string(), "'<stdin>' line 2 is not valid UTF-8");
        let in_comment = parse_text(&b"1 # \xff\n"[..], "x").unwrap();
        assert_eq!(items(&in_comment), [Item::Single(1)]);
    }

    #[test]
    fn read_errors_name_the_source() {
        #[derive(Debug)]
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk on fire"))
            }
        }
        let err = parse_text(BufReader::new(Broken), "d.txt").unwrap_err();
        assert_eq!(err.to_string(), "cannot read 'd.txt': disk on fire");
        let err = parse_text(&b"1\n\n2 3..1"[..], "c")
            .unwrap_err()
            .to_string();
        assert!(err.contains("'3..1' at c:3: range start 3"), "{err}");
    }

    #[test]
    fn files_report_path_and_line() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        write!(file, "1\n2..=4 # ok\n5 abc 6\n-1\n").unwrap();
        let path = file.path().to_str().unwrap().to_owned();
        let err = read_file(&path).unwrap_err();
        let ReadError::Input(input) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(input.token, "abc");
        assert_eq!(
            input.origin,
            Origin::Line {
                source: path.as_str().into(),
                line: 3
            }
        );
        assert!(
            err.to_string()
                .contains(&format!("at {path}:3: not a number")),
            "{err}"
        );

        let mut good = tempfile::NamedTempFile::new().unwrap();
        write!(good, "1\r\n2..=4\r\n").unwrap();
        let parsed = read_file(good.path().to_str().unwrap()).unwrap();
        assert_eq!(items(&parsed), [range(1, 4)]);

        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.txt");
        let missing = missing.to_str().unwrap();
        let err = read_file(missing).unwrap_err();
        assert!(
            matches!(&err, ReadError::Io { path, .. } if path == missing),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with(&format!("cannot read '{missing}': "))
        );
    }
}
