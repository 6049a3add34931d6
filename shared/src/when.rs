//! When something happened, in words: a Unix time as a date and a time of
//! day in UTC ("2 Dec 2026, 05:14 UTC"). UTC because the server renders the
//! page first and cannot know the visitor's zone, and the page the browser
//! hydrates must say what the server rendered.

/// `unix_secs` as "2 Dec 2026, 05:14 UTC".
pub fn utc(unix_secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (days, secs) = (unix_secs / 86_400, unix_secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{day} {} {year}, {:02}:{:02} UTC",
        MONTHS[month as usize - 1],
        secs / 3600,
        secs % 3600 / 60
    )
}

/// The Gregorian (year, month 1–12, day 1–31) of a count of days since
/// 1970-01-01: Howard Hinnant's `civil_from_days`, for days on or after it.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_read_as_their_dates() {
        assert_eq!(utc(0), "1 Jan 1970, 00:00 UTC");
        // `date -u -d @1796188468`: Wed Dec  2 05:14:28 UTC 2026.
        assert_eq!(utc(1_796_188_468), "2 Dec 2026, 05:14 UTC");
        // A leap day, and the last minute of a century's leap year.
        assert_eq!(utc(951_782_400), "29 Feb 2000, 00:00 UTC");
        assert_eq!(utc(978_307_199), "31 Dec 2000, 23:59 UTC");
    }

    #[test]
    fn every_day_follows_the_one_before() {
        let mut last = civil_from_days(0);
        for days in 1..200_000 {
            let (y, m, d) = civil_from_days(days);
            let next_day = (y, m, d) == (last.0, last.1, last.2 + 1);
            let next_month = (y, m, d) == (last.0, last.1 + 1, 1);
            let next_year = (y, m, d) == (last.0 + 1, 1, 1) && (last.1, last.2) == (12, 31);
            assert!(
                next_day || next_month || next_year,
                "{last:?} then {:?}",
                (y, m, d)
            );
            assert!(d <= 31 && (1..=12).contains(&m));
            last = (y, m, d);
        }
    }
}
