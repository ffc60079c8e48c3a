//! Time as integer milliseconds since the Unix epoch.
//!
//! `std::time::SystemTime::now()` panics on wasm32, so the Worker reads the
//! clock and passes `now_ms` in; everything here is pure.

pub const SECOND_MS: i64 = 1_000;
pub const MINUTE_MS: i64 = 60 * SECOND_MS;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Days since 1970-01-01 to a civil (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-22T02:07:00.123Z`.
pub fn rfc3339(ms: i64) -> String {
    let days = ms.div_euclid(DAY_MS);
    let rem = ms.rem_euclid(DAY_MS);
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s, milli) = (rem / HOUR_MS, (rem / MINUTE_MS) % 60, (rem / SECOND_MS) % 60, rem % 1_000);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// The billing month `YYYY-MM` (UTC) that `ms` falls in.
pub fn month_key(ms: i64) -> String {
    let (y, m, _) = civil_from_days(ms.div_euclid(DAY_MS));
    format!("{y:04}-{m:02}")
}

/// Start of the UTC month containing `ms`.
pub fn month_start(ms: i64) -> i64 {
    let key = month_key(ms);
    let mut t = ms - ms.rem_euclid(DAY_MS);
    while month_key(t - 1) == key {
        t -= DAY_MS;
    }
    t
}

/// Accepts epoch milliseconds or an RFC 3339 date (`2026-11-01` or full).
pub fn parse_instant(s: &str) -> Option<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    let date = s.get(..10)?;
    let mut parts = date.split('-');
    let (y, m, d) = (parts.next()?.parse::<i64>().ok()?, parts.next()?.parse::<u32>().ok()?, parts.next()?.parse::<u32>().ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from civil (Hinnant), the inverse of time::rfc3339's conversion.
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = if y2 >= 0 { y2 } else { y2 - 399 } / 400;
    let yoe = y2 - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * DAY_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        // 2026-11-22T02:07:00.123Z
        assert_eq!(rfc3339(1_795_313_220_123), "2026-11-22T02:07:00.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn month_key_rolls_at_utc_midnight() {
        assert_eq!(month_key(1_795_313_220_123), "2026-11");
        assert_eq!(month_key(1_798_761_599_999), "2026-12");
        assert_eq!(month_key(1_798_761_600_000), "2027-01");
    }

    #[test]
    fn parses_dates_and_millis() {
        assert_eq!(parse_instant("1795313220123"), Some(1_795_313_220_123));
        assert_eq!(parse_instant("2026-11-01"), Some(1_793_491_200_000));
        assert_eq!(parse_instant("2026-11-01T10:00:00Z"), Some(1_793_491_200_000));
        assert_eq!(parse_instant("2026-13-01"), None);
        assert_eq!(parse_instant("nope"), None);
        assert_eq!(month_start(1_795_313_220_123), 1_793_491_200_000);
        assert_eq!(month_start(1_793_491_200_000), 1_793_491_200_000);
    }
}
