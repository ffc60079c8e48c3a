//! Money as integer micro-USD. Decimal strings only at the edge.

/// One US dollar in micro-USD.
pub const MICROS_PER_USD: i64 = 1_000_000;

/// `1234567` → `"1.234567"`; negative amounts keep their sign.
pub fn micros_to_usd_string(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    format!("{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
}

/// Parses a decimal USD amount (`"5"`, `"12.50"`, `"0.000001"`) exactly, with
/// no floating point. More than six decimals, signs other than a leading `-`,
/// exponents and overflow are refused.
pub fn parse_usd(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (whole, frac) = match body.split_once('.') {
        Some((w, f)) => (w, f),
        None => (body, ""),
    };
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 6 {
        return None;
    }
    let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let frac_micros: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<6}").parse().ok()? };
    let v = whole.checked_mul(MICROS_PER_USD)?.checked_add(frac_micros)?;
    Some(if neg { -v } else { v })
}

/// Micro-USD from a JSON number given in dollars. JSON numbers are floats, so
/// the value is re-read from its shortest decimal text rather than multiplied.
pub fn usd_json_to_micros(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Number(n) => parse_usd(&n.to_string()),
        serde_json::Value::String(s) => parse_usd(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(micros_to_usd_string(0), "0.000000");
        assert_eq!(micros_to_usd_string(1_234_567), "1.234567");
        assert_eq!(micros_to_usd_string(-5), "-0.000005");
    }

    #[test]
    fn parses_exactly() {
        assert_eq!(parse_usd("5"), Some(5_000_000));
        assert_eq!(parse_usd("12.50"), Some(12_500_000));
        assert_eq!(parse_usd("0.000001"), Some(1));
        assert_eq!(parse_usd(".5"), Some(500_000));
        assert_eq!(parse_usd("-1.5"), Some(-1_500_000));
        for bad in ["", ".", "1.0000001", "1e3", "+1", "abc", "1.2.3", "99999999999999999999"] {
            assert_eq!(parse_usd(bad), None, "{bad}");
        }
    }

    #[test]
    fn json_numbers_do_not_pick_up_float_error() {
        assert_eq!(usd_json_to_micros(&serde_json::json!(0.1)), Some(100_000));
        assert_eq!(usd_json_to_micros(&serde_json::json!(25)), Some(25_000_000));
        assert_eq!(usd_json_to_micros(&serde_json::json!("0.3")), Some(300_000));
        assert_eq!(usd_json_to_micros(&serde_json::json!(true)), None);
    }
}
