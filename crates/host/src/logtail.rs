//! A log's time window, read backward from the end so the cost is the window's size and not
//! the file's; rotated files (`log.1`, `log.N.gz`) are followed only while the window reaches
//! back further. Every format-specific reader (nginx's error log, php-fpm's, audit.log,
//! kern.log) is this plus a line parser.

use std::io::{BufRead, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::fsread::{open_regular, ReadError};

const BLOCK: usize = 64 * 1024;

/// logrotate keeps `x.log.1` plain and compresses older ones (`delaycompress`); Debian keeps
/// 14. Beyond that a window of days is not what a 502 diagnosis needs.
const MAX_ROTATED: u32 = 14;

/// Bounds on one window read.
#[derive(Debug, Clone, Copy)]
pub struct TailLimits {
    /// Stop after reading this many bytes (decompressed, for `.gz`), window reached or not.
    pub max_bytes: u64,
    /// Keep at most this many bytes of a line: its start, which holds the timestamp.
    pub max_line: usize,
    /// Keep at most this many items (the newest).
    pub max_items: usize,
    /// Follow into `path.1` and `path.N.gz`.
    pub follow_rotated: bool,
    /// Is this physical line the continuation of the entry before it? nginx writes what a
    /// backend sent to stderr as is, newlines included (a PHP fatal error's stack trace), so
    /// the entry's `upstream:` field sits lines below its stamp. With this set, `take` sees
    /// each entry whole: its first line and continuations joined with a space, capped at
    /// `max_line` bytes, at most `MAX_CONTINUATIONS` of them; continuations with no first
    /// line in the file are dropped.
    pub continuation: Option<fn(&[u8]) -> bool>,
}

/// Continuation lines joined to one entry, at most.
pub const MAX_CONTINUATIONS: usize = 64;

impl Default for TailLimits {
    fn default() -> Self {
        TailLimits {
            max_bytes: 256 * 1024 * 1024,
            max_line: 8 * 1024,
            max_items: 100_000,
            follow_rotated: true,
            continuation: None,
        }
    }
}

/// What the line parser says of one raw line.
#[derive(Debug)]
pub enum LineTake<T> {
    /// In the window and wanted.
    Keep(T),
    /// In the window (or undated) and not wanted.
    Skip,
    /// Older than the window: reading backward, nothing before it can be in the window.
    Older,
}

/// The kept items of a window read, newest last.
#[derive(Debug, Clone)]
pub struct TailRead<T> {
    pub items: Vec<T>,
    /// Rotated files the window reached back into, newest first.
    pub rotated: Vec<PathBuf>,
    /// The byte cap stopped the read before the window's start.
    pub truncated: bool,
    pub bytes_read: u64,
}

/// Read the window of `path`: `take` sees each line (without its newline; possibly cut at
/// `max_line` bytes), newest first within a plain file, and decides with `LineTake`.
pub fn read_tail<T>(
    path: &Path,
    limits: TailLimits,
    take: impl FnMut(&[u8]) -> LineTake<T>,
) -> Result<TailRead<T>, ReadError> {
    read_tail_screened(path, limits, None, take)
}

/// Says of a run of whole lines (newline-separated, a block's worth) whether any of them may
/// be wanted: `false` is a promise that `take` would keep none of them.
pub type BlockScreen<'s> = &'s dyn Fn(&[u8]) -> bool;

/// `read_tail` with a block screen: a busy log's blocks that hold nothing the caller wants
/// (a substring search over 64 KiB instead of a parse per line) cost `take` one call, on
/// their oldest line, which says whether the window's start was passed.
///
/// A block is skipped whole only when no entry straddles it: nothing pending from the lines
/// after it, and its oldest line no continuation. A skipped line stamped in the future is
/// not seen by `take`; only the plain files read backward are screened (not `.gz`).
pub fn read_tail_screened<T>(
    path: &Path,
    limits: TailLimits,
    screen: Option<BlockScreen<'_>>,
    take: impl FnMut(&[u8]) -> LineTake<T>,
) -> Result<TailRead<T>, ReadError> {
    let mut scan = Scan {
        limits,
        screen,
        take,
        newest_first: Vec::new(),
        bytes_read: 0,
        truncated: false,
        pending: Vec::new(),
    };
    let mut rotated = Vec::new();
    let mut passed_since = scan.backward(path)?;
    for n in 1..=MAX_ROTATED {
        if passed_since || scan.truncated || !limits.follow_rotated {
            break;
        }
        let plain = suffixed(path, &format!(".{n}"));
        let gz = suffixed(path, &format!(".{n}.gz"));
        // A rotated file that cannot be read ends the walk back; the window is then what was
        // read, and the caller still has the current file's lines.
        passed_since = if plain.is_file() {
            rotated.push(plain.clone());
            scan.backward(&plain).unwrap_or(true)
        } else if gz.is_file() {
            rotated.push(gz.clone());
            scan.forward_gz(&gz).unwrap_or(true)
        } else {
            break;
        };
    }
    let mut items = scan.newest_first;
    items.reverse();
    Ok(TailRead {
        items,
        rotated,
        truncated: scan.truncated,
        bytes_read: scan.bytes_read,
    })
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

struct Scan<'s, T, F> {
    limits: TailLimits,
    screen: Option<BlockScreen<'s>>,
    take: F,
    newest_first: Vec<T>,
    bytes_read: u64,
    truncated: bool,
    /// Reading backward: the continuation lines met since the last entry, newest first.
    pending: Vec<Vec<u8>>,
}

impl<T, F: FnMut(&[u8]) -> LineTake<T>> Scan<'_, T, F> {
    /// Read a plain file from its end in blocks; `true` once a line older than the window is met.
    fn backward(&mut self, path: &Path) -> Result<bool, ReadError> {
        // Continuations at the top of a newer file have no first line here.
        self.pending.clear();
        let io = |source| ReadError::io(path, source);
        let (mut file, meta) = open_regular(path)?;
        let mut pos = meta.len();
        // The start of the line being assembled backward (capped at max_line bytes).
        let mut tail: Vec<u8> = Vec::new();
        let mut block = vec![0u8; BLOCK];
        while pos > 0 {
            if self.bytes_read >= self.limits.max_bytes {
                self.truncated = true;
                return Ok(false);
            }
            let len = (pos as usize).min(BLOCK);
            pos -= len as u64;
            file.seek(SeekFrom::Start(pos)).map_err(io)?;
            file.read_exact(&mut block[..len]).map_err(io)?;
            self.bytes_read += len as u64;
            let chunk = &block[..len];
            let mut end = len;
            // The block's whole lines lie between its first and its last newline: the line
            // after the last is handled first (it may go on in `tail`), then these, at once
            // when the screen says none is wanted.
            let whole_lines = self.screen.and_then(|_| {
                let first = memchr::memchr(b'\n', chunk)?;
                let last = last_newline(chunk)?;
                (first < last).then_some((first, last))
            });
            // Walk the chunk's newlines from the end: each closes the line that follows it.
            while let Some(nl) = last_newline(&chunk[..end]) {
                if let (Some((first, last)), Some(screen)) = (whole_lines, self.screen) {
                    // The line after the last newline is done (and `tail` with it).
                    if end == last {
                        if let Some(passed) = self.skip_unwanted(&chunk[first + 1..last], screen) {
                            if passed {
                                return Ok(true);
                            }
                            end = first;
                            continue;
                        }
                    }
                }
                let found = if tail.is_empty() {
                    // The whole line is in this block: no copy (the common case).
                    let line = &chunk[nl + 1..end];
                    self.take_backward(&line[..line.len().min(self.limits.max_line)])
                } else {
                    let line = join_capped(&chunk[nl + 1..end], &tail, self.limits.max_line);
                    tail.clear();
                    self.take_backward(&line)
                };
                end = nl;
                if found {
                    return Ok(true);
                }
            }
            tail = join_capped(&chunk[..end], &tail, self.limits.max_line);
        }
        Ok(!tail.is_empty() && self.take_backward(&tail))
    }

    /// `lines` (whole, newline-separated) when the screen says none is wanted and no entry
    /// straddles them: `take` sees only the oldest, for its time; Some(true) when that one is
    /// older than the window. None: read them line by line.
    fn skip_unwanted(&mut self, lines: &[u8], screen: BlockScreen<'_>) -> Option<bool> {
        if !self.pending.is_empty() || screen(lines) {
            return None;
        }
        let oldest = &lines[..memchr::memchr(b'\n', lines).unwrap_or(lines.len())];
        let oldest = strip_cr(&oldest[..oldest.len().min(self.limits.max_line)]);
        if self.limits.continuation.is_some_and(|c| c(oldest)) {
            return None;
        }
        Some(self.take_entry(oldest))
    }

    fn take_backward(&mut self, raw: &[u8]) -> bool {
        let raw = strip_cr(raw);
        if let Some(is_continuation) = self.limits.continuation {
            if raw.is_empty() {
                // The end of the file's last line, or a blank line inside an entry.
                return false;
            }
            if is_continuation(raw) {
                // pending[0] is the entry's last line (its `upstream:` field, for nginx); past
                // the cap the newest of the rest give way, so the lines right after the
                // first line stay.
                if self.pending.len() >= MAX_CONTINUATIONS {
                    self.pending.remove(1);
                }
                self.pending.push(raw.to_vec());
                return false;
            }
            if let Some((last, middle)) = self.pending.split_first() {
                let middle: Vec<&[u8]> = middle.iter().rev().map(Vec::as_slice).collect();
                let entry = join_entry(raw, &middle, last, self.limits.max_line);
                self.pending.clear();
                return self.take_entry(&entry);
            }
        }
        self.take_entry(raw)
    }

    fn take_entry(&mut self, raw: &[u8]) -> bool {
        match (self.take)(raw) {
            LineTake::Older => true,
            LineTake::Skip => false,
            LineTake::Keep(item) => {
                if self.newest_first.len() < self.limits.max_items {
                    self.newest_first.push(item);
                }
                false
            }
        }
    }

    /// A compressed rotation is read forward (gzip cannot be read backward), bounded by the
    /// same byte budget on decompressed bytes; its lines in the window are older than all
    /// lines read so far.
    fn forward_gz(&mut self, path: &Path) -> Result<bool, ReadError> {
        let (file, _) = open_regular(path)?;
        let mut reader = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(file));
        let mut in_window: Vec<T> = Vec::new();
        let mut passed_since = false;
        let mut line = Vec::new();
        // With continuations: the entry's first line, the lines after it, and its last line.
        let mut entry: Vec<u8> = Vec::new();
        let mut middle: Vec<Vec<u8>> = Vec::new();
        let mut last: Option<Vec<u8>> = None;
        loop {
            line.clear();
            let n = read_line_capped(&mut reader, &mut line, self.limits.max_line)
                .map_err(|source| ReadError::io(path, source))?;
            if n == 0 {
                break;
            }
            self.bytes_read += n as u64;
            if self.bytes_read >= self.limits.max_bytes {
                self.truncated = true;
                break;
            }
            let raw = strip_cr(line.strip_suffix(b"\n").unwrap_or(&line));
            match self.limits.continuation {
                Some(_) if raw.is_empty() => continue,
                Some(is_continuation) if is_continuation(raw) => {
                    if !entry.is_empty() {
                        if let Some(before) = last.replace(raw.to_vec()) {
                            if middle.len() + 1 < MAX_CONTINUATIONS {
                                middle.push(before);
                            }
                        }
                    }
                    continue;
                }
                Some(_) => {
                    // A new entry: the one before it is whole now.
                    let head = std::mem::replace(&mut entry, raw.to_vec());
                    let whole = whole_entry(&head, &mut middle, &mut last, self.limits.max_line);
                    if !whole.is_empty() {
                        match (self.take)(&whole) {
                            LineTake::Older => passed_since = true,
                            LineTake::Skip => {}
                            LineTake::Keep(item) => in_window.push(item),
                        }
                    }
                    continue;
                }
                None => {}
            }
            match (self.take)(raw) {
                LineTake::Older => passed_since = true,
                LineTake::Skip => {}
                LineTake::Keep(item) => in_window.push(item),
            }
        }
        let whole = whole_entry(&entry, &mut middle, &mut last, self.limits.max_line);
        if !whole.is_empty() {
            match (self.take)(&whole) {
                LineTake::Older => passed_since = true,
                LineTake::Skip => {}
                LineTake::Keep(item) => in_window.push(item),
            }
        }
        // Keep the newest items when the cap bites, as the backward reader does.
        let room = self
            .limits
            .max_items
            .saturating_sub(self.newest_first.len());
        self.newest_first
            .extend(in_window.into_iter().rev().take(room));
        Ok(passed_since)
    }
}

