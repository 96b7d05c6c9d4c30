//! /dev/kmsg: the kernel's ring buffer, record by record.
//!
//! Each read() returns exactly one record, `PRI,SEQ,TS_USEC,FLAGS[,...];MESSAGE\n` followed by
//! continuation lines ` KEY=value\n`; a buffer smaller than the record gives EINVAL, EPIPE
//! means the next record was overwritten while we read (skip on), EAGAIN means caught up.
//!
//! /dev/kmsg is a character device, so `why502_host::open_regular` (which refuses devices) is
//! not used: this module opens exactly this one device read-only and non-blocking, so it can
//! neither write nor stall.
//!
//! TS_USEC is the kernel's `local_clock()`, which runs with CLOCK_MONOTONIC (it stops during
//! suspend, like MONOTONIC and unlike BOOTTIME). Measured on the build machine: a record written
//! to /dev/kmsg carried a stamp 1.4 ms after CLOCK_MONOTONIC read just before the write, with
//! MONOTONIC and BOOTTIME equal there (no suspend). Wall time = now(REALTIME) − now(MONOTONIC)
//! + TS_USEC.

use std::io::{ErrorKind, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use nix::time::{clock_gettime, ClockId};

use crate::oom::OomCollector;
use crate::{ReadLimits, SourceFailure, SourceRead};

pub(crate) const KMSG: &str = "/dev/kmsg";

/// Large enough for any record: the kernel's CONSOLE_EXT_LOG_MAX is 8 KiB.
const RECORD_BUFFER: usize = 16 * 1024;

/// One parsed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KmsgRecord {
    pub(crate) facility: u32,
    pub(crate) seq: u64,
    pub(crate) ts_usec: u64,
    pub(crate) message: String,
}

/// Parse the first line of a record; continuation lines (` KEY=value`) are ignored.
pub(crate) fn parse_record(raw: &str) -> Option<KmsgRecord> {
    let first = raw.lines().next()?;
    let (prefix, message) = first.split_once(';')?;
    let mut fields = prefix.split(',');
    let pri: u32 = fields.next()?.parse().ok()?;
    let seq: u64 = fields.next()?.parse().ok()?;
    let ts_usec: u64 = fields.next()?.parse().ok()?;
    Some(KmsgRecord {
        facility: pri >> 3,
        seq,
        ts_usec,
        message: unescape(message),
    })
}

