//! Finding nginx: the running masters from /proc (binary, `-c`, `-p`, workers and their
//! credentials, network namespace), else the binary's compiled-in `--conf-path`, else
//! /etc/nginx/nginx.conf.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use why502_host::proc::Credentials;
use why502_host::ProcessTable;

pub const DEFAULT_CONF: &str = "/etc/nginx/nginx.conf";
pub const DEFAULT_BINARY: &str = "/usr/sbin/nginx";
const MASTER_TITLE: &str = "nginx: master process";
const WORKER_TITLE: &str = "nginx: worker process";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    pub pid: u32,
    pub credentials: Option<Credentials>,
    pub started: Option<SystemTime>,
}

/// A running nginx master and what its command line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    pub pid: u32,
    pub binary: Option<PathBuf>,
    /// `-c` as given (resolved against the prefix when relative); `None` = compiled-in default.
    pub conf: Option<PathBuf>,
    /// `-p` as given.
    pub prefix: Option<PathBuf>,
    /// `-g` directives as given.
    pub globals: Option<String>,
    pub netns: Option<u64>,
    pub same_netns: bool,
    pub started: Option<SystemTime>,
    pub workers: Vec<Worker>,
}

impl Master {
    /// When the running configuration was loaded: a reload replaces every worker, so the
    /// oldest live worker is no older than the last reload; without workers, the master's start.
    pub fn loaded_at(&self) -> Option<SystemTime> {
        let oldest_worker = self.workers.iter().filter_map(|w| w.started).min();
        match (self.started, oldest_worker) {
            (Some(m), Some(w)) => Some(m.max(w)),
            (m, w) => m.or(w),
        }
    }
}

/// When the master last loaded its configuration, if that can be told from its workers: each
/// worker must have started with the master, at a reload the error log noted (`reloads`), or
/// at a start the master's log shows no worker died at (`quiet_starts`, from
/// `unexplained_worker_starts` checked with `errorlog::exits`: a reload the log's level did
/// not note). A worker started at any other time was respawned after one died, from the
/// configuration in memory — then its start says nothing about what was read from disk, and
/// the answer is None.
pub fn trusted_load_time(
    master: &Master,
    reloads: &[SystemTime],
    quiet_starts: &[SystemTime],
) -> Option<SystemTime> {
    let starts: Vec<SystemTime> = master.workers.iter().filter_map(|w| w.started).collect();
    if starts.is_empty() || starts.len() != master.workers.len() {
        return None;
    }
    let anchors: Vec<SystemTime> = master
        .started
        .into_iter()
        .chain(reloads.iter().copied())
        .chain(quiet_starts.iter().copied())
        .collect();
    if !starts
        .iter()
        .all(|w| anchors.iter().any(|a| near_load(*w, *a)))
    {
        return None;
    }
    master.loaded_at()
}

/// The workers' start times that neither the master's start nor a logged reload explains
/// (oldest first, one per second): each a reload the log's level hid, or a respawn.
pub fn unexplained_worker_starts(master: &Master, reloads: &[SystemTime]) -> Vec<SystemTime> {
    let anchors: Vec<SystemTime> = master
        .started
        .into_iter()
        .chain(reloads.iter().copied())
        .collect();
    let mut starts: Vec<SystemTime> = master
        .workers
        .iter()
        .filter_map(|w| w.started)
        .filter(|w| !anchors.iter().any(|a| near_load(*w, *a)))
        .collect();
    starts.sort();
    starts.dedup_by(|a, b| a.duration_since(*b).unwrap_or_default() < Duration::from_secs(1));
    starts
}

/// A start time is known to the tick and a log stamp to the second; a load's workers start
/// within moments of it.
fn near_load(worker: SystemTime, load: SystemTime) -> bool {
    worker + Duration::from_secs(2) >= load && worker <= load + Duration::from_secs(5)
}

/// Every nginx master in the table, the ones in the agent's network namespace first.
pub fn find_masters(table: &ProcessTable, own_netns: Option<u64>) -> Vec<Master> {
    let mut masters: Vec<Master> = table
        .iter()
        .filter_map(|p| {
            let title = p.cmdline_joined();
            let original = title.strip_prefix(MASTER_TITLE)?.trim().to_string();
            Some(master_from(table, p.pid, &original, own_netns))
        })
        .collect();
    masters.sort_by_key(|m| (!m.same_netns, m.pid));
    masters
}

