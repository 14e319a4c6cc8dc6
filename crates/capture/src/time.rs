//! Capture time. The core never reads the wall clock: every timeout, window and rate is
//! computed from these values, which come from packet headers, so a replay is deterministic.

use std::fmt;

/// A point in capture time: nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The earliest representable time; also used as "not yet seen".
    pub const ZERO: Timestamp = Timestamp(0);

    pub const fn from_nanos(nanos: u64) -> Self {
        Timestamp(nanos)
    }

    pub const fn from_micros(micros: u64) -> Self {
        Timestamp(micros.saturating_mul(1_000))
    }

    pub const fn from_secs(secs: u64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000_000))
    }

    /// From a seconds/sub-seconds pair as found in pcap record headers. Negative values
    /// (which some broken writers produce) clamp to zero.
    pub fn from_parts(secs: i64, subsec: i64, nanos_per_unit: u64) -> Self {
        let secs = secs.max(0) as u64;
        let sub = (subsec.max(0) as u64).saturating_mul(nanos_per_unit);
        Timestamp(secs.saturating_mul(1_000_000_000).saturating_add(sub))
    }

    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    pub const fn as_micros(self) -> u64 {
        self.0 / 1_000
    }

    pub const fn as_secs(self) -> u64 {
        self.0 / 1_000_000_000
    }

    /// The time elapsed since `earlier`, or zero when `earlier` is later (captures are not
    /// always in timestamp order).
    pub const fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }

    pub const fn saturating_add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(d.0))
    }
}

impl Timestamp {
    /// Appends the RFC 3339 form (the same text as `Display`) to `out`, without going through
    /// `fmt`: output writers call this once per record.
    pub fn write_rfc3339(self, out: &mut Vec<u8>) {
        fn two(out: &mut Vec<u8>, n: u64) {
            out.push(b'0' + (n / 10 % 10) as u8);
            out.push(b'0' + (n % 10) as u8);
        }
        let secs = self.0 / 1_000_000_000;
        let micros = (self.0 % 1_000_000_000) / 1_000;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days((secs / 86_400) as i64);
        if !(0..=9999).contains(&y) {
            use std::io::Write as _;
            let _ = write!(out, "{self}");
            return;
        }
        let y = y as u64;
        two(out, y / 100);
        two(out, y % 100);
        out.push(b'-');
        two(out, u64::from(m));
        out.push(b'-');
        two(out, u64::from(d));
        out.push(b'T');
        two(out, rem / 3600);
        out.push(b':');
        two(out, rem % 3600 / 60);
        out.push(b':');
        two(out, rem % 60);
        out.push(b'.');
        two(out, micros / 10_000);
        two(out, micros / 100 % 100);
        two(out, micros % 100);
        out.extend_from_slice(b"Z");
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 UTC with microseconds, e.g. `2024-01-31T12:00:00.123456Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 / 1_000_000_000;
        let micros = (self.0 % 1_000_000_000) / 1_000;
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days as i64);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60
        )
    }
}

/// Days since 1970-01-01 to a (year, month, day) civil date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A span of capture time in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(u64);

impl Duration {
    pub const ZERO: Duration = Duration(0);

    pub const fn from_secs(secs: u64) -> Self {
        Duration(secs.saturating_mul(1_000_000_000))
    }

    pub const fn from_millis(ms: u64) -> Self {
        Duration(ms.saturating_mul(1_000_000))
    }

    pub const fn from_nanos(ns: u64) -> Self {
        Duration(ns)
    }

    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    pub const fn as_micros(self) -> u64 {
        self.0 / 1_000
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_rfc3339_matches_display() {
        for ns in [
            0,
            1_000,
            999_999_999,
            1_732_700_000_123_456_789,
            4_102_444_799_999_999_000,
            u64::MAX,
        ] {
            let t = Timestamp::from_nanos(ns);
            let mut out = Vec::new();
            t.write_rfc3339(&mut out);
            assert_eq!(String::from_utf8(out).unwrap(), t.to_string(), "{ns}");
        }
    }

    #[test]
    fn formats_rfc3339_with_micros() {
        assert_eq!(Timestamp::ZERO.to_string(), "1970-01-01T00:00:00.000000Z");
        // 2000-02-29T23:59:59.000001Z, a leap day.
        let t = Timestamp::from_nanos(951_868_799_000_001_000);
        assert_eq!(t.to_string(), "2000-02-29T23:59:59.000001Z");
        let t = Timestamp::from_secs(1_700_000_000);
        assert_eq!(t.to_string(), "2023-11-14T22:13:20.000000Z");
    }

    #[test]
    fn since_saturates_when_out_of_order() {
        let a = Timestamp::from_secs(10);
        let b = Timestamp::from_secs(5);
        assert_eq!(b.saturating_since(a), Duration::ZERO);
        assert_eq!(a.saturating_since(b), Duration::from_secs(5));
    }

    #[test]
    fn from_parts_clamps_negative() {
        assert_eq!(Timestamp::from_parts(-1, -5, 1000), Timestamp::ZERO);
        assert_eq!(
            Timestamp::from_parts(1, 5, 1000),
            Timestamp::from_nanos(1_000_005_000)
        );
    }
}
