//! Memory and swap from /proc/meminfo, pressure from /proc/pressure/memory (PSI, Linux 4.20+
//! with CONFIG_PSI; `psi=0` on the command line turns it off).

use std::path::Path;

use serde::Serialize;
use why502_host::ReadError;

const MEMINFO: &str = "/proc/meminfo";
const PSI_MEMORY: &str = "/proc/pressure/memory";
const MAX_PROC_BYTES: u64 = 64 * 1024;

/// The /proc/meminfo fields that matter here, in kB as the file gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemInfo {
    pub mem_total_kb: u64,
    pub mem_available_kb: u64,
    /// MemAvailable is absent (kernels before 3.14): estimated as MemFree + Buffers + Cached.
    pub available_estimated: bool,
    pub swap_total_kb: u64,
    pub swap_free_kb: u64,
}

impl MemInfo {
    /// `Key:   value kB` lines (proc(5)). `None` without MemTotal.
    pub fn parse(text: &str) -> Option<MemInfo> {
        let field = |name: &str| -> Option<u64> {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                if k.trim() != name {
                    return None;
                }
                v.split_whitespace().next()?.parse().ok()
            })
        };
        let mem_total_kb = field("MemTotal")?;
        let (mem_available_kb, available_estimated) = match field("MemAvailable") {
            Some(a) => (a, false),
            None => (
                field("MemFree")? + field("Buffers").unwrap_or(0) + field("Cached").unwrap_or(0),
                true,
            ),
        };
        Some(MemInfo {
            mem_total_kb,
            mem_available_kb,
            available_estimated,
            swap_total_kb: field("SwapTotal").unwrap_or(0),
            swap_free_kb: field("SwapFree").unwrap_or(0),
        })
    }

    pub fn available_percent(&self) -> f64 {
        if self.mem_total_kb == 0 {
            return 0.0;
        }
        self.mem_available_kb as f64 * 100.0 / self.mem_total_kb as f64
    }
}

/// One PSI line: share of wall time stalled, averaged over 10 s, 60 s and 300 s, in percent;
/// `total` is the stall time in microseconds since boot.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PsiLine {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    pub total_us: u64,
}

/// `some`: at least one task stalled on memory; `full`: all non-idle tasks stalled at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MemoryPsi {
    pub some: PsiLine,
    pub full: Option<PsiLine>,
}

impl MemoryPsi {
    /// `some avg10=0.00 avg60=0.00 avg300=0.00 total=0` / `full ...` (Documentation/accounting/psi.rst).
    pub fn parse(text: &str) -> Option<MemoryPsi> {
        let mut some = None;
        let mut full = None;
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let kind = words.next();
            let mut p = PsiLine {
                avg10: 0.0,
                avg60: 0.0,
                avg300: 0.0,
                total_us: 0,
            };
            let mut seen = 0;
            for w in words {
                let Some((k, v)) = w.split_once('=') else {
                    continue;
                };
                let ok = match k {
                    "avg10" => v.parse().map(|x| p.avg10 = x).is_ok(),
                    "avg60" => v.parse().map(|x| p.avg60 = x).is_ok(),
                    "avg300" => v.parse().map(|x| p.avg300 = x).is_ok(),
                    "total" => v.parse().map(|x| p.total_us = x).is_ok(),
                    _ => false,
                };
                seen += usize::from(ok);
            }
            if seen < 4 {
                continue;
            }
            match kind {
                Some("some") => some = Some(p),
                Some("full") => full = Some(p),
                _ => {}
            }
        }
        Some(MemoryPsi { some: some?, full })
    }
}

/// A reading that worked, does not apply to this host, or could not be taken.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Reading<T> {
    Read(T),
    NotApplicable { reason: String },
    Unknown { reason: String, fix: String },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryPressure {
    pub meminfo: Reading<MemInfo>,
    pub psi: Reading<MemoryPsi>,
}

/// When memory is a risk. Defaults: MemAvailable under 5% of MemTotal, or PSI `full` avg60
/// over 10% (all tasks stalled on memory a tenth of the last minute).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MemoryThresholds {
    pub min_available_percent: f64,
    pub max_psi_full_avg60: f64,
}

