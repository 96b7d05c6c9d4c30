//! Whether nginx logged a worker's exit around one moment, found by a binary search on the
//! line stamps instead of a read back from the end: the moment is a worker's start, hours
//! behind a busy log's window perhaps, and only its seconds matter.
//!
//! nginx respawns a worker that dies (`[alert] worker process N exited on signal S`, or at
//! notice `... exited with code C`) from the configuration in memory; a reload starts new
//! workers too but, at Debian's default level `error`, logs nothing. So a worker that started
//! with no exit logged around it, in a log that covers that time, was started by a reload.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use why502_host::{open_regular, ReadError};

use super::{split_entry, LocalClock};

/// Bytes read per probe: a few lines; a probe that finds no stamped line reads on.
const BLOCK: usize = 8 * 1024;
/// A probe gives up on finding a stamped line after this much (multi-line entries).
const MAX_PROBE_BYTES: u64 = 256 * 1024;
/// Bytes read per step across the span.
const SCAN_BLOCK: usize = 64 * 1024;
/// The most bytes read forward across the span: a busy log's few seconds, and no more.
const MAX_SPAN_BYTES: u64 = 16 * 1024 * 1024;

/// What a log says about worker exits in a span of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitsInSpan {
    /// The log reaches back before the span and was read across it: the times of the worker
    /// exits it logged there (none: no worker died then).
    Covered(Vec<i64>),
    /// Nothing can be said, and why: the log begins after the span's start, or the span
    /// holds more than this reader reads.
    NotCovered(String),
}

/// `worker process 1234 exited on signal 9`, `worker process 1234 exited with code 1`, and
/// nginx 1.22's `... exited with fatal code 2 and cannot be respawned`.
pub fn is_worker_exit(message: &str) -> bool {
    message.starts_with("worker process ") && message.contains(" exited ")
}

/// The worker exits `path` logged from `from` to `until` (seconds since the epoch), reading
/// `path.1` first when the current file begins after `from` (a rotated `.gz` cannot be
/// searched: not covered). Cost: some 20 small reads per file, then the span's bytes.
pub fn worker_exits_in_span(path: &Path, from: i64, until: i64) -> Result<ExitsInSpan, ReadError> {
    let mut clock = LocalClock::default();
    let current = LogFile::open(path)?;
    let mut files = vec![current];
    loop {
        let oldest = &files[files.len() - 1];
        match oldest.first_time(&mut clock) {
            Some(t) if t <= from => break,
            Some(_) if files.len() == 1 => {
                let rotated = suffixed(path, ".1");
                match LogFile::open(&rotated) {
                    Ok(f) => files.push(f),
                    Err(_) => {
                        return Ok(ExitsInSpan::NotCovered(format!(
                            "{} begins after {} and there is no plain {} to read before it",
                            path.display(),
                            stamp_text(from),
                            rotated.display()
                        )))
                    }
                }
            }
            Some(_) => {
                return Ok(ExitsInSpan::NotCovered(format!(
                    "{} and {} both begin after {}",
                    path.display(),
                    oldest.path.display(),
                    stamp_text(from)
                )))
            }
            None if files.len() == 1 && oldest.len == 0 => {
                // An empty current file (just rotated): the time is in the one before it.
                let rotated = suffixed(path, ".1");
                match LogFile::open(&rotated) {
                    Ok(f) => files.push(f),
                    Err(_) => {
                        return Ok(ExitsInSpan::NotCovered(format!(
                            "{} is empty and there is no plain {}",
                            path.display(),
                            rotated.display()
                        )))
                    }
                }
            }
            None => {
                return Ok(ExitsInSpan::NotCovered(format!(
                    "{} has no line in nginx's error-log form near its start",
                    oldest.path.display()
                )))
            }
        }
    }
    // Oldest file first: the span may start in `.1` and run on into the current file.
    files.reverse();
    let mut exits = Vec::new();
    let mut budget = MAX_SPAN_BYTES;
    for (i, file) in files.iter().enumerate() {
        let start = if i == 0 {
            file.first_offset_at_or_after(from, &mut clock)
        } else {
            0
        };
        match file.scan(start, until, &mut budget, &mut clock, &mut exits) {
            Scan::PastSpan => return Ok(ExitsInSpan::Covered(exits)),
            Scan::EndOfFile => continue,
            Scan::OverBudget => {
                return Ok(ExitsInSpan::NotCovered(format!(
                    "more than {} MiB of {} lie in the seconds around {}",
                    MAX_SPAN_BYTES / (1024 * 1024),
                    file.path.display(),
                    stamp_text(from)
                )))
            }
        }
    }
    // The current file ended inside the span: nothing was logged after its last line.
    Ok(ExitsInSpan::Covered(exits))
}

