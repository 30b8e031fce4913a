//! Moments a user names: "the volume as it was at TIME". Owns parsing a
//! user's time (RFC 3339, a local date-time, or a version id) into the
//! cut-off the store compares version ids against, and printing a version
//! id as an RFC 3339 time (UTC).
//!
//! A version id is a time (its seconds and nanoseconds since the epoch, see
//! [`crate::ids::VersionId`]), so "the tree at T" uses the versions whose id
//! is at or before T. A time names an instant to the nanosecond: every
//! version of that nanosecond counts, whatever its writer's major. A
//! version id names itself and everything ordered before it.
//!
//! The local zone is the C library's (`TZ`, else `/etc/localtime`), asked
//! through `mktime(3)`; that call is the one `unsafe` block here.
#![allow(unsafe_code)]

use std::fmt;

use crate::ids::VersionId;

/// A moment of the volume's past: which versions existed then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Moment {
    /// The last version id that counts (inclusive).
    cutoff: VersionId,
    /// What the user wrote (for messages).
    text: String,
}

impl Moment {
    /// The moment just at version `id` (it and everything before it).
    pub fn at_version(id: VersionId) -> Moment {
        Moment {
            cutoff: id,
            text: id.to_string(),
        }
    }

    /// The instant `secs.nanos` since the epoch (every major of that nanosecond).
    pub fn at_instant(secs: u64, nanos: u32) -> Moment {
        Moment {
            cutoff: VersionId {
                secs,
                nanos,
                major: Some(u32::MAX),
            },
            text: rfc3339(secs, nanos),
        }
    }

    /// Whether a version with `id` already existed at this moment.
    pub fn includes(&self, id: VersionId) -> bool {
        id <= self.cutoff
    }

    /// The last id that counts.
    pub fn cutoff(&self) -> VersionId {
        self.cutoff
    }

    /// The text the moment was given as.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Moment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Moment {
    type Err = String;

    /// Accepts `2026-12-01T09:30:00Z` (RFC 3339: `T` or a space, seconds and
    /// a fraction optional, `Z` or `±HH:MM`), `2026-12-01 09:30` or
    /// `2026-12-01` (the machine's local zone), a version id
    /// (`1796117400.000000000`), or `now`.
    fn from_str(text: &str) -> Result<Moment, String> {
        parse(text).map(|mut moment| {
            moment.text = text.to_string();
            moment
        })
    }
}

/// What a time text may look like, for messages.
const FORMS: &str = "give an RFC 3339 time (2026-12-01T09:30:00Z), a local date-time (2026-12-01 09:30), a version id (1796117400.000000000) or `now`";