/// The kernel writes non-printable bytes (and `\`) as `\xNN`.
fn unescape(s: &str) -> String {
    if !s.contains("\\x") {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'x') && i + 4 <= bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Wall-clock time of the monotonic clock's zero (boot, minus any suspend).
pub(crate) fn monotonic_epoch() -> Option<SystemTime> {
    let mono = clock_gettime(ClockId::CLOCK_MONOTONIC).ok()?;
    let now = SystemTime::now();
    let mono = Duration::new(
        u64::try_from(mono.tv_sec()).ok()?,
        u32::try_from(mono.tv_nsec()).ok()?,
    );
    now.checked_sub(mono)
}

/// Feed records (from the live device or captured text) to the collector, tracking coverage.
pub(crate) struct RecordSink {
    epoch: SystemTime,
    collector: OomCollector,
    /// Records read, a record of several lines counted once per line: syslog(2) prints each
    /// line as a record of its own (the same prefix on each), so both sources count alike.
    records: usize,
    first: Option<(u64, SystemTime)>,
}

impl RecordSink {
    pub(crate) fn new(epoch: SystemTime, since: SystemTime) -> RecordSink {
        RecordSink {
            epoch,
            collector: OomCollector::new(since),
            records: 0,
            first: None,
        }
    }

    pub(crate) fn push(&mut self, record: &KmsgRecord) {
        self.records += 1 + record.message.bytes().filter(|&b| b == b'\n').count();
        let time = self.epoch + Duration::from_micros(record.ts_usec);
        if self.first.is_none() {
            self.first = Some((record.seq, time));
        }
        // Facility 0 is the kernel's alone: /dev/kmsg gives anything userspace writes
        // facility 1 (user) at least, so a forged "Killed process" line cannot pass.
        if record.facility == 0 {
            self.collector.push(time, &record.message);
        }
    }

    pub(crate) fn finish(mut self, since: SystemTime, stopped: Option<String>) -> SourceRead {
        let lsm_lines = self.collector.take_lsm_lines();
        let (kills, dropped) = self.collector.finish();
        // Sequence 0 is the first record since boot: the buffer has not wrapped.
        let reaches_back = match self.first {
            Some((0, _)) | None => true,
            Some((_, t)) => t <= since,
        };
        SourceRead {
            kills,
            kills_dropped: dropped,
            lsm_lines,
            records_read: self.records,
            covers_from: self.first.map(|(_, t)| t),
            reaches_back,
            stopped,
        }
    }
}

/// Parse concatenated records as `cat /dev/kmsg` prints them (tests and captured text).
#[cfg(test)]
pub(crate) fn read_text(text: &str, epoch: SystemTime, since: SystemTime) -> SourceRead {
    let mut sink = RecordSink::new(epoch, since);
    for line in text.lines().filter(|l| !l.starts_with(' ')) {
        if let Some(r) = parse_record(line) {
            sink.push(&r);
        }
    }
    sink.finish(since, None)
}

/// Read the live device from its oldest record until caught up (EAGAIN), the limits, or the
/// deadline.
pub(crate) fn read_device(
    path: &Path,
    since: SystemTime,
    deadline: Instant,
    limits: ReadLimits,
) -> Result<SourceRead, SourceFailure> {
    let failure = |e: std::io::Error| SourceFailure {
        source: path.display().to_string(),
        permission: e.kind() == ErrorKind::PermissionDenied,
        reason: explain_open_error(path, &e),
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(failure)?;
    let meta = file.metadata().map_err(failure)?;
    if !meta.file_type().is_char_device() {
        return Err(SourceFailure {
            source: path.display().to_string(),
            permission: false,
            reason: format!("{} is not the kernel's log device", path.display()),
        });
    }
    let epoch = monotonic_epoch().ok_or_else(|| SourceFailure {
        source: path.display().to_string(),
        permission: false,
        reason: "cannot read CLOCK_MONOTONIC to date kernel records".to_string(),
    })?;
    let mut sink = RecordSink::new(epoch, since);
    let mut buf = vec![0u8; RECORD_BUFFER];
    let mut bytes: u64 = 0;
    let mut stopped = None;
    loop {
        if sink.records >= limits.max_records || bytes >= limits.max_bytes {
            stopped = Some(format!(
                "stopped after {} records / {bytes} bytes of the kernel log; newer records were not read",
                sink.records
            ));
            break;
        }
        if Instant::now() >= deadline {
            stopped = Some(
                "time budget ran out while reading the kernel log; newer records were not read"
                    .to_string(),
            );
            break;
        }
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                bytes += n as u64;
                let text = String::from_utf8_lossy(&buf[..n]);
                if let Some(record) = parse_record(&text) {
                    sink.push(&record);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            // The record we were about to read was overwritten; the next read goes on.
            Err(e) if e.kind() == ErrorKind::BrokenPipe => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                stopped = Some(format!("reading {} failed: {e}", path.display()));
                break;
            }
        }
    }
    Ok(sink.finish(since, stopped))
}

/// The first piece of the ring buffer's tail asked of syslog(2) when the ring's size is
/// unknown; pieces grow from it (see `next_request`).
const TAIL_FIRST: usize = 16 * 1024;
/// The most one record can take formatted (at most 1 KiB of text, each of its lines behind a
/// prefix of up to 33 bytes) is under this. A reply shorter than its request by this much
/// holds the whole buffer: an older record would have fit.
const TAIL_SLACK: usize = 64 * 1024;
/// How far before `since` the tail must reach: an OOM report's lines (the summary before the
/// `Killed process` line) are written microseconds apart.
const TAIL_MARGIN: Duration = Duration::from_secs(60);

/// The ring buffer's newest records through syslog(2)'s SYSLOG_ACTION_READ_ALL (what
/// `dmesg -S` uses), which copies only the last `len` bytes, formatted. The kernel's work does
/// not follow `len`: to find where the last `len` bytes start it sizes every record of the
/// ring, so each call costs about what reading the whole buffer does (measured on 6.18 with a
/// full 128 KiB ring of 2,463 records: 2.1–2.7 ms for 16 KiB and for all of it alike, as for
/// the 2,463 reads of /dev/kmsg). So the one call asks for the whole ring
/// (`whole_ring_request`): a first piece of 16 KiB that fell short of `since` — a host whose
/// last hour holds a few OOM reports — cost a second walk of the ring. The userspace work
/// follows the window: lines are parsed from the newest back to the first before it.
///
/// None when it cannot answer for sure, and /dev/kmsg is read instead: not permitted, no
/// timestamps in the format (printk.time off), or the tail stops short of `since` (a
/// `dmesg -C` hides the records before it from syslog(2), never from /dev/kmsg).
pub(crate) fn read_syslog_tail(
    since: SystemTime,
    deadline: Instant,
    limits: ReadLimits,
) -> Option<SourceRead> {
    const SYSLOG_ACTION_READ_ALL: libc::c_int = 3;
    let epoch = monotonic_epoch()?;
    // None when the window starts before boot: then only the whole buffer, holding boot's
    // record, reaches back.
    let reach = since
        .checked_sub(TAIL_MARGIN)
        .and_then(|t| t.duration_since(epoch).ok())
        .map(|d| d.as_micros() as u64);
    let cap = usize::try_from(limits.max_bytes).unwrap_or(usize::MAX);
    let whole_ring = whole_ring_request();
    let mut len = match whole_ring {
        0 => TAIL_FIRST,
        whole => whole.min(cap),
    };
    loop {
        // Not zeroed first: the kernel writes what it returns, and only that is read. On a
        // host with a past the reply is ~140 KiB, of which the window is often a few lines.
        let mut buf: Vec<u8> = Vec::with_capacity(len);
        // SAFETY: the kernel writes at most `len` bytes into a buffer of that capacity, and
        // returns how many it wrote; only those become the vector's contents.
        let n = unsafe {
            let n = libc::klogctl(
                SYSLOG_ACTION_READ_ALL,
                buf.as_mut_ptr().cast(),
                len as libc::c_int,
            );
            let n = usize::try_from(n).ok()?.min(len);
            buf.set_len(n);
            n
        };
        let (records, reached) = parse_tail(&buf, reach)?;
        let oldest = records.first().map(|r| r.ts_usec)?;
        let whole = n + TAIL_SLACK <= len;
        if reached || whole {
            if records.len() > limits.max_records {
                return None;
            }
            // The whole of what syslog(2) shows, and still short of the window: either the
            // ring wrapped (/dev/kmsg would not reach further either) or a `dmesg -C` hid the
            // older records from syslog(2). /dev/kmsg's first record tells which, and whether
            // the ring still holds boot (sequence 0).
            let first_seq = if reached {
                1
            } else {
                let (seq, ts) = oldest_device_record()?;
                if ts < oldest {
                    return None;
                }
                seq
            };
            let mut sink = RecordSink::new(epoch, since);
            for (i, mut r) in records.into_iter().enumerate() {
                // syslog(2) prints no sequence numbers; only the first one's is looked at.
                r.seq = if i == 0 { first_seq } else { first_seq + 1 };
                sink.push(&r);
            }
            return Some(sink.finish(since, None));
        }
        if len >= cap || len > libc::c_int::MAX as usize / 4 || Instant::now() >= deadline {
            return None;
        }
        len = next_request(len, whole_ring, cap);
    }
}

/// The lines of a syslog(2) reply from the newest back to the first at or before `reach` (all
/// of them when `reach` is None), oldest first, and whether that line was found. Lines older
/// than it are not parsed: the userspace work follows the window, not the ring. None when a
/// line it reads does not parse (no timestamps): /dev/kmsg is read instead. Bytes, each
/// line made text on its own: checking the whole reply's UTF-8 first cost as much as the
/// parse of a small window.
fn parse_tail(text: &[u8], reach: Option<u64>) -> Option<(Vec<KmsgRecord>, bool)> {
    let mut records: Vec<KmsgRecord> = Vec::new();
    let mut reached = false;
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    for line in text.rsplit(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let record = parse_syslog_line(&String::from_utf8_lossy(line))?;
        reached = reach.is_some_and(|reach| record.ts_usec <= reach);
        records.push(record);
        if reached {
            break;
        }
    }
    records.reverse();
    Some((records, reached))
}

/// The request after one of `len` that fell short: `whole` (the whole ring, see
/// `whole_ring_request`), or 4× `len` when that is unknown or no larger; never over `cap`.
fn next_request(len: usize, whole: usize, cap: usize) -> usize {
    len.saturating_mul(4).max(whole).min(cap)
}

/// A request that holds the whole ring formatted: its size (SYSLOG_ACTION_SIZE_BUFFER) twice
/// over, for the prefixes (`<6>[ 1234.567890] `, on every line) its records do not store, and
/// the slack that tells a whole reply. 0 when the size cannot be had; growing pieces go on.
fn whole_ring_request() -> usize {
    const SYSLOG_ACTION_SIZE_BUFFER: libc::c_int = 10;
    // SAFETY: SIZE_BUFFER reads no buffer; the pointer may be null.
    let size = unsafe { libc::klogctl(SYSLOG_ACTION_SIZE_BUFFER, std::ptr::null_mut(), 0) };
    usize::try_from(size)
        .map(|s| s.saturating_mul(2).saturating_add(TAIL_SLACK))
        .unwrap_or(0)
}

/// /dev/kmsg's oldest record: (sequence, stamp), from one read.
fn oldest_device_record() -> Option<(u64, u64)> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(KMSG)
        .ok()?;
    let mut buf = vec![0u8; RECORD_BUFFER];
    // EPIPE: that record was overwritten meanwhile; the next read gives the new oldest.
    for _ in 0..4 {
        match file.read(&mut buf) {
            Ok(n) => {
                let r = parse_record(&String::from_utf8_lossy(&buf[..n]))?;
                return Some((r.seq, r.ts_usec));
            }
            Err(e) if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::Interrupted) => {}
            Err(_) => return None,
        }
    }
    None
}