impl Default for MemoryThresholds {
    fn default() -> MemoryThresholds {
        MemoryThresholds {
            min_available_percent: 5.0,
            max_psi_full_avg60: 10.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "judgement", rename_all = "snake_case")]
pub enum MemoryJudgement {
    Ok,
    /// Each reason is a sentence for the report.
    Warn {
        reasons: Vec<String>,
    },
    Unknown {
        reason: String,
        fix: String,
    },
}

impl MemoryPressure {
    pub fn read() -> MemoryPressure {
        MemoryPressure::read_from(Path::new(MEMINFO), Path::new(PSI_MEMORY))
    }

    pub fn read_from(meminfo: &Path, psi: &Path) -> MemoryPressure {
        let meminfo = match why502_host::read_to_string_bounded(meminfo, MAX_PROC_BYTES) {
            Ok(text) => match MemInfo::parse(&text) {
                Some(m) => Reading::Read(m),
                None => Reading::Unknown {
                    reason: format!("{} has no MemTotal line", meminfo.display()),
                    fix: "check that /proc is mounted".to_string(),
                },
            },
            Err(e) => Reading::Unknown {
                reason: e.to_string(),
                fix: "check that /proc is mounted and readable".to_string(),
            },
        };
        let psi = match why502_host::read_to_string_bounded(psi, MAX_PROC_BYTES) {
            Ok(text) => match MemoryPsi::parse(&text) {
                Some(p) => Reading::Read(p),
                None => Reading::Unknown {
                    reason: format!("{}: unexpected format", psi.display()),
                    fix: "report this kernel's PSI format".to_string(),
                },
            },
            Err(e) => psi_unavailable(psi, &e),
        };
        MemoryPressure { meminfo, psi }
    }