fn parse(text: &str) -> Result<Moment, String> {
    let shown = crate::ids::clip(text, 80);
    let bad = |why: &str| format!("{shown:?} is not a time ({why}); {FORMS}");
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(bad("empty"));
    }
    if trimmed == "now" {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| bad("the clock reads before 1970"))?;
        return Ok(Moment::at_instant(since.as_secs(), since.subsec_nanos()));
    }
    let bytes = trimmed.as_bytes();
    // A version id: digits, a dot, digits (no `-`, no `:`).
    if bytes.iter().all(|b| b.is_ascii_digit() || *b == b'.') && trimmed.contains('.') {
        let id: VersionId = trimmed.parse().map_err(|err: String| bad(&err))?;
        return Ok(Moment::at_version(id));
    }
    let mut cursor = Cursor {
        bytes,
        at: 0,
        bad: &bad,
    };
    let year = cursor.number(4, "a 4-digit year")?;
    cursor.expect(b'-', "`-` after the year")?;
    let month = cursor.number(2, "a 2-digit month")?;
    cursor.expect(b'-', "`-` after the month")?;
    let day = cursor.number(2, "a 2-digit day")?;
    if !(1..=12).contains(&month) {
        return Err(bad("the month is not 01 to 12"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(bad("no such day in that month"));
    }
    let (mut hour, mut minute, mut second, mut nanos) = (0, 0, 0, 0u32);
    if cursor.more() {
        match cursor.next() {
            Some(b'T' | b't' | b' ') => {}
            _ => return Err(bad("expected `T` or a space after the date")),
        }
        hour = cursor.number(2, "a 2-digit hour")?;
        cursor.expect(b':', "`:` after the hour")?;
        minute = cursor.number(2, "2-digit minutes")?;
        if cursor.peek() == Some(b':') {
            cursor.next();
            second = cursor.number(2, "2-digit seconds")?;
            if cursor.peek() == Some(b'.') {
                cursor.next();
                nanos = cursor.fraction()?;
            }
        }
        if hour > 23 || minute > 59 || second > 60 {
            return Err(bad("the time of day is out of range"));
        }
        // A leap second counts as the last second of its minute.
        second = second.min(59);
    }
    let offset = match cursor.next() {
        None => None,
        Some(b'Z' | b'z') => Some(0i64),
        Some(sign @ (b'+' | b'-')) => {
            let hours = cursor.number(2, "a 2-digit zone hour")?;
            cursor.expect(b':', "`:` in the zone offset")?;
            let minutes = cursor.number(2, "2-digit zone minutes")?;
            if hours > 23 || minutes > 59 {
                return Err(bad("the zone offset is out of range"));
            }
            let offset = hours * 3600 + minutes * 60;
            Some(if sign == b'-' { -offset } else { offset })
        }
        Some(_) => return Err(bad("unexpected text after the time")),
    };
    if cursor.more() {
        return Err(bad("unexpected text after the zone"));
    }
    let civil = Civil {
        year,
        month,
        day,
        hour,
        minute,
        second,
    };
    let secs = match offset {
        Some(offset) => civil.unix_utc() - offset,
        None => local_to_unix(&civil).ok_or_else(|| bad("not a time in the local zone"))?,
    };
    if secs < 1 {
        return Err(bad("before the first version id a node gives (1970)"));
    }
    Ok(Moment::at_instant(secs as u64, nanos))
}

/// Reads a time text left to right.
struct Cursor<'a, F: Fn(&str) -> String> {
    bytes: &'a [u8],
    at: usize,
    bad: &'a F,
}

impl<F: Fn(&str) -> String> Cursor<'_, F> {
    fn more(&self) -> bool {
        self.at < self.bytes.len()
    }
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }
    fn expect(&mut self, byte: u8, what: &str) -> Result<(), String> {
        match self.next() {
            Some(found) if found == byte => Ok(()),
            _ => Err((self.bad)(&format!("expected {what}"))),
        }
    }
    /// Exactly `digits` decimal digits.
    fn number(&mut self, digits: usize, what: &str) -> Result<i64, String> {
        let end = self.at + digits;
        let part = self
            .bytes
            .get(self.at..end)
            .filter(|part| part.iter().all(u8::is_ascii_digit))
            .ok_or_else(|| (self.bad)(&format!("expected {what}")))?;
        self.at = end;
        Ok(part
            .iter()
            .fold(0i64, |n, digit| n * 10 + i64::from(digit - b'0')))
    }
    /// 1 to 9 digits of a second, as nanoseconds.
    fn fraction(&mut self) -> Result<u32, String> {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        let digits = &self.bytes[start..self.at];
        if digits.is_empty() || digits.len() > 9 {
            return Err((self.bad)("a fraction of a second has 1 to 9 digits"));
        }
        let mut nanos = digits
            .iter()
            .fold(0u32, |n, digit| n * 10 + u32::from(digit - b'0'));
        for _ in digits.len()..9 {
            nanos *= 10;
        }
        Ok(nanos)
    }
}

/// A calendar date and time of day.
struct Civil {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
}