/// One line as syslog(2) prints it: `<PRI>[SECONDS.MICROS] message`, with the caller id
/// (`[  T123]`) after the time on kernels built with CONFIG_PRINTK_CALLER. Lines of a
/// multi-line record each carry the prefix. None without a time stamp.
fn parse_syslog_line(line: &str) -> Option<KmsgRecord> {
    let rest = line.strip_prefix('<')?;
    let (pri, rest) = rest.split_once('>')?;
    let pri: u32 = pri.parse().ok()?;
    let (stamp, rest) = rest.strip_prefix('[')?.split_once(']')?;
    let (secs, micros) = stamp.trim_start().split_once('.')?;
    if micros.len() != 6 {
        return None;
    }
    let ts_usec = secs
        .parse::<u64>()
        .ok()?
        .checked_mul(1_000_000)?
        .checked_add(micros.parse::<u64>().ok()?)?;
    let rest = match rest.strip_prefix('[').and_then(|r| r.split_once(']')) {
        Some((caller, after)) if is_caller_id(caller.trim_start()) => after,
        _ => rest,
    };
    Some(KmsgRecord {
        facility: pri >> 3,
        seq: 1,
        ts_usec,
        message: rest.strip_prefix(' ').unwrap_or(rest).to_string(),
    })
}