fn master_from(table: &ProcessTable, pid: u32, original_cmdline: &str, own: Option<u64>) -> Master {
    let args = parse_master_args(original_cmdline);
    let netns = table.netns(pid);
    let workers = table
        .children_of(pid)
        .filter(|c| c.cmdline_joined().starts_with(WORKER_TITLE))
        .map(|c| Worker {
            pid: c.pid,
            credentials: table.credentials(c.pid),
            started: table.start_time(c),
        })
        .collect();
    let binary = table
        .exe(pid)
        .or_else(|| args.program.as_ref().filter(|p| p.is_absolute()).cloned());
    let conf = args.conf.map(|c| match (&args.prefix, c.is_relative()) {
        (Some(prefix), true) => prefix.join(c),
        _ => c,
    });
    Master {
        pid,
        binary,
        conf,
        prefix: args.prefix,
        globals: args.globals,
        netns,
        same_netns: netns.is_some() && netns == own,
        started: table.get(pid).and_then(|p| table.start_time(p)),
        workers,
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct MasterArgs {
    pub program: Option<PathBuf>,
    pub conf: Option<PathBuf>,
    pub prefix: Option<PathBuf>,
    pub globals: Option<String>,
}

/// Parse the original command line nginx keeps in its title (`/usr/sbin/nginx -p /srv/ -c
/// conf/nginx.conf -g daemon off;`). The title is one space-joined string, so paths with spaces
/// cannot be told apart; those are rare enough for nginx to accept the same limitation in `ps`.
pub fn parse_master_args(cmdline: &str) -> MasterArgs {
    let mut words = cmdline.split_whitespace().peekable();
    let mut out = MasterArgs {
        program: words.next().map(PathBuf::from),
        ..MasterArgs::default()
    };
    while let Some(w) = words.next() {
        match w {
            "-c" => out.conf = words.next().map(PathBuf::from),
            "-p" => out.prefix = words.next().map(PathBuf::from),
            // -g's one argument holds spaces once joined into the title: take words up to the
            // next option.
            "-g" => {
                let mut g = Vec::new();
                while let Some(next) = words.next_if(|n| !n.starts_with('-')) {
                    g.push(next);
                }
                out.globals = Some(g.join(" "));
            }
            _ => {
                // nginx also accepts `-cFILE` glued.
                if let Some(c) = w.strip_prefix("-c").filter(|c| !c.is_empty()) {
                    out.conf = Some(PathBuf::from(c));
                } else if let Some(p) = w.strip_prefix("-p").filter(|p| !p.is_empty()) {
                    out.prefix = Some(PathBuf::from(p));
                }
            }
        }
    }
    out
}

/// What `nginx -V` says about where things are.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    pub version: Option<String>,
    pub conf_path: Option<PathBuf>,
    pub prefix: Option<PathBuf>,
    pub error_log_path: Option<PathBuf>,
    /// Compiled-in paths nginx creates or writes when the config does not say (pid, lock,
    /// logs, temp directories), as `--*-path=` gives them.
    pub runtime_paths: Vec<PathBuf>,
}

/// `configure` options naming what nginx creates or writes at start.
const RUNTIME_PATH_OPTIONS: &[&str] = &[
    "--pid-path=",
    "--lock-path=",
    "--error-log-path=",
    "--http-log-path=",
    "--http-client-body-temp-path=",
    "--http-proxy-temp-path=",
    "--http-fastcgi-temp-path=",
    "--http-uwsgi-temp-path=",
    "--http-scgi-temp-path=",
];

pub fn parse_build_info(v_output: &str) -> BuildInfo {
    let mut info = BuildInfo::default();
    for line in v_output.lines() {
        if let Some(v) = line.strip_prefix("nginx version: ") {
            info.version = Some(v.trim().to_string());
        }
        if let Some(args) = line.strip_prefix("configure arguments:") {
            for a in args.split_whitespace() {
                if let Some(v) = a.strip_prefix("--conf-path=") {
                    info.conf_path = Some(PathBuf::from(v));
                } else if let Some(v) = a.strip_prefix("--prefix=") {
                    info.prefix = Some(PathBuf::from(v));
                } else if let Some(v) = a.strip_prefix("--error-log-path=") {
                    info.error_log_path = Some(PathBuf::from(v));
                }
                if let Some(v) = RUNTIME_PATH_OPTIONS
                    .iter()
                    .find_map(|o| a.strip_prefix(o))
                    .filter(|v| *v != "stderr" && !v.starts_with("syslog:"))
                {
                    info.runtime_paths.push(PathBuf::from(v));
                }
            }
        }
    }
    info
}

/// The binary's compiled-in paths: the text `nginx -V` prints, read from the binary itself,
/// else from running `nginx -V` (prints to stderr).
pub async fn build_info(binary: &Path, timeout: Duration) -> Option<BuildInfo> {
    let path = binary.to_path_buf();
    if let Ok(Some(info)) = tokio::task::spawn_blocking(move || build_info_in_binary(&path)).await {
        return Some(info);
    }
    build_info_from_run(binary, timeout).await
}

/// nginx -V's text is two string literals in the binary (`"nginx version: " NGINX_VER_BUILD
/// "\n"` and `"configure arguments:" NGX_CONFIGURE "\n"`, src/core/nginx.c), in its
/// `.rodata`. Reading that section (about 120 KiB of Debian's 1.2 MiB binary) answers what
/// running it would, without the ~3 ms of exec and dynamic linking on the run's critical
/// path. A binary that is not a little-endian ELF64 with the literals falls back to running it.
pub fn build_info_in_binary(binary: &Path) -> Option<BuildInfo> {
    let rodata = elf_rodata(binary)?;
    let version = literal_line(&rodata, b"nginx version: ")?;
    let configure = literal_line(&rodata, b"configure arguments:")?;
    let info = parse_build_info(&format!("{version}\n{configure}\n"));
    info.version.is_some().then_some(info)
}

/// Larger than any nginx build's read-only data (a static OpenResty has a few MiB).
const MAX_RODATA: u64 = 32 * 1024 * 1024;

/// The bytes of an ELF64 little-endian file's `.rodata` section, read with a few preads.
/// Hand-written: the four header fields and one section lookup this needs do not warrant an
/// ELF crate.
fn elf_rodata(path: &Path) -> Option<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).ok()?;
    let read_at = |offset: u64, len: u64| -> Option<Vec<u8>> {
        let mut buf = vec![0u8; usize::try_from(len).ok()?];
        file.read_exact_at(&mut buf, offset).ok()?;
        Some(buf)
    };
    let header = read_at(0, 64)?;
    // Magic, 64-bit class, little-endian data.
    if header[..4] != *b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return None;
    }
    let u16_at =
        |b: &[u8], at: usize| Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?));
    let u32_at =
        |b: &[u8], at: usize| Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?));
    let u64_at =
        |b: &[u8], at: usize| Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?));
    let shoff = u64_at(&header, 0x28)?;
    let shentsize = u64::from(u16_at(&header, 0x3A)?);
    let shnum = u64::from(u16_at(&header, 0x3C)?);
    let shstrndx = u64::from(u16_at(&header, 0x3E)?);
    if shentsize != 64 || shnum == 0 || shnum > 4096 || shstrndx >= shnum {
        return None;
    }
    let table = read_at(shoff, shentsize * shnum)?;
    let section = |i: u64| -> Option<(u32, u64, u64)> {
        let at = usize::try_from(i * shentsize).ok()?;
        // sh_name, sh_offset, sh_size
        Some((
            u32_at(&table, at)?,
            u64_at(&table, at + 0x18)?,
            u64_at(&table, at + 0x20)?,
        ))
    };
    let (_, names_off, names_size) = section(shstrndx)?;
    if names_size > 1024 * 1024 {
        return None;
    }
    let names = read_at(names_off, names_size)?;
    let (_, offset, size) = (0..shnum).filter_map(section).find(|(name, _, _)| {
        names
            .get(*name as usize..)
            .and_then(|n| n.split(|b| *b == 0).next())
            == Some(b".rodata".as_slice())
    })?;
    if size > MAX_RODATA {
        return None;
    }
    read_at(offset, size)
}

