//! Decimal text in and out: limbs to ASCII by SIMD-within-a-register arithmetic, blocks
//! converted on every core, and the parser used by `FromStr`.
//!
//! Printing is a linear copy: every limb but the top one is exactly 19 digits. Eight digits are
//! made at once in one `u64`: split into two 4-digit halves (32-bit lanes), each into two
//! 2-digit quarters (16-bit lanes) by a multiply-shift that divides by 100, each into tens and
//! ones (bytes) by a multiply-shift that divides by 10, then `'0'` is added to all eight bytes.

use std::fmt;
use std::io;

use rayon::prelude::*;

use super::limbs::{BASE, DIGITS};

/// Limbs per block of the parallel conversion (about 1 MiB of text per block).
const BLOCK_LIMBS: usize = 1 << 16;

/// Below this many limbs the text is made on the calling thread only.
const PAR_LIMBS: usize = 1 << 13;

/// Eight ASCII digits of `v < 10^8`, most significant first.
#[inline(always)]
fn eight_digits(v: u64) -> [u8; 8] {
    debug_assert!(v < 100_000_000);
    // Two 4-digit lanes: the high half in the low lane, so it lands in the first bytes.
    let x = (v / 10_000) | ((v % 10_000) << 32);
    // Each lane / 100 (exact for lane < 10^4), remainders beside the quotients.
    let q = ((x * 10_486) >> 20) & 0x0000_007f_0000_007f;
    let x = (x - q * 100) << 16 | q;
    // Each 16-bit lane / 10 (exact for lane < 100).
    let q = ((x * 103) >> 10) & 0x000f_000f_000f_000f;
    let x = (x - q * 10) << 8 | q;
    (x | 0x3030_3030_3030_3030).to_le_bytes()
}

/// The 19 digits of a limb, zero-padded.
#[inline(always)]
pub(crate) fn limb_digits(x: u64, out: &mut [u8]) {
    debug_assert!(x < BASE && out.len() == DIGITS);
    let hi = x / 10_000_000_000_000_000;
    let lo = x % 10_000_000_000_000_000;
    out[0] = b'0' + (hi / 100) as u8;
    out[1] = b'0' + (hi / 10 % 10) as u8;
    out[2] = b'0' + (hi % 10) as u8;
    out[3..11].copy_from_slice(&eight_digits(lo / 100_000_000));
    out[11..19].copy_from_slice(&eight_digits(lo % 100_000_000));
}

/// The digits of the top limb `x > 0` without leading zeros, into `buf`; returns the digits.
fn top_digits(x: u64, buf: &mut [u8; DIGITS]) -> &[u8] {
    limb_digits(x, buf);
    let skip = buf
        .iter()
        .take_while(|&&c| c == b'0')
        .count()
        .min(DIGITS - 1);
    &buf[skip..]
}

/// Fills `out` (19 bytes per limb) with `limbs` from the most significant down.
fn fill(out: &mut [u8], limbs: &[u64]) {
    if limbs.len() >= PAR_LIMBS {
        out.par_chunks_mut(DIGITS)
            .zip(limbs.par_iter().rev())
            .with_min_len(1024)
            .for_each(|(o, &x)| limb_digits(x, o));
    } else {
        for (o, &x) in out.chunks_exact_mut(DIGITS).zip(limbs.iter().rev()) {
            limb_digits(x, o);
        }
    }
}

/// Calls `sink` with successive pieces of the decimal text of `limbs` (normalized), most
/// significant first; the pieces are ASCII digits.
pub(crate) fn for_each_piece<E>(
    limbs: &[u64],
    mut sink: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let Some((&top, rest)) = limbs.split_last() else {
        return sink(b"0");
    };
    let mut buf = [0u8; DIGITS];
    sink(top_digits(top, &mut buf))?;
    let mut block = vec![0u8; rest.len().min(BLOCK_LIMBS) * DIGITS];
    let mut end = rest.len();
    while end > 0 {
        let start = end.saturating_sub(BLOCK_LIMBS);
        let out = &mut block[..(end - start) * DIGITS];
        fill(out, &rest[start..end]);
        sink(out)?;
        end = start;
    }
    Ok(())
}