    pub fn judge(&self, t: &MemoryThresholds) -> MemoryJudgement {
        let mut reasons = Vec::new();
        if let Reading::Read(m) = &self.meminfo {
            let pct = m.available_percent();
            if pct < t.min_available_percent {
                reasons.push(format!(
                    "only {:.1}% of memory available ({} MiB of {} MiB{}); swap {} MiB free of {} MiB",
                    pct,
                    m.mem_available_kb / 1024,
                    m.mem_total_kb / 1024,
                    if m.available_estimated { ", estimated" } else { "" },
                    m.swap_free_kb / 1024,
                    m.swap_total_kb / 1024,
                ));
            }
        }
        if let Reading::Read(p) = &self.psi {
            if let Some(full) = p.full.filter(|f| f.avg60 > t.max_psi_full_avg60) {
                reasons.push(format!(
                    "memory pressure: all tasks stalled on memory {:.2}% of the last minute (PSI full avg60)",
                    full.avg60
                ));
            }
        }
        if !reasons.is_empty() {
            return MemoryJudgement::Warn { reasons };
        }
        match &self.meminfo {
            Reading::Unknown { reason, fix } => MemoryJudgement::Unknown {
                reason: reason.clone(),
                fix: fix.clone(),
            },
            _ => MemoryJudgement::Ok,
        }
    }
}

fn psi_unavailable(path: &Path, e: &ReadError) -> Reading<MemoryPsi> {
    let raw = match e {
        ReadError::Io { source, .. } => source.raw_os_error(),
        _ => None,
    };
    if e.is_not_found() {
        Reading::NotApplicable {
            reason: format!(
                "{} absent: kernel without PSI (before 4.20 or CONFIG_PSI off)",
                path.display()
            ),
        }
    } else if raw == Some(nix::libc::EOPNOTSUPP) {
        Reading::NotApplicable {
            reason:
                "PSI disabled on this kernel (psi=0 or CONFIG_PSI_DEFAULT_DISABLED without psi=1)"
                    .to_string(),
        }
    } else {
        Reading::Unknown {
            reason: e.to_string(),
            fix: "run as root".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from this machine: /proc/meminfo and /proc/pressure/memory.
    const MEMINFO_REAL: &str = include_str!("../testdata/meminfo.txt");
    const PSI_REAL: &str = include_str!("../testdata/pressure-memory.txt");

    #[test]
    fn parses_real_meminfo() {
        let m = MemInfo::parse(MEMINFO_REAL).expect("meminfo");
        assert_eq!(m.mem_total_kb, 24_684_112);
        assert_eq!(m.mem_available_kb, 24_221_544);
        assert!(!m.available_estimated);
        assert_eq!(m.swap_total_kb, 0);
        assert_eq!(m.swap_free_kb, 0);
    }

    #[test]
    fn estimates_available_on_old_kernels() {
        // proc(5) format of a pre-3.14 kernel: no MemAvailable line.
        let m = MemInfo::parse("MemTotal:  1000 kB\nMemFree:  100 kB\nBuffers:  20 kB\nCached:  30 kB\nSwapCached: 0 kB\n")
            .expect("meminfo");
        assert_eq!(m.mem_available_kb, 150);
        assert!(m.available_estimated);
        assert_eq!(MemInfo::parse("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn parses_real_psi() {
        let p = MemoryPsi::parse(PSI_REAL).expect("psi");
        assert_eq!(p.some.avg60, 0.0);
        assert!(p.full.is_some());
        // Documented form with values.
        let p = MemoryPsi::parse("some avg10=0.22 avg60=17.51 avg300=3.05 total=12345678\nfull avg10=0.10 avg60=12.40 avg300=1.00 total=2345678\n").expect("psi");
        assert_eq!(p.some.avg60, 17.51);
        assert_eq!(p.full.expect("full").avg60, 12.40);
        assert_eq!(p.full.expect("full").total_us, 2_345_678);
        assert_eq!(MemoryPsi::parse("garbage"), None);
    }

    fn pressure(avail_kb: u64, full_avg60: f64) -> MemoryPressure {
        let line = |avg60| PsiLine {
            avg10: 0.0,
            avg60,
            avg300: 0.0,
            total_us: 0,
        };
        MemoryPressure {
            meminfo: Reading::Read(MemInfo {
                mem_total_kb: 1_000_000,
                mem_available_kb: avail_kb,
                available_estimated: false,
                swap_total_kb: 0,
                swap_free_kb: 0,
            }),
            psi: Reading::Read(MemoryPsi {
                some: line(full_avg60),
                full: Some(line(full_avg60)),
            }),
        }
    }

    #[test]
    fn judges_available_memory_and_psi() {
        let t = MemoryThresholds::default();
        assert_eq!(pressure(500_000, 0.0).judge(&t), MemoryJudgement::Ok);
        let MemoryJudgement::Warn { reasons } = pressure(40_000, 0.0).judge(&t) else {
            panic!("4% available must warn");
        };
        assert!(reasons[0].contains("4.0%"), "{reasons:?}");
        let MemoryJudgement::Warn { reasons } = pressure(500_000, 25.0).judge(&t) else {
            panic!("PSI full 25% must warn");
        };
        assert!(reasons[0].contains("PSI"), "{reasons:?}");
        let lax = MemoryThresholds {
            min_available_percent: 1.0,
            max_psi_full_avg60: 30.0,
        };
        assert_eq!(pressure(40_000, 25.0).judge(&lax), MemoryJudgement::Ok);
    }

    #[test]
    fn missing_psi_is_not_applicable_and_missing_meminfo_unknown() {
        let m = MemoryPressure::read_from(
            Path::new("/nonexistent/meminfo"),
            Path::new("/nonexistent/pressure/memory"),
        );
        assert!(matches!(m.psi, Reading::NotApplicable { .. }), "{m:?}");
        assert!(matches!(
            m.judge(&MemoryThresholds::default()),
            MemoryJudgement::Unknown { .. }
        ));
    }

    #[test]
    fn reads_this_host() {
        let m = MemoryPressure::read();
        assert!(matches!(m.meminfo, Reading::Read(_)), "{m:?}");
        // This kernel has PSI; any kernel either has it or says it does not apply.
        assert!(!matches!(m.psi, Reading::Unknown { .. }), "{m:?}");
    }
}