/// An entry read forward, whole: its first line and continuations joined (see `join_entry`);
/// the continuation buffers are emptied for the next entry.
fn whole_entry(
    head: &[u8],
    middle: &mut Vec<Vec<u8>>,
    last: &mut Option<Vec<u8>>,
    cap: usize,
) -> Vec<u8> {
    let entry = match last.take() {
        Some(l) => {
            let m: Vec<&[u8]> = middle.iter().map(Vec::as_slice).collect();
            join_entry(head, &m, &l, cap)
        }
        None => head.to_vec(),
    };
    middle.clear();
    entry
}

/// `head`, the `middle` continuations (in file order) and the `last` one, joined with spaces
/// within `cap` bytes: the head and the last line first, then as many of the middle as fit.
fn join_entry(head: &[u8], middle: &[&[u8]], last: &[u8], cap: usize) -> Vec<u8> {
    let mut entry = head[..head.len().min(cap)].to_vec();
    let reserve = (1 + last.len()).min(cap.saturating_sub(entry.len()));
    for c in middle {
        if entry.len() + 1 + c.len() + reserve > cap {
            break;
        }
        entry.push(b' ');
        entry.extend_from_slice(c);
    }
    if entry.len() < cap {
        entry.push(b' ');
        entry.extend_from_slice(last);
        entry.truncate(cap);
    }
    entry
}

