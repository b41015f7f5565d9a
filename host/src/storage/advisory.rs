//! Corruption advisories (`gbs-protocol.md` §4.6, §6.5): one text file per report, named
//! and worded as stock Tahoe writes them (allmydata/storage/server.py).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::protocol::{ShareKind, ShareNumber, StorageIndex};

/// How many later microseconds to try when a report of the same share in the same
/// microsecond already has the name.
const NAME_ATTEMPTS: u64 = 1_000;

/// The report text: five lines, the reason, and a blank line.
pub(super) fn render(
    kind: ShareKind,
    si: &StorageIndex,
    shnum: ShareNumber,
    reason: &str,
) -> String {
    format!(
        "report: Share Corruption\ntype: {}\nstorage_index: {si}\nshare_number: {shnum}\n\n{reason}\n\n",
        kind.as_str()
    )
}

/// `<UTC time>--<si>-<shnum>`, the time as Python's `isoformat("T")` with the colons
/// removed: `YYYY-MM-DDTHHMMSS.ffffff`, without the fraction when it is zero.
pub(super) fn file_name(unix_micros: u64, si: &StorageIndex, shnum: ShareNumber) -> String {
    format!("{}--{si}-{shnum}", utc_timestamp(unix_micros))
}

/// Writes `report` under `dir` with a name no other report has.
pub(super) fn write(
    dir: &Path,
    unix_micros: u64,
    si: &StorageIndex,
    shnum: ShareNumber,
    report: &str,
) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let mut last_error = None;
    for bump in 0..NAME_ATTEMPTS {
        let path = dir.join(file_name(unix_micros.saturating_add(bump), si, shnum));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut file) => {
                file.write_all(report.as_bytes())?;
                return Ok(path);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no free report name")))
}

fn utc_timestamp(unix_micros: u64) -> String {
    let secs = unix_micros / 1_000_000;
    let micros = unix_micros % 1_000_000;
    let days = secs / 86_400;
    let of_day = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (of_day / 3_600, of_day % 3_600 / 60, of_day % 60);
    let mut text = format!("{year:04}-{month:02}-{day:02}T{hour:02}{minute:02}{second:02}");
    if micros != 0 {
        text.push_str(&format!(".{micros:06}"));
    }
    text
}

/// Year, month and day of the `days`th day after 1970-01-01, in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
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

    fn si() -> StorageIndex {
        "aaaqeayeaudaocajbifqydiob4".parse().unwrap()
    }

    #[test]
    fn report_text_matches_stock_tahoe() {
        assert_eq!(
            render(ShareKind::Mutable, &si(), ShareNumber(3), "bad hash"),
            "report: Share Corruption\ntype: mutable\nstorage_index: aaaqeayeaudaocajbifqydiob4\n\
             share_number: 3\n\nbad hash\n\n"
        );
    }

    #[test]
    fn file_names_use_python_isoformat_without_colons() {
        assert_eq!(
            file_name(1_769_000_000_123_456, &si(), ShareNumber(7)),
            "2026-01-21T125320.123456--aaaqeayeaudaocajbifqydiob4-7"
        );
        assert_eq!(
            file_name(0, &si(), ShareNumber(0)),
            "1970-01-01T000000--aaaqeayeaudaocajbifqydiob4-0"
        );
        assert_eq!(
            utc_timestamp(951_782_400_000_001),
            "2000-02-29T000000.000001"
        );
        assert_eq!(utc_timestamp(4_107_542_399_000_000), "2100-02-28T235959");
        assert!(!utc_timestamp(u64::MAX).is_empty());
    }

    #[test]
    fn same_instant_reports_get_distinct_names() {
        let dir = tempfile::tempdir().unwrap();
        let first = write(dir.path(), 5_000_000, &si(), ShareNumber(1), "one").unwrap();
        let second = write(dir.path(), 5_000_000, &si(), ShareNumber(1), "two").unwrap();
        assert_ne!(first, second);
        assert_eq!(fs::read_to_string(&first).unwrap(), "one");
        assert_eq!(fs::read_to_string(&second).unwrap(), "two");
        assert!(second
            .to_str()
            .unwrap()
            .ends_with("1970-01-01T000005.000001--aaaqeayeaudaocajbifqydiob4-1"));
    }
}