/// Appends the text of the limbs at positions `range` counted from the most significant (the
/// top limb unpadded, every other one as 19 digits), on this thread.
pub(crate) fn write_range(limbs: &[u64], range: std::ops::Range<usize>, out: &mut Vec<u8>) {
    let len = limbs.len();
    if len == 0 {
        if range.start == 0 && range.end > 0 {
            out.push(b'0');
        }
        return;
    }
    let mut buf = [0u8; DIGITS];
    for pos in range.start..range.end.min(len) {
        let x = limbs[len - 1 - pos];
        if pos == 0 {
            out.extend_from_slice(top_digits(x, &mut buf));
        } else {
            limb_digits(x, &mut buf);
            out.extend_from_slice(&buf);
        }
    }
}

/// Writes the decimal text of `limbs` (normalized) to `w`.
pub(crate) fn write_to<W: io::Write + ?Sized>(limbs: &[u64], w: &mut W) -> io::Result<()> {
    for_each_piece(limbs, |piece| w.write_all(piece))
}

/// Writes the decimal text of `limbs` (normalized) to a formatter, honouring width and fill.
pub(crate) fn fmt(limbs: &[u64], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if f.width().is_some() {
        let mut s = Vec::with_capacity(limbs.len() * DIGITS + 1);
        write_to(limbs, &mut s).map_err(|_| fmt::Error)?;
        let s = std::str::from_utf8(&s).map_err(|_| fmt::Error)?;
        return f.pad_integral(true, "", s);
    }
    for_each_piece(limbs, |piece| {
        f.write_str(std::str::from_utf8(piece).map_err(|_| fmt::Error)?)
    })
}

/// Parses ASCII decimal digits into normalized limbs; `None` if empty or not all digits.
pub(crate) fn parse(s: &[u8]) -> Option<Vec<u64>> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut limbs: Vec<u64> = s
        .rchunks(DIGITS)
        .map(|chunk| {
            chunk
                .iter()
                .fold(0u64, |acc, &c| acc * 10 + u64::from(c - b'0'))
        })
        .collect();
    super::limbs::normalize(&mut limbs);
    Some(limbs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_digits_matches_format_everywhere_that_matters() {
        let mut v = 0u64;
        while v < 100_000_000 {
            assert_eq!(eight_digits(v), format!("{v:08}").as_bytes(), "{v}");
            v += 9_973;
        }
        for v in (0..10_000).chain(99_990_000..100_000_000) {
            assert_eq!(eight_digits(v), format!("{v:08}").as_bytes(), "{v}");
        }
        // Every 4-digit lane value in both lanes.
        for hi in 0..10_000u64 {
            let v = hi * 10_000 + (9_999 - hi);
            assert_eq!(eight_digits(v), format!("{v:08}").as_bytes(), "{v}");
        }
    }

    #[test]
    fn limb_digits_pads_to_nineteen() {
        let mut out = [0u8; DIGITS];
        for x in [
            0,
            1,
            9,
            10,
            123_456_789,
            10u64.pow(18),
            BASE - 1,
            1_234_567_890_123_456_789,
        ] {
            limb_digits(x, &mut out);
            assert_eq!(out, format!("{x:019}").as_bytes());
        }
        let mut buf = [0u8; DIGITS];
        assert_eq!(top_digits(7, &mut buf), b"7");
        assert_eq!(
            top_digits(BASE - 1, &mut buf),
            format!("{}", BASE - 1).as_bytes()
        );
    }

    #[test]
    fn parse_rejects_non_digits_and_groups_from_the_right() {
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"12a"), None);
        assert_eq!(parse(b"-1"), None);
        assert_eq!(parse(b"000"), Some(vec![]));
        assert_eq!(parse(b"10000000000000000000"), Some(vec![0, 1]));
        assert_eq!(parse(b"9999999999999999999"), Some(vec![BASE - 1]));
    }
}