fn strip_cr(raw: &[u8]) -> &[u8] {
    raw.strip_suffix(b"\r").unwrap_or(raw)
}

/// Read one line, keeping at most `cap` bytes of it; returns the bytes consumed (0 at EOF).
pub fn read_line_capped<R: BufRead>(
    r: &mut R,
    out: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<usize> {
    let mut consumed = 0;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(consumed);
        }
        let (chunk, found) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        let room = cap.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let n = chunk.len();
        r.consume(n);
        consumed += n;
        if found {
            return Ok(consumed);
        }
    }
}

/// The last `\n` in `hay`: eight bytes at a time (the zero-byte test of "Bit Twiddling
/// Hacks"), since std's memrchr is not public for bytes and this loop runs over every byte
/// of a log's window.
fn last_newline(hay: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = LO * b'\n' as u64;
    let mut chunks = hay.rchunks_exact(8);
    let mut end = hay.len();
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let x = u64::from_le_bytes(w) ^ NL;
        if x.wrapping_sub(LO) & !x & HI != 0 {
            let at = c.iter().rposition(|b| *b == b'\n');
            if let Some(i) = at {
                return Some(end - 8 + i);
            }
        }
        end -= 8;
    }
    chunks.remainder().iter().rposition(|b| *b == b'\n')
}

