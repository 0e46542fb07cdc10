//! Memory sizes: the machine's available memory, `--max-memory` values, and human-readable
//! byte counts for messages.

/// Memory available to new work, from `/proc/meminfo` (`MemAvailable`); `None` elsewhere.
pub fn available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// The default limit: 90% of the available memory, or 4 GiB where it cannot be read.
pub fn default_limit() -> u64 {
    available().map_or(4 << 30, |b| b / 10 * 9)
}

/// Parses `--max-memory`: a number of bytes with an optional unit, `512M`, `4G`, `1.5T`, `800MB`,
/// `2GiB` (units are powers of 1024; `B` and `iB` suffixes are allowed).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("unknown unit '{unit}' (use K, M, G or T)")),
    };
    let value: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a size like 512M or 4G"))?;
    if !value.is_finite() || value <= 0.0 {
        return Err(format!("'{text}' must be a positive size"));
    }
    let bytes = value * (1u64 << shift) as f64;
    if bytes >= u64::MAX as f64 {
        return Err(format!("'{text}' is too large"));
    }
    Ok(bytes as u64)
}

/// `87 TB`, `1.2 GB`, `512 B`: decimal units, three significant digits.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else if v >= 100.0 {
        format!("{v:.0} {}", UNITS[i])
    } else if v >= 10.0 {
        format!("{v:.1} {}", UNITS[i])
    } else {
        format!("{v:.2} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert!(parse_size("0").is_err());
        assert!(parse_size("-1G").is_err());
        assert!(parse_size("4Q").unwrap_err().contains("unit"));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn human_sizes_read_well() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(86_789_000_000_000), "86.8 TB");
        assert_eq!(human(1_234_000), "1.23 MB");
        assert_eq!(human(999_999_999_999_999_999), "1.00 EB");
    }

    #[test]
    fn available_memory_is_plausible_here() {
        if let Some(b) = available() {
            assert!(b > 1 << 20);
        }
        assert!(default_limit() > 0);
    }
}
