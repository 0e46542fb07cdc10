//! Input parsing for `fibo`: numbers and ranges from arguments, files or stdin.
//!
//! A token is `N`, `A..B` (end excluded) or `A..=B` (end included). A number is
//! decimal digits with optional single `_` separators (`1_000_000`), or
//! scientific notation (`1e6`, `1E+6`, `2.5e3`) whose value is a whole number.
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
    /// How many n this item yields; saturates at `u64::MAX` for `0..=u64::MAX`.
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
            Origin::Line { source, line } => write!(f, "{source}:{line}"),
        }
    }
}

/// A token that is not a valid number or range, with where it came from and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid input '{token}' at {origin}: {reason}")]
pub struct InputError {
    /// The offending token, as written.
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

impl InputError {
    fn new(token: &str, origin: Origin, reason: String) -> Self {
        let token = token.to_owned();
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
    if frac.is_some() && exponent.is_none() {
        return Err(FRACTION);
    }
    let Some(exponent) = exponent else {
        return scale(int, "", 0);
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

/// Parses whitespace-separated tokens read line by line; `#` starts a comment to
/// the end of the line (also right after a token: `10#x` is the token `10`).
/// Comments may hold any bytes; the rest of each line must be UTF-8.
pub fn parse_text<R: BufRead>(
    mut reader: R,
    source: &str,
) -> Result<Vec<(Item, Origin)>, ReadError> {
    let mut items = Vec::new();
    let mut buf = Vec::with_capacity(256);
    let mut line = 0;
    let shared: std::sync::Arc<str> = source.into();
    loop {
        buf.clear();
        let read = reader.read_until(b'\n', &mut buf);
        if read.map_err(io_error(source))? == 0 {
            return Ok(items);
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
        for token in text.split_whitespace() {
            let origin = || Origin::Line {
                source: std::sync::Arc::clone(&shared),
                line,
            };
            match parse_token(token) {
                Ok(item) => items.extend(item.map(|item| (item, origin()))),
                Err(reason) => return Err(InputError::new(token, origin(), reason).into()),
            }
        }
    }
}

/// Parses positional arguments, one token each.
pub fn parse_args(args: &[String]) -> Result<Vec<(Item, Origin)>, InputError> {
    let mut items = Vec::with_capacity(args.len());
    for (i, arg) in args.iter().enumerate() {
        match parse_token(arg) {
            Ok(item) => items.extend(item.map(|item| (item, Origin::Arg(i + 1)))),
            Err(reason) => return Err(InputError::new(arg, Origin::Arg(i + 1), reason)),
        }
    }
    Ok(items)
}

/// Reads and parses a whole file; `-` means stdin (source name `"<stdin>"`).
pub fn read_file(path: &str) -> Result<Vec<(Item, Origin)>, ReadError> {
    if path == "-" {
        return parse_text(std::io::stdin().lock(), "<stdin>");
    }
    let file = File::open(path).map_err(io_error(path))?;
    parse_text(BufReader::with_capacity(1 << 16, file), path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn items(pairs: &[(Item, Origin)]) -> Vec<Item> {
        pairs.iter().map(|(item, _)| *item).collect()
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
            1.8446744073709551615e19=18446744073709551615";
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
            2.5 1.5e0 1e-3 1/2 1e-999999999999 | fractions are not accepted; write a whole number
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
        assert_eq!(parse_args(&args).unwrap(), expected);
        let err = parse_args(&["1", "x", "-1"].map(String::from)).unwrap_err();
        assert_eq!((err.token.as_str(), err.origin), ("x", Origin::Arg(2)));
        assert!(parse_args(&[]).unwrap().is_empty());
    }

    #[test]
    fn text_comments_blank_lines_and_crlf() {
        let text = "\u{feff}# header\r\n\r\n1 2\t3#tail\r\n  \n4..=5 # note ### \r\n6..6\r\n7";
        let parsed = parse_text(text.as_bytes(), "nums.txt").unwrap();
        let expected = [1, 2, 3].map(Item::Single).into_iter().chain([range(4, 5)]);
        let expected: Vec<Item> = expected.chain([Item::Single(7)]).collect();
        assert_eq!(items(&parsed), expected);
        let lines = parsed.iter().map(|(_, origin)| origin.to_string());
        assert_eq!(
            lines.collect::<Vec<_>>(),
            [3, 3, 3, 5, 7].map(|n| format!("nums.txt:{n}"))
        );
        assert!(parse_text(&b""[..], "e").unwrap().is_empty());
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
        assert_eq!(items(&parsed), [Item::Single(1), range(2, 4)]);

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
