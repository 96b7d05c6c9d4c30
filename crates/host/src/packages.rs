//! What the package manager changed, from dpkg's own log (/var/log/dpkg.log, with its
//! rotations): `2026-11-21 13:30:02 upgrade php8.2-fpm:amd64 8.2.20-1 8.2.26-1`. apt and every
//! other front end go through dpkg, so its log is the one record. Read backward within the
//! window like every log.

use std::path::Path;

use crate::civil::local_hour_to_epoch;
use crate::logtail::{read_tail, LineTake, TailLimits};
use crate::ReadError;

/// One package action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageChange {
    /// Seconds since the epoch (dpkg stamps local time).
    pub time: i64,
    /// `install`, `upgrade`, `remove` or `purge`.
    pub action: String,
    /// `php8.2-fpm` (without `:arch`).
    pub package: String,
    /// The version before (`<none>` for an install) and after.
    pub from: String,
    pub to: String,
}

/// Package actions in `path` at or after `since`, oldest first.
pub fn read_package_changes(path: &Path, since: i64) -> Result<Vec<PackageChange>, ReadError> {
    let limits = TailLimits {
        max_bytes: 16 * 1024 * 1024,
        max_line: 1024,
        max_items: 10_000,
        ..TailLimits::default()
    };
    let read = read_tail(path, limits, |raw| {
        let text = String::from_utf8_lossy(raw);
        match parse_line(&text) {
            Some(c) if c.time < since => LineTake::Older,
            Some(c) => LineTake::Keep(c),
            None => LineTake::Skip,
        }
    })?;
    Ok(read.items)
}

fn parse_line(line: &str) -> Option<PackageChange> {
    let mut f = line.split_whitespace();
    let (date, time, action) = (f.next()?, f.next()?, f.next()?);
    if !matches!(action, "install" | "upgrade" | "remove" | "purge") {
        return None;
    }
    let package = f.next()?.split(':').next()?.to_string();
    let from = f.next().unwrap_or("").to_string();
    let to = f.next().unwrap_or("").to_string();
    let d: Vec<i64> = date
        .split('-')
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    let t: Vec<i64> = time
        .split(':')
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    let ([y, mo, da], [h, mi, s]) = (d.as_slice(), t.as_slice()) else {
        return None;
    };
    let hour = local_hour_to_epoch(*y, *mo, *da, *h)?;
    Some(PackageChange {
        time: hour + mi * 60 + s,
        action: action.to_string(),
        package,
        from,
        to,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_actions_of_the_window_and_skips_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("dpkg.log");
        std::fs::write(
            &p,
            "2026-11-20 10:00:00 upgrade libc6:amd64 2.36-9 2.36-9+deb12u9\n\
             2026-11-21 13:30:01 startup archives unpack\n\
             2026-11-21 13:30:02 upgrade php8.2-fpm:amd64 8.2.20-1 8.2.26-1\n\
             2026-11-21 13:30:03 status half-configured php8.2-fpm:amd64 8.2.26-1\n\
             2026-11-21 13:30:04 configure php8.2-fpm:amd64 8.2.26-1 <none>\n\
             2026-11-21 13:31:00 install strace:amd64 <none> 6.1-0.1\n\
             garbage\n",
        )
        .expect("write");
        let since = parse_line("2026-11-21 00:00:00 install x <none> 1")
            .expect("a line")
            .time;
        let got = read_package_changes(&p, since).expect("read");
        let seen: Vec<(&str, &str, &str)> = got
            .iter()
            .map(|c| (c.action.as_str(), c.package.as_str(), c.to.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("upgrade", "php8.2-fpm", "8.2.26-1"),
                ("install", "strace", "6.1-0.1")
            ]
        );
        assert_eq!(got[1].time - got[0].time, 58);
    }
}