/// `front ++ back`, keeping only the first `cap` bytes: reading backward, the front is the
/// line's start, which holds the timestamp and the message.
fn join_capped(front: &[u8], back: &[u8], cap: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity((front.len() + back.len()).min(cap));
    v.extend_from_slice(&front[..front.len().min(cap)]);
    let room = cap - v.len();
    v.extend_from_slice(&back[..back.len().min(room)]);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Continuation lines (here: not starting with `t=`) join the entry above them, read
    /// backward from a plain file and forward from a rotated .gz alike; one with no entry
    /// above it in its file is dropped.
    #[test]
    fn continuations_join_their_entry_in_both_directions() {
        fn cont(raw: &[u8]) -> bool {
            !raw.starts_with(b"t=")
        }
        let text = "  orphan\nt=1 head one\n  more\n  and more\nt=2 head two\nt=3 three\n  tail\n";
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        std::fs::write(&p, text).unwrap();
        let gz = dir.path().join("x.log.1.gz");
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).unwrap(),
            flate2::Compression::fast(),
        );
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap();
        let limits = TailLimits {
            continuation: Some(cont),
            follow_rotated: false,
            ..TailLimits::default()
        };
        let want = [
            "t=1 head one   more   and more",
            "t=2 head two",
            "t=3 three   tail",
        ];
        let r = read_tail(&p, limits, numbered(0)).unwrap();
        assert_eq!(r.items, want);
        let mut scan = Scan {
            limits,
            screen: None,
            take: numbered(0),
            newest_first: Vec::new(),
            bytes_read: 0,
            truncated: false,
            pending: Vec::new(),
        };
        scan.forward_gz(&gz).unwrap();
        let mut forward = scan.newest_first;
        forward.reverse();
        assert_eq!(forward, want);
        // Without the rule every physical line stands alone.
        let r = read_tail(
            &p,
            TailLimits {
                follow_rotated: false,
                ..TailLimits::default()
            },
            numbered(0),
        )
        .unwrap();
        assert_eq!(r.items, ["t=1 head one", "t=2 head two", "t=3 three"]);
        // An entry with many continuations stays within max_line.
        let long: String = std::iter::once("t=9 x".to_string())
            .chain((0..500).map(|i| format!("  line {i}")))
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&p, long + "\n").unwrap();
        let capped = TailLimits {
            max_line: 100,
            ..limits
        };
        let r = read_tail(&p, capped, numbered(0)).unwrap();
        assert_eq!(r.items.len(), 1);
        assert!(r.items[0].len() <= 100, "{}", r.items[0]);
        assert!(
            r.items[0].starts_with("t=9 x   line 0   line 1 "),
            "{}",
            r.items[0]
        );
        assert!(r.items[0].ends_with("   line 499"), "{}", r.items[0]);
    }

    /// Blocks the screen rejects are skipped, and the result is the unscreened read's: the
    /// same kept entries (continuations joined across block edges), the same stop at the
    /// window's start, from far fewer `take` calls.
    #[test]
    fn a_screened_read_keeps_what_the_full_read_keeps() {
        fn cont(raw: &[u8]) -> bool {
            !raw.starts_with(b"t=")
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("busy.log");
        let mut text = String::new();
        for n in 0..60_000i64 {
            text.push_str(&format!(
                "t={n} another site's line, padded to a busy log's width\n"
            ));
            if n % 7_919 == 0 {
                // A wanted entry whose needle sits in its last continuation line.
                text.push_str(&format!(
                    "t={n} head of an entry\n  stack frame\n  upstream: WANT-{n}\n"
                ));
            }
            if n % 13_001 == 0 {
                text.push_str(&format!("t={n} WANT in a single line\n"));
            }
            if n % 5_003 == 1 {
                // The needle in the head, the continuations without it.
                text.push_str(&format!("t={n} WANT-head\n  cont a {n}\n  cont b {n}\n"));
            }
        }
        std::fs::write(&p, &text).unwrap();
        let limits = TailLimits {
            continuation: Some(cont),
            follow_rotated: false,
            ..TailLimits::default()
        };
        let wanted = |since: i64| {
            let mut inner = numbered(since);
            move |raw: &[u8]| match inner(raw) {
                LineTake::Keep(s) if s.contains("WANT") => LineTake::Keep(s),
                LineTake::Keep(_) => LineTake::Skip,
                other => other,
            }
        };
        let screen = |lines: &[u8]| memchr::memmem::find(lines, b"WANT").is_some();
        for since in [0, 20_000, 59_990, 70_000] {
            let full_calls = std::cell::Cell::new(0usize);
            let mut all = wanted(since);
            let full = read_tail(&p, limits, |raw: &[u8]| {
                full_calls.set(full_calls.get() + 1);
                all(raw)
            })
            .unwrap();
            let calls = std::cell::Cell::new(0usize);
            let mut counted = wanted(since);
            let screened = read_tail_screened(&p, limits, Some(&screen), |raw: &[u8]| {
                calls.set(calls.get() + 1);
                counted(raw)
            })
            .unwrap();
            assert_eq!(screened.items, full.items, "since {since}");
            if since == 0 {
                assert_eq!(full.items.len(), 8 + 5 + 12, "{:?}", full.items);
                assert!(
                    full.items.iter().any(|i| i.ends_with("cont b 5004")),
                    "{:?}",
                    full.items
                );
                assert!(
                    full.items[0].ends_with("upstream: WANT-0"),
                    "{:?}",
                    full.items
                );
                // 25 of some 60 blocks hold a needle; the rest cost one call each.
                assert!(
                    calls.get() * 3 < full_calls.get() * 2,
                    "take called {} times, {} unscreened",
                    calls.get(),
                    full_calls.get()
                );
            }
        }
    }

    /// An entry cut by a block edge is never skipped in part: its continuations read before
    /// its head (the needle in the last one), or a block whose oldest lines continue an entry
    /// from the block before (the needle in the head).
    #[test]
    fn a_screened_read_keeps_entries_cut_by_a_block_edge_whole() {
        fn cont(raw: &[u8]) -> bool {
            !raw.starts_with(b"t=")
        }
        let limits = TailLimits {
            continuation: Some(cont),
            follow_rotated: false,
            ..TailLimits::default()
        };
        let filler = |from: i64, to: i64| -> String {
            (from..to)
                .map(|n| format!("t={n} another site's line, padded to a busy log's width\n"))
                .collect()
        };
        // `head` ends where the file's last block begins; that block is `after`, padded to
        // exactly one block with filler lines from t=2000 on.
        let build = |head: &str, after: &str| -> String {
            let mut tail = after.to_string();
            let mut n = 2000;
            loop {
                let line = filler(n, n + 1);
                if tail.len() + line.len() + 16 > BLOCK {
                    break;
                }
                tail.push_str(&line);
                n += 1;
            }
            // One last line padded to end the block exactly.
            let last = format!("t={n} pad ");
            let pad = BLOCK - tail.len() - last.len() - 1;
            tail.push_str(&last);
            tail.push_str(&"x".repeat(pad));
            tail.push('\n');
            assert_eq!(tail.len(), BLOCK);
            filler(0, 1500) + head + &tail
        };
        let screen = |lines: &[u8]| memchr::memmem::find(lines, b"WANT").is_some();
        let keep_wanted = || {
            let mut inner = numbered(0);
            move |raw: &[u8]| match inner(raw) {
                LineTake::Keep(s) if s.contains("WANT") => LineTake::Keep(s),
                LineTake::Keep(_) => LineTake::Skip,
                other => other,
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("edge.log");
        for (head, after, want) in [
            // The continuations (needle last) start the last block; the head ends the one before.
            (
                "t=1500 head of an entry\n",
                "  stack frame\n  upstream: WANT-1500\n",
                "t=1500 head of an entry   stack frame   upstream: WANT-1500",
            ),
            // The last block's first line is cut (it goes on from the block before); its oldest
            // whole line is a continuation too; the needle is in the head.
            (
                "t=1500 WANT-head\n",
                "  cont a\n  cont b\n",
                "t=1500 WANT-head   cont a   cont b",
            ),
        ] {
            std::fs::write(&p, build(head, after)).unwrap();
            let full = read_tail(&p, limits, keep_wanted()).unwrap();
            assert_eq!(full.items, [want]);
            let screened = read_tail_screened(&p, limits, Some(&screen), keep_wanted()).unwrap();
            assert_eq!(screened.items, [want]);
        }
    }

    #[test]
    fn last_newline_finds_what_a_byte_scan_finds() {
        // Every length up to three words, a newline at every place, and none at all; bytes
        // next to `\n` in value (0x0b, 0x8a) must not be taken for it.
        for len in 0..24usize {
            let base: Vec<u8> = (0..len)
                .map(|i| if i % 2 == 0 { 0x0b } else { 0x8a })
                .collect();
            assert_eq!(last_newline(&base), None, "len {len}");
            for at in 0..len {
                for second in [None, Some(at / 2)] {
                    let mut hay = base.clone();
                    hay[at] = b'\n';
                    if let Some(s) = second {
                        hay[s] = b'\n';
                    }
                    let want = hay.iter().rposition(|b| *b == b'\n');
                    assert_eq!(last_newline(&hay), want, "len {len} at {at} {second:?}");
                }
            }
        }
    }

    /// Lines `t=N text`; the window keeps N >= since.
    fn numbered(since: i64) -> impl FnMut(&[u8]) -> LineTake<String> {
        move |raw| {
            let s = String::from_utf8_lossy(raw);
            let Some(n) = s
                .strip_prefix("t=")
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse::<i64>().ok())
            else {
                return LineTake::Skip;
            };
            if n < since {
                LineTake::Older
            } else {
                LineTake::Keep(s.into_owned())
            }
        }
    }

    fn write(path: &Path, range: std::ops::Range<i64>) {
        let mut f = std::fs::File::create(path).unwrap();
        for n in range {
            writeln!(f, "t={n} line").unwrap();
        }
    }

    #[test]
    fn stops_at_the_first_older_line_and_keeps_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        write(&p, 0..100_000);
        let r = read_tail(&p, TailLimits::default(), numbered(99_990)).unwrap();
        assert_eq!(r.items.len(), 10);
        assert_eq!(r.items[0], "t=99990 line");
        assert_eq!(r.items[9], "t=99999 line");
        // One 64 KiB block holds far more than ten lines: the file's start was never read.
        assert!(r.bytes_read <= BLOCK as u64, "read {}", r.bytes_read);
    }

    #[test]
    fn follows_plain_and_compressed_rotations_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        write(&p, 20..30);
        write(&dir.path().join("x.log.1"), 10..20);
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(dir.path().join("x.log.2.gz")).unwrap(),
            flate2::Compression::default(),
        );
        for n in 0..10 {
            writeln!(gz, "t={n} line").unwrap();
        }
        gz.finish().unwrap();
        let r = read_tail(&p, TailLimits::default(), numbered(5)).unwrap();
        let got: Vec<i64> = r
            .items
            .iter()
            .map(|s| s[2..].split(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(got, (5..30).collect::<Vec<_>>());
        assert_eq!(r.rotated.len(), 2);
        // Without rotation the window is the current file only.
        let limits = TailLimits {
            follow_rotated: false,
            ..TailLimits::default()
        };
        let r = read_tail(&p, limits, numbered(5)).unwrap();
        assert_eq!(r.items.len(), 10);
        assert!(r.rotated.is_empty());
    }

    #[test]
    fn caps_bytes_lines_and_items() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        let mut f = std::fs::File::create(&p).unwrap();
        writeln!(f, "t=1 {}", "a".repeat(100_000)).unwrap();
        for n in 2..1000 {
            writeln!(f, "t={n} line").unwrap();
        }
        drop(f);
        let limits = TailLimits {
            max_line: 16,
            max_items: 5,
            ..TailLimits::default()
        };
        let r = read_tail(&p, limits, numbered(0)).unwrap();
        assert_eq!(r.items.len(), 5);
        assert_eq!(r.items[4], "t=999 line");
        let limits = TailLimits {
            max_line: 16,
            ..TailLimits::default()
        };
        let r = read_tail(&p, limits, numbered(0)).unwrap();
        assert_eq!(r.items[0], format!("t=1 {}", "a".repeat(12)));
        let limits = TailLimits {
            max_bytes: 1,
            ..TailLimits::default()
        };
        let r = read_tail(&p, limits, numbered(0)).unwrap();
        assert!(r.truncated);
    }

    #[test]
    fn refuses_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fifo");
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(read_tail(&p, TailLimits::default(), numbered(0)).is_err());
    }
}