impl Civil {
    /// Seconds since the epoch, reading the fields as UTC.
    fn unix_utc(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86_400
            + self.hour * 3600
            + self.minute * 60
            + self.second
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `secs.nanos` since the epoch as RFC 3339 in UTC: `2026-12-01T09:30:00Z`,
/// with a fraction only when there is one (`...:00.5Z`).
pub fn rfc3339(secs: u64, nanos: u32) -> String {
    let secs = secs.min(i64::MAX as u64) as i64;
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let mut text = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if nanos > 0 {
        let fraction = format!("{nanos:09}");
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    text.push('Z');
    text
}

/// The time of version `id` as RFC 3339 (UTC).
pub fn version_time(id: VersionId) -> String {
    rfc3339(id.secs, id.nanos)
}

/// Seconds since the epoch of a local date-time (`mktime(3)`: the C
/// library's zone, daylight saving decided by it); `None` when it has none.
fn local_to_unix(civil: &Civil) -> Option<i64> {
    let field = |value: i64| libc::c_int::try_from(value).ok();
    // SAFETY: an all-zero `struct tm` is a valid value (integers and, on
    // glibc, a null zone name pointer mktime does not read).
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = field(civil.year - 1900)?;
    tm.tm_mon = field(civil.month - 1)?;
    tm.tm_mday = field(civil.day)?;
    tm.tm_hour = field(civil.hour)?;
    tm.tm_min = field(civil.minute)?;
    tm.tm_sec = field(civil.second)?;
    tm.tm_isdst = -1;
    // SAFETY: `tm` is a valid, exclusively borrowed `struct tm`; mktime
    // only reads and normalises it and reads the process's zone settings.
    let secs: i64 = unsafe { libc::mktime(&mut tm) };
    // -1 is also a valid time (1969-12-31T23:59:59Z), which a version never has.
    (secs != -1).then_some(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moment(text: &str) -> Moment {
        text.parse().unwrap_or_else(|err| panic!("{text}: {err}"))
    }

    #[test]
    fn rfc3339_times_parse_to_their_instant() {
        let m = moment("2026-12-01T09:30:00Z");
        assert_eq!(m.cutoff().secs, 1_796_117_400);
        assert_eq!(m.cutoff().nanos, 0);
        assert_eq!(moment("2026-12-01T10:30:00+01:00").cutoff(), m.cutoff());
        assert_eq!(moment("2026-12-01 09:30:00z").cutoff(), m.cutoff());
        assert_eq!(moment("2026-12-01T04:00:00-05:30").cutoff(), m.cutoff());
        assert_eq!(
            moment("2026-12-01T09:30:00.25Z").cutoff().nanos,
            250_000_000
        );
        assert_eq!(moment("2000-02-29T00:00:00Z").cutoff().secs, 951_782_400);
        assert_eq!(moment("2026-12-01T09:30Z").cutoff(), m.cutoff());
    }

    #[test]
    fn a_time_includes_every_major_of_its_nanosecond_and_nothing_after() {
        let m = moment("2026-12-01T09:30:00Z");
        let at = |text: &str| text.parse::<VersionId>().unwrap();
        assert!(m.includes(at("1796117400.000000000")));
        assert!(m.includes(at("1796117400.000000000999999")));
        assert!(m.includes(at("1796117399.999999999")));
        assert!(!m.includes(at("1796117400.000000001")));
        let v = moment("1796117400.0000000005");
        assert!(v.includes(at("1796117400.0000000005")));
        assert!(v.includes(at("1796117400.0000000004")));
        assert!(!v.includes(at("1796117400.0000000006")));
        assert_eq!(v.text(), "1796117400.0000000005");
    }

    #[test]
    fn local_times_use_the_c_library_zone() {
        // The process's zone is whatever the test runner has: compare with
        // mktime's own answer through the UTC reading and the offset it implies.
        let local = moment("2026-12-01 09:30");
        let utc = moment("2026-12-01T09:30:00Z");
        let offset = utc.cutoff().secs as i64 - local.cutoff().secs as i64;
        assert!(offset.abs() <= 14 * 3600, "offset {offset}");
        assert_eq!(
            moment("2026-12-01").cutoff().secs as i64 + 9 * 3600 + 1800,
            { local.cutoff().secs as i64 }
        );
    }

    #[test]
    fn bad_times_are_refused_naming_the_value() {
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-12-01T25:00:00Z",
            "2026-12-01T09:30:00+1",
            "2026-12-01T09:30:00Zjunk",
            "2026-12-01T09:30:00.Z",
            "1.5",
            "1969-12-31T00:00:00Z",
        ] {
            let err = bad.parse::<Moment>().unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn version_times_print_as_rfc3339() {
        assert_eq!(rfc3339(1_796_117_400, 0), "2026-12-01T09:30:00Z");
        assert_eq!(rfc3339(951_782_400, 500_000_000), "2000-02-29T00:00:00.5Z");
        assert_eq!(moment(&rfc3339(1_796_117_400, 7)).cutoff().nanos, 7);
    }
}
