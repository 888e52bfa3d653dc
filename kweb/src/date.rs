//! HTTP dates (RFC 9110 §5.6.7, IMF-fixdate): `Sun, 06 Nov 1994 08:49:37 GMT`.

/// Length of an IMF-fixdate.
pub const LEN: usize = 29;

/// `secs` since the Unix epoch as an IMF-fixdate.
pub fn format(secs: i64) -> [u8; LEN] {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    // 1970-01-01 was a Thursday.
    let wd = (days + 4).rem_euclid(7) as usize;
    const WD: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MON: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let s = format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        WD[wd],
        d,
        MON[m as usize - 1],
        y.clamp(0, 9999),
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    s.as_bytes().try_into().expect("an IMF-fixdate is 29 bytes")
}

/// The proleptic Gregorian (year, month, day) of `days` since 1970-01-01: count in
/// 400-year eras of 146 097 days, with years starting on 1 March so that the leap day
/// is the last day of a year.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from 1 March
    let mp = (5 * doy + 2) / 153; // month from March, 0..11
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A formatted `Date`, re-formatted only when the second changes: each worker keeps one.
pub struct DateCache {
    secs: i64,
    text: [u8; LEN],
}

impl Default for DateCache {
    fn default() -> DateCache {
        DateCache { secs: i64::MIN, text: [b' '; LEN] }
    }
}

impl DateCache {
    /// The current date (the coarse wall clock).
    pub fn now(&mut self) -> &[u8; LEN] {
        let s = crate::sys::wall_secs();
        if s != self.secs {
            self.secs = s;
            self.text = format(s);
        }
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::format;

    #[test]
    fn known_dates_format_as_imf_fixdate() {
        assert_eq!(&format(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&format(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&format(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(&format(1_796_671_655), b"Mon, 07 Dec 2026 19:27:35 GMT");
    }
}
