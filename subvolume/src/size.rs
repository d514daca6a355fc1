//! Sizes as people and Kubernetes write them: `10Gi`, `500M`, `1.5T`,
//! `4096`.

/// Parses a byte count: a decimal number with an optional suffix, binary
/// (`Ki Mi Gi Ti Pi`) or decimal as in Kubernetes quantities (`k M G T P`,
/// 10^3 to 10^15).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let mult: u64 = match unit {
        "" => 1,
        "k" | "K" | "kB" | "KB" => 1000,
        "M" | "MB" => 1000u64.pow(2),
        "G" | "GB" => 1000u64.pow(3),
        "T" | "TB" => 1000u64.pow(4),
        "P" | "PB" => 1000u64.pow(5),
        "Ki" | "KiB" => 1 << 10,
        "Mi" | "MiB" => 1 << 20,
        "Gi" | "GiB" => 1 << 30,
        "Ti" | "TiB" => 1 << 40,
        "Pi" | "PiB" => 1 << 50,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (use Ki, Mi, Gi, Ti or k, M, G, T)"
            ))
        }
    };
    if num.is_empty() {
        return Err(format!("{s:?}: no number"));
    }
    let value: f64 = num.parse().map_err(|_| format!("{s:?}: not a number"))?;
    let bytes = (value * mult as f64).ceil();
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(format!("{s:?}: out of range"));
    }
    Ok(bytes as u64)
}

/// A byte count for people: `10Gi`, `1536Mi`, or plain bytes.
pub fn show_bytes(b: u64) -> String {
    for (unit, shift) in [("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
        if b >= 1 << shift && b.is_multiple_of(1 << shift) {
            return format!("{}{unit}", b >> shift);
        }
    }
    b.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_of_both_kinds() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("10Gi"), Ok(10 << 30));
        assert_eq!(parse_bytes("1.5Ki"), Ok(1536));
        assert_eq!(parse_bytes("2G"), Ok(2_000_000_000));
        assert_eq!(parse_bytes("100M"), Ok(100_000_000));
        assert!(parse_bytes("10Gb").is_err());
        assert!(parse_bytes("Gi").is_err());
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("-1").is_err());
        assert_eq!(show_bytes(10 << 30), "10Gi");
        assert_eq!(show_bytes(1536 << 20), "1536Mi");
        assert_eq!(show_bytes(1000), "1000");
    }
}