/// A time in a reason: nginx's own stamp form, in the host's zone.
fn stamp_text(t: i64) -> String {
    why502_host::civil::local_stamp(t).unwrap_or_else(|| format!("{t} (seconds since the epoch)"))
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

enum Scan {
    /// A line stamped after the span was reached.
    PastSpan,
    EndOfFile,
    OverBudget,
}

struct LogFile {
    path: PathBuf,
    file: File,
    len: u64,
}

impl LogFile {
    fn open(path: &Path) -> Result<LogFile, ReadError> {
        let (file, meta) = open_regular(path)?;
        Ok(LogFile {
            path: path.to_path_buf(),
            file,
            len: meta.len(),
        })
    }

    fn read_at(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        let mut filled = 0;
        while filled < len {
            match self
                .file
                .read_at(&mut buf[filled..], offset + filled as u64)
            {
                Ok(0) | Err(_) => break,
                Ok(n) => filled += n,
            }
        }
        buf.truncate(filled);
        buf
    }

    fn first_time(&self, clock: &mut LocalClock) -> Option<i64> {
        self.stamped_line_from(0, clock).map(|(_, t)| t)
    }

    /// The first stamped line that starts at or after `offset` (a line start: offset 0 or
    /// just after a newline): its start and its time.
    fn stamped_line_from(&self, offset: u64, clock: &mut LocalClock) -> Option<(u64, i64)> {
        // From the byte before `offset`, so that a newline just before it counts.
        let base = offset.saturating_sub(1);
        let end = base.saturating_add(MAX_PROBE_BYTES).min(self.len);
        let mut buf: Vec<u8> = Vec::new();
        let mut line_start = (offset == 0).then_some(0usize);
        let mut searched = 0usize;
        let mut pos = base;
        while pos < end {
            let want = usize::try_from(end - pos).map_or(BLOCK, |left| left.min(BLOCK));
            let block = self.read_at(pos, want);
            if block.is_empty() {
                break;
            }
            pos += block.len() as u64;
            buf.extend_from_slice(&block);
            loop {
                let Some(start) = line_start else {
                    // Still looking for the end of the line `offset` falls in.
                    match memchr::memchr(b'\n', &buf[searched..]) {
                        Some(nl) => line_start = Some(searched + nl + 1),
                        None => {
                            searched = buf.len();
                            break;
                        }
                    }
                    continue;
                };
                let Some(nl) = memchr::memchr(b'\n', &buf[start..]) else {
                    break;
                };
                if let Some(t) = line_time(&buf[start..start + nl], clock) {
                    return Some((base + start as u64, t));
                }
                line_start = Some(start + nl + 1);
            }
        }
        // The file's last line may lack its newline.
        let start = line_start.filter(|s| pos >= self.len && *s < buf.len())?;
        line_time(&buf[start..], clock).map(|t| (base + start as u64, t))
    }

    /// The start of the first stamped line at or after time `from` (the file's length when
    /// there is none): a binary search over byte offsets on the stamps, which only grow.
    fn first_offset_at_or_after(&self, from: i64, clock: &mut LocalClock) -> u64 {
        let (mut lo, mut hi) = (0u64, self.len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.stamped_line_from(mid, clock) {
                Some((_, t)) if t < from => lo = mid + 1,
                _ => hi = mid,
            }
        }
        self.stamped_line_from(lo, clock)
            .map_or(self.len, |(start, _)| start)
    }

    /// Reads forward from `start` until a line stamped after `until`, noting worker exits.
    fn scan(
        &self,
        start: u64,
        until: i64,
        budget: &mut u64,
        clock: &mut LocalClock,
        exits: &mut Vec<i64>,
    ) -> Scan {
        let mut pos = start;
        let mut carry: Vec<u8> = Vec::new();
        while pos < self.len {
            if *budget == 0 {
                return Scan::OverBudget;
            }
            let want = usize::try_from(*budget).map_or(SCAN_BLOCK, |b| b.min(SCAN_BLOCK));
            let block = self.read_at(pos, want);
            if block.is_empty() {
                break;
            }
            pos += block.len() as u64;
            *budget = budget.saturating_sub(block.len() as u64);
            carry.extend_from_slice(&block);
            let mut line_start = 0;
            while let Some(nl) = memchr::memchr(b'\n', &carry[line_start..]) {
                let line = &carry[line_start..line_start + nl];
                line_start += nl + 1;
                if let Some(past) = note_exit(line, until, clock, exits) {
                    if past {
                        return Scan::PastSpan;
                    }
                }
            }
            carry.drain(..line_start);
        }
        if !carry.is_empty() && note_exit(&carry, until, clock, exits) == Some(true) {
            return Scan::PastSpan;
        }
        Scan::EndOfFile
    }
}

/// For a stamped line: whether it lies past `until` (and, if not, notes a worker exit).
fn note_exit(
    line: &[u8],
    until: i64,
    clock: &mut LocalClock,
    exits: &mut Vec<i64>,
) -> Option<bool> {
    // The head is all that is read: the stamp, the level and the message's first words.
    let text = String::from_utf8_lossy(&line[..line.len().min(512)]);
    let (stamp, level, message) = split_entry(&text)?;
    let t = clock.parse(stamp)?;
    if t > until {
        return Some(true);
    }
    if matches!(level, "alert" | "notice") && is_worker_exit(message) {
        exits.push(t);
    }
    Some(false)
}

fn line_time(line: &[u8], clock: &mut LocalClock) -> Option<i64> {
    let head = std::str::from_utf8(line.get(..19)?).ok()?;
    if line.get(19..21)? != b" [" {
        return None;
    }
    clock.parse(head)
}

#[cfg(test)]
mod tests;