/// The first NUL-terminated literal that starts with `prefix` and ends with a newline, as
/// text without it.
fn literal_line<'a>(bytes: &'a [u8], prefix: &[u8]) -> Option<&'a str> {
    let mut from = 0;
    while let Some(at) = memchr::memmem::find(&bytes[from..], prefix) {
        let start = from + at;
        let rest = &bytes[start..];
        let end = rest.iter().take(64 * 1024).position(|&b| b == 0)?;
        if let Some(line) = rest[..end].strip_suffix(b"\n") {
            if let Ok(text) = std::str::from_utf8(line) {
                if !text.contains('\n') {
                    return Some(text);
                }
            }
        }
        from = start + prefix.len();
    }
    None
}

async fn build_info_from_run(binary: &Path, timeout: Duration) -> Option<BuildInfo> {
    let bin = binary.to_str()?;
    let out = why502_host::run(&[bin, "-V"], timeout, 64 * 1024)
        .await
        .ok()?;
    let info = parse_build_info(&format!("{}{}", out.stderr, out.stdout));
    (info.version.is_some() || info.conf_path.is_some()).then_some(info)
}

/// The nginx binary: the master's, else the first of PATH's `nginx`, /usr/sbin/nginx.
pub fn find_binary() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("nginx"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    from_path
        .into_iter()
        .chain([
            PathBuf::from(DEFAULT_BINARY),
            PathBuf::from("/usr/local/nginx/sbin/nginx"),
            PathBuf::from("/usr/local/sbin/nginx"),
        ])
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_args_variants() {
        // (command line, -c, -p, -g)
        type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);
        let cases: &[Case] = &[
            (
                "/usr/sbin/nginx -g daemon on; master_process on;",
                None,
                None,
                Some("daemon on; master_process on;"),
            ),
            (
                "/usr/sbin/nginx -p /tmp/lab/ -c /tmp/lab/conf/nginx.conf",
                Some("/tmp/lab/conf/nginx.conf"),
                Some("/tmp/lab/"),
                None,
            ),
            (
                "nginx -c/etc/nginx/alt.conf",
                Some("/etc/nginx/alt.conf"),
                None,
                None,
            ),
            ("/usr/sbin/nginx", None, None, None),
            (
                "/usr/sbin/nginx -c conf/site.conf -p /srv/nginx",
                Some("conf/site.conf"),
                Some("/srv/nginx"),
                None,
            ),
        ];
        for (line, conf, prefix, globals) in cases {
            let a = parse_master_args(line);
            assert_eq!(a.conf.as_deref(), conf.map(Path::new), "{line}");
            assert_eq!(a.prefix.as_deref(), prefix.map(Path::new), "{line}");
            assert_eq!(a.globals.as_deref(), *globals, "{line}");
        }
    }

    /// A minimal ELF64 little-endian file: a null section, `.shstrtab`, then `rodata` as
    /// `.rodata`, and `text` before it as `.text` (where the same words appear as code bytes).
    fn elf_image(text: &[u8], rodata: &[u8]) -> Vec<u8> {
        let names = b"\0.shstrtab\0.text\0.rodata\0";
        let mut image = vec![0u8; 64];
        image[..4].copy_from_slice(b"\x7fELF");
        image[4] = 2;
        image[5] = 1;
        let text_off = image.len() as u64;
        image.extend_from_slice(text);
        let rodata_off = image.len() as u64;
        image.extend_from_slice(rodata);
        let names_off = image.len() as u64;
        image.extend_from_slice(names);
        let shoff = image.len() as u64;
        let section = |name: u32, off: u64, size: u64| {
            let mut h = vec![0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&off.to_le_bytes());
            h[0x20..0x28].copy_from_slice(&size.to_le_bytes());
            h
        };
        image.extend(section(0, 0, 0));
        image.extend(section(1, names_off, names.len() as u64));
        image.extend(section(11, text_off, text.len() as u64));
        image.extend(section(17, rodata_off, rodata.len() as u64));
        image[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        image[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
        image[0x3C..0x3E].copy_from_slice(&4u16.to_le_bytes());
        image[0x3E..0x40].copy_from_slice(&1u16.to_le_bytes());
        image
    }

    #[test]
    fn build_info_read_from_the_binary_is_what_running_it_prints() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("nginx");
        // The shape of the literals in a real build: NUL-terminated, each ending in "\n",
        // next to look-alikes that are not them (a format string, a help text).
        let mut rodata = b"configure arguments: %s\0nginx version: \0".to_vec();
        rodata.extend_from_slice(b"nginx version: nginx/1.22.1\n\0built with OpenSSL\n\0");
        rodata.extend_from_slice(
            b"configure arguments: --prefix=/usr/share/nginx --conf-path=/etc/nginx/nginx.conf --http-fastcgi-temp-path=/var/lib/nginx/fastcgi\n\0tail",
        );
        let text = b"nginx version: nginx/0.0.0-in-text\n\0";
        std::fs::write(&bin, elf_image(text, &rodata)).unwrap();
        let b = build_info_in_binary(&bin).expect("found");
        assert_eq!(b.version.as_deref(), Some("nginx/1.22.1"));
        assert_eq!(
            b.conf_path.as_deref(),
            Some(Path::new("/etc/nginx/nginx.conf"))
        );
        assert_eq!(
            b.runtime_paths,
            vec![PathBuf::from("/var/lib/nginx/fastcgi")]
        );
        // Without the literals (a packed binary), or not an ELF file: nothing to read.
        std::fs::write(&bin, elf_image(b"", b"UPX!")).unwrap();
        assert_eq!(build_info_in_binary(&bin), None);
        std::fs::write(&bin, b"#!/bin/sh\nexec /usr/sbin/nginx \"$@\"\n").unwrap();
        assert_eq!(build_info_in_binary(&bin), None);
        // A truncated section table is no answer either.
        let mut cut = elf_image(b"", &rodata);
        cut.truncate(cut.len() - 10);
        std::fs::write(&bin, cut).unwrap();
        assert_eq!(build_info_in_binary(&bin), None);
    }

    #[test]
    fn the_installed_nginx_binary_reads_as_its_own_dash_v() {
        // The real binary where one is installed (Debian's nginx in the lab and CI).
        let Some(bin) = find_binary() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI must have nginx installed"
            );
            return;
        };
        let out = std::process::Command::new(&bin).arg("-V").output().unwrap();
        let ran = parse_build_info(&String::from_utf8_lossy(&out.stderr));
        assert_eq!(build_info_in_binary(&bin), Some(ran));
    }

    #[test]
    fn build_info_from_debian_nginx_v() {
        let v = "nginx version: nginx/1.22.1\nbuilt with OpenSSL 3.0.9 30 May 2023\nTLS SNI support enabled\nconfigure arguments: --with-cc-opt='-g -O2' --prefix=/usr/share/nginx --conf-path=/etc/nginx/nginx.conf --http-log-path=/var/log/nginx/access.log --error-log-path=stderr --lock-path=/var/lock/nginx.lock\n";
        let b = parse_build_info(v);
        assert_eq!(b.version.as_deref(), Some("nginx/1.22.1"));
        assert_eq!(
            b.conf_path.as_deref(),
            Some(Path::new("/etc/nginx/nginx.conf"))
        );
        assert_eq!(b.prefix.as_deref(), Some(Path::new("/usr/share/nginx")));
    }

    #[test]
    fn loaded_at_is_the_later_of_master_and_oldest_worker() {
        let t = |s| Some(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        let m = Master {
            pid: 1,
            binary: None,
            conf: None,
            prefix: None,
            globals: None,
            netns: None,
            same_netns: true,
            started: t(100),
            workers: vec![
                Worker {
                    pid: 2,
                    credentials: None,
                    started: t(500),
                },
                Worker {
                    pid: 3,
                    credentials: None,
                    started: t(700),
                },
            ],
        };
        assert_eq!(m.loaded_at(), t(500));
    }

    #[test]
    fn a_load_time_is_trusted_only_when_every_worker_started_at_a_load() {
        let at = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let master = |workers: &[u64]| Master {
            pid: 1,
            binary: None,
            conf: None,
            prefix: None,
            globals: None,
            netns: None,
            same_netns: true,
            started: Some(at(100)),
            workers: workers
                .iter()
                .enumerate()
                .map(|(i, s)| Worker {
                    pid: 2 + i as u32,
                    credentials: None,
                    started: Some(at(*s)),
                })
                .collect(),
        };
        // Started with the master: loaded then.
        assert_eq!(
            trusted_load_time(&master(&[100, 101]), &[], &[]),
            Some(at(100))
        );
        assert!(unexplained_worker_starts(&master(&[100, 101]), &[]).is_empty());
        // Replaced at a logged reload.
        assert_eq!(
            trusted_load_time(&master(&[500, 500]), &[at(499)], &[]),
            Some(at(500))
        );
        // One worker respawned at 700 (no reload then): its config is the one in memory.
        assert_eq!(
            trusted_load_time(&master(&[500, 700]), &[at(499)], &[]),
            None
        );
        assert_eq!(
            unexplained_worker_starts(&master(&[500, 700]), &[at(499)]),
            vec![at(700)]
        );
        // The only worker started with no reload logged: a respawn, or a reload out of the window.
        assert_eq!(trusted_load_time(&master(&[700]), &[], &[]), None);
        assert_eq!(trusted_load_time(&master(&[]), &[], &[]), None);
        // The master's log shows no worker died at 700: a reload its level did not note.
        assert_eq!(
            trusted_load_time(&master(&[700, 700]), &[], &[at(700)]),
            Some(at(700))
        );
        assert_eq!(
            unexplained_worker_starts(&master(&[700, 700, 900]), &[]),
            vec![at(700), at(900)]
        );
        // Quiet at 700, but the worker of 900 is a respawn.
        assert_eq!(
            trusted_load_time(&master(&[700, 900]), &[], &[at(700)]),
            None
        );
    }
}
