//! The two number formats users write in Kubernetes objects: resource
//! quantities (`10Gi`, `500M`, `1.5Gi`, `1e9`) for capacities, and Go
//! durations (`720h`, `1h30m`) for `archiveKeep`. Pure; rounding is always
//! up, so a claim never gets less than it asked for.

/// Bytes of a resource quantity, rounded up to a whole byte. `None` for
/// anything Kubernetes would not accept as a quantity, for negatives and
/// for values beyond `u64`.
pub fn bytes(q: &str) -> Option<u64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number = number.strip_prefix('+').unwrap_or(number);
    if number.is_empty() || number.contains('+') {
        return None;
    }
    let (int, frac) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return None;
    }
    // value = digits / 10^frac_len * 2^bin * 10^dec
    let digits: u128 = format!("{int}{frac}").parse().ok()?;
    let (bin, dec): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        s if s.starts_with(['e', 'E']) => (0, s[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    let exp10 = dec - i32::try_from(frac.len()).ok()?;
    let mut num = digits.checked_mul(1u128.checked_shl(bin)?)?;
    let mut den: u128 = 1;
    if exp10 >= 0 {
        num = num.checked_mul(10u128.checked_pow(exp10.unsigned_abs())?)?;
    } else {
        den = 10u128.checked_pow(exp10.unsigned_abs())?;
    }
    u64::try_from(num.div_ceil(den)).ok()
}

/// Seconds of a Go duration: a sequence of `<number><unit>` with units
/// `h`, `m`, `s` (and `ms`, `us`, `ns`, rounded up to a second), as in
/// `720h` or `1h30m`. `None` when malformed or zero.
pub fn duration_secs(d: &str) -> Option<u64> {
    let mut rest = d.trim();
    if rest.is_empty() {
        return None;
    }
    let mut nanos: u128 = 0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&n| n > 0)?;
        let (number, tail) = rest.split_at(n);
        let u = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(u);
        let scale: u128 = match unit {
            "h" => 3_600_000_000_000,
            "m" => 60_000_000_000,
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "us" | "µs" => 1_000,
            "ns" => 1,
            _ => return None,
        };
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let int: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut value = int.checked_mul(scale)?;
        if !frac.is_empty() {
            let f: u128 = frac.parse().ok()?;
            let den = 10u128.checked_pow(u32::try_from(frac.len()).ok()?)?;
            value = value.checked_add(f.checked_mul(scale)?.div_ceil(den))?;
        }
        nanos = nanos.checked_add(value)?;
        rest = tail;
    }
    let secs = u64::try_from(nanos.div_ceil(1_000_000_000)).ok()?;
    (secs > 0).then_some(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(bytes("1Gi"), Some(1 << 30));
        assert_eq!(bytes("10Mi"), Some(10 << 20));
        assert_eq!(bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
        assert_eq!(bytes("100k"), Some(100_000));
        assert_eq!(bytes("1e9"), Some(1_000_000_000));
        assert_eq!(bytes("1E3"), Some(1000));
        assert_eq!(bytes("12345"), Some(12345));
        assert_eq!(bytes("+5Ki"), Some(5120));
        assert_eq!(bytes("1500m"), Some(2), "milli rounds up");
        assert_eq!(bytes("0.1"), Some(1));
        assert_eq!(bytes("1Ei"), Some(1 << 60));
    }

    #[test]
    fn bad_quantities() {
        for q in [
            "",
            "Gi",
            "-1Gi",
            "1GiB",
            "1.2.3",
            "1 Gi",
            "x",
            "99999999999Ei",
            ".",
        ] {
            assert_eq!(bytes(q), None, "{q:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(duration_secs("720h"), Some(720 * 3600));
        assert_eq!(duration_secs("1h30m"), Some(5400));
        assert_eq!(duration_secs("90s"), Some(90));
        assert_eq!(duration_secs("1.5h"), Some(5400));
        assert_eq!(duration_secs("1500ms"), Some(2));
        for d in ["", "0s", "720", "h", "3d", "1h-2m", "1.h.", "-1h"] {
            assert_eq!(duration_secs(d), None, "{d:?}");
        }
    }
}