/// `T123` (a task) or `C1` (a CPU, in interrupt context).
fn is_caller_id(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('T' | 'C'))
        && !chars.as_str().is_empty()
        && chars.all(|c| c.is_ascii_digit())
}

fn explain_open_error(path: &Path, e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::PermissionDenied => format!(
            "cannot read {}: {e} (kernel.dmesg_restrict={} needs CAP_SYSLOG)",
            path.display(),
            dmesg_restrict().unwrap_or_else(|| "?".to_string())
        ),
        ErrorKind::NotFound => format!("{} does not exist (container without it?)", path.display()),
        _ => format!("cannot read {}: {e}", path.display()),
    }
}

fn dmesg_restrict() -> Option<String> {
    why502_host::read_to_string_bounded(Path::new("/proc/sys/kernel/dmesg_restrict"), 16)
        .ok()
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_lines_parse_with_and_without_a_caller_id() {
        let kill = parse_syslog_line(
            "<3>[11795.014172] Memory cgroup out of memory: Killed process 31383 (python3) total-vm:218764kB",
        )
        .expect("parse");
        assert_eq!((kill.facility, kill.ts_usec), (0, 11_795_014_172));
        assert!(kill
            .message
            .starts_with("Memory cgroup out of memory: Killed process 31383"));
        // Boot's first records, before the clock ran, with CONFIG_PRINTK_CALLER.
        let boot =
            parse_syslog_line("<5>[    0.000000][    T0] Linux version 6.1.0").expect("parse");
        assert_eq!(
            (boot.ts_usec, boot.message.as_str()),
            (0, "Linux version 6.1.0")
        );
        let irq = parse_syslog_line("<4>[   12.000001][    C1] hrtimer: interrupt took 1 ns")
            .expect("parse");
        assert_eq!(irq.message, "hrtimer: interrupt took 1 ns");
        // A bracket that is not a caller id is the message's own.
        let own = parse_syslog_line("<6>[    3.5000001] x").is_none();
        assert!(own, "seven digits of micros is not the kernel's stamp");
        let msg = parse_syslog_line("<6>[    3.500000] [drm] Initialized").expect("parse");
        assert_eq!(msg.message, "[drm] Initialized");
        // What userspace writes to /dev/kmsg is facility 1 (user) at least.
        let forged = parse_syslog_line("<14>[   50.000000] Out of memory: Killed process 1 (x)")
            .expect("parse");
        assert_eq!(forged.facility, 1);
        // printk.time=0: no stamp, so the tail cannot be dated (/dev/kmsg is read instead).
        assert!(parse_syslog_line("<6>Linux version 6.1.0").is_none());
        assert!(parse_syslog_line("").is_none());
    }

    /// On the live host (as root), the syslog(2) tail and /dev/kmsg give the same window:
    /// the same kills and LSM lines, and the same answer to "does it reach back?".
    #[test]
    fn the_syslog_tail_agrees_with_dev_kmsg_on_the_live_host() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "needs root");
            eprintln!("SKIP the_syslog_tail_agrees_with_dev_kmsg_on_the_live_host: needs root");
            return;
        }
        let marker = format!("why502 syslog tail test {}", std::process::id());
        std::fs::write(KMSG, format!("{marker}\n")).expect("write /dev/kmsg");
        let deadline = Instant::now() + Duration::from_secs(5);
        let limits = ReadLimits::default();
        // A short window (the tail's first piece), and one longer than this host's log.
        for window in [Duration::from_secs(5), Duration::from_secs(100_000_000)] {
            let since = SystemTime::now() - window;
            // Other tests may log (and OOM-kill) meanwhile, and the ring may drop its oldest
            // records between the two reads: compared is what both cover, up to `asked`.
            let asked = SystemTime::now();
            let tail = read_syslog_tail(since, deadline, limits).expect("the tail as root");
            let device = read_device(Path::new(KMSG), since, deadline, limits).expect("kmsg");
            assert_eq!(tail.reaches_back, device.reaches_back, "{window:?}");
            let from = tail.covers_from.max(device.covers_from).unwrap_or(since);
            let both = |t: SystemTime| t >= from && t <= asked;
            // Each read dates records from its own reading of the clocks: the same record's
            // time differs by the microseconds between the two reads.
            let close = |a: SystemTime, b: SystemTime| {
                a.duration_since(b)
                    .or_else(|_| b.duration_since(a))
                    .unwrap_or_default()
                    < Duration::from_millis(5)
            };
            let kills = |r: &SourceRead| -> Vec<(u32, String, SystemTime)> {
                r.kills
                    .iter()
                    .filter(|k| both(k.time))
                    .map(|k| (k.pid, k.line.clone(), k.time))
                    .collect()
            };
            let (a, b) = (kills(&tail), kills(&device));
            let names = |v: &[(u32, String, SystemTime)]| -> Vec<(u32, String)> {
                v.iter().map(|(p, l, _)| (*p, l.clone())).collect()
            };
            assert_eq!(names(&a), names(&b), "{window:?}");
            assert!(a.iter().zip(&b).all(|(x, y)| close(x.2, y.2)));
            let lsm = |r: &SourceRead| -> Vec<String> {
                r.lsm_lines
                    .iter()
                    .filter(|(t, _)| both(*t))
                    .map(|(_, l)| l.clone())
                    .collect()
            };
            assert_eq!(lsm(&tail), lsm(&device), "{window:?}");
            assert!(
                tail.records_read <= device.records_read,
                "{} {} {window:?}",
                tail.records_read,
                device.records_read
            );
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn parses_records_and_skips_continuations() {
        // Captured from this machine's /dev/kmsg: records with dictionary continuation lines.
        let text = include_str!("../testdata/kmsg-continuation.txt");
        let records: Vec<KmsgRecord> = text
            .lines()
            .filter(|l| !l.starts_with(' '))
            .filter_map(parse_record)
            .collect();
        assert_eq!(records.len(), 7);
        assert_eq!(records[3].seq, 222);
        assert_eq!(records[3].ts_usec, 265167);
        assert_eq!(records[3].facility, 0);
        assert!(records[3].message.starts_with("acpi PNP0A08:00: _OSC"));
        assert!(records.iter().all(|r| !r.message.contains("SUBSYSTEM=")));
    }

    #[test]
    fn real_memcg_oom_from_kmsg() {
        // Captured from this machine's /dev/kmsg right after a memory-cgroup OOM kill
        // (cgroup v1, limit 20M): stack dump, memcg stats, task table, summary, kill line.
        let text = include_str!("../testdata/kmsg-memcg-oom.txt");
        let epoch = at(1_000_000);
        let read = read_text(text, epoch, at(0));
        assert_eq!(read.kills.len(), 1, "{:?}", read.kills);
        let k = &read.kills[0];
        assert_eq!(k.pid, 22149);
        assert_eq!(k.process, "python3");
        assert!(k.cgroup_oom);
        assert_eq!(k.oom_memcg.as_deref(), Some("/why502-manual-20362"));
        assert_eq!(k.task_memcg.as_deref(), Some("/why502-manual-20362"));
        assert_eq!(k.anon_rss_kb, Some(27264));
        assert!(k
            .line
            .starts_with("Memory cgroup out of memory: Killed process 22149"));
        // ts_usec 2602448621 of the kill line, on top of the epoch.
        assert_eq!(k.time, epoch + Duration::from_micros(2_602_448_621));
        assert_eq!(
            read.covers_from,
            Some(epoch + Duration::from_micros(248_625_769))
        );
    }

    #[test]
    fn window_excludes_earlier_kills_and_reports_coverage() {
        let text = include_str!("../testdata/kmsg-memcg-oom.txt");
        let epoch = at(1_000_000);
        // The kill was at epoch + 2602.45 s; a window starting after it finds nothing, and the
        // buffer (first record seq 377, not 0) is known to reach back to the window's start.
        let since = epoch + Duration::from_secs(2603);
        let read = read_text(text, epoch, since);
        assert!(read.kills.is_empty());
        assert!(read.reaches_back);
        // A window starting before the oldest record held is not fully covered.
        let read = read_text(text, epoch, epoch + Duration::from_secs(100));
        assert!(!read.reaches_back);
        assert_eq!(read.kills.len(), 1);
    }

    #[test]
    fn userspace_records_cannot_forge_kills() {
        // Real record written from userspace (`echo ... > /dev/kmsg` gives facility 1, "12,").
        let probe = parse_record("12,378,2598623383,-;why502 clock probe").expect("record");
        assert_eq!(probe.facility, 1);
        let text =
            "12,500,10,-;Out of memory: Killed process 1 (init) total-vm:1kB, anon-rss:1kB\n";
        let read = read_text(text, at(0), at(0));
        assert!(read.kills.is_empty());
    }

    #[test]
    fn apparmor_audit_records_in_the_window_are_kept_for_the_security_step() {
        // The form a kernel without auditd logs an AppArmor denial in (facility 0, level 5),
        // a userspace forgery of it (facility 1), and an older one outside the window.
        let denied = "audit: type=1400 audit(1763700000.123:45): apparmor=\"DENIED\" operation=\"connect\" profile=\"nginx\" name=\"/run/php/php8.2-fpm.sock\" pid=812 comm=\"nginx\" requested_mask=\"wr\" denied_mask=\"wr\" fsuid=33 ouid=0";
        let text =
            format!("5,10,1000000,-;{denied}\n5,11,9000000,-;{denied}\n13,12,9500000,-;{denied}\n");
        let read = read_text(&text, at(0), at(5));
        assert_eq!(read.lsm_lines.len(), 1, "{:?}", read.lsm_lines);
        assert_eq!(read.lsm_lines[0].0, at(9));
        assert_eq!(read.lsm_lines[0].1, denied);
        assert!(read.kills.is_empty());
    }

    #[test]
    fn a_tail_is_parsed_back_to_the_first_line_before_the_window_only() {
        let text = "garbage before the window is never parsed\n\
                    <6>[   10.000000] old\n\
                    <6>[   20.000000] at the reach\n\
                    <4>[   30.000000] newer\n\
                    <3>[   40.000000] newest\n";
        let (records, reached) = parse_tail(text.as_bytes(), Some(25_000_000)).expect("parsed");
        let shown: Vec<&str> = records.iter().map(|r| r.message.as_str()).collect();
        assert_eq!(shown, ["at the reach", "newer", "newest"]);
        assert!(reached);
        // A reach older than every line parses them all, and says it was not reached; here
        // that reaches the unparsable line, which sends the read to /dev/kmsg.
        assert!(parse_tail(text.as_bytes(), Some(1)).is_none());
        let (records, reached) =
            parse_tail(&text.as_bytes()[text.find('<').unwrap_or(0)..], None).expect("parsed");
        assert_eq!(records.len(), 4);
        assert!(!reached);
        // A newest line without a timestamp (printk.time off) is never taken for a record.
        assert!(parse_tail(b"<6>no stamp\n", Some(0)).is_none());
        // Each line is made text on its own: a stray byte spoils only its own line's text.
        let (records, _) = parse_tail(
            b"<6>[   50.000000] bad \xff byte\n<6>[   60.000000] fine\n",
            None,
        )
        .expect("parsed");
        let shown: Vec<&str> = records.iter().map(|r| r.message.as_str()).collect();
        assert_eq!(shown, ["bad \u{fffd} byte", "fine"]);
    }

    #[test]
    fn a_tail_that_falls_short_asks_next_for_more() {
        // Each syslog(2) call costs a walk of the whole ring: the first asks for all of it
        // formatted; only when its size is unknown do pieces grow, and then to it once known.
        let whole = 2 * 128 * 1024 + TAIL_SLACK;
        assert_eq!(next_request(TAIL_FIRST, whole, 64 << 20), whole);
        // Unknown ring size (0) or one smaller than the next piece: growing pieces.
        assert_eq!(next_request(TAIL_FIRST, 0, 64 << 20), 4 * TAIL_FIRST);
        assert_eq!(next_request(whole, whole, 64 << 20), 4 * whole);
        // Never over the byte cap.
        assert_eq!(next_request(TAIL_FIRST, 32 << 20, 1 << 20), 1 << 20);
    }

    #[test]
    fn the_whole_ring_request_holds_the_ring_twice_over_on_the_live_host() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        // SAFETY: SIZE_BUFFER reads no buffer.
        let size = unsafe { libc::klogctl(10, std::ptr::null_mut(), 0) };
        assert!(size > 0, "SYSLOG_ACTION_SIZE_BUFFER as root");
        assert_eq!(whole_ring_request(), 2 * size as usize + TAIL_SLACK);
    }

    /// A record with an escaped newline (captured on this machine) counts as its two lines,
    /// as syslog(2) prints it.
    #[test]
    fn a_multi_line_record_counts_once_per_line() {
        let text = "4,286,445249,-;amd_pstate: The CPPC feature is supported but currently disabled by the BIOS.\\x0aPlease enable it if your BIOS has the CPPC option.\n\
                    6,287,445261,-;amd_pstate: the _CPC object is not present in SBIOS or ACPI disabled\n";
        let read = read_text(text, at(0), at(0));
        assert_eq!(read.records_read, 3);
    }

    #[test]
    fn unescapes_kernel_hex_escapes() {
        let r = parse_record("6,1,1,-;a\\x5cb\\x09c").expect("record");
        assert_eq!(r.message, "a\\b\tc");
    }

    #[test]
    fn monotonic_epoch_is_in_the_past() {
        let epoch = monotonic_epoch().expect("clock");
        let now = SystemTime::now();
        assert!(epoch < now);
        // Uptime from /proc/uptime is BOOTTIME; without suspend it matches within a second,
        // and with suspend MONOTONIC is smaller, so the epoch is later than boot.
        let uptime: f64 = std::fs::read_to_string("/proc/uptime")
            .expect("uptime")
            .split_whitespace()
            .next()
            .expect("field")
            .parse()
            .expect("number");
        let boot = now - Duration::from_secs_f64(uptime);
        assert!(
            epoch + Duration::from_secs(1) >= boot,
            "{epoch:?} vs boot {boot:?}"
        );
    }
}
