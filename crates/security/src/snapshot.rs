//! Everything the security step needs, read once per run and shared by every upstream's walk.

use std::time::SystemTime;

use serde::Serialize;
use why502_host::TailLimits;

use crate::apparmor::{AppArmorState, AppArmorStatus, NginxConfinement};
use crate::judge::{judge_apparmor, judge_selinux, SecurityJudgement};
use crate::logs::{default_limits, LogSources, LsmLogs};
use crate::paths::SecurityPaths;
use crate::selinux::{SelinuxState, SelinuxStatus};
use crate::target::{Destination, NginxSubject};

#[derive(Debug, Clone, Serialize)]
pub struct SecuritySnapshot {
    pub since: SystemTime,
    pub subject: NginxSubject,
    pub selinux: SelinuxState,
    pub apparmor: AppArmorState,
    pub sources: LogSources,
}

impl SecuritySnapshot {
    /// Read SELinux's and AppArmor's state and the window `since..` of their logs.
    /// `nginx_pids`: master and workers. `kernel_lines`: the kernel log's lines the engine
    /// read (time, text), `None` if it could not read them.
    pub fn gather(
        paths: &SecurityPaths,
        since: SystemTime,
        nginx_pids: &[u32],
        kernel_lines: Option<&[(SystemTime, String)]>,
    ) -> SecuritySnapshot {
        Self::gather_with(paths, since, nginx_pids, kernel_lines, default_limits())
    }

    pub fn gather_with(
        paths: &SecurityPaths,
        since: SystemTime,
        nginx_pids: &[u32],
        kernel_lines: Option<&[(SystemTime, String)]>,
        limits: TailLimits,
    ) -> SecuritySnapshot {
        let mut selinux = SelinuxState::read(paths, nginx_pids);
        let mut apparmor = AppArmorState::read(paths, nginx_pids);
        let selinux_off = matches!(selinux.status, SelinuxStatus::NotEnabled { .. });
        // Only a process label proves nginx unconfined; a profile list without an nginx
        // profile does not rule out one attached by another name.
        let apparmor_off = match &apparmor.status {
            AppArmorStatus::NotEnabled { .. } => true,
            AppArmorStatus::Enabled => {
                matches!(apparmor.confinement(), NginxConfinement::Unconfined { .. })
                    && apparmor.nginx.iter().any(|p| p.label.is_ok())
            }
            AppArmorStatus::Unknown { .. } => false,
        };
        let sources = if selinux_off && apparmor_off {
            LogSources::not_needed("no LSM confines nginx")
        } else {
            let logs = LsmLogs::read(paths, since, kernel_lines, limits);
            selinux.denials = logs.avc;
            apparmor.events = logs.apparmor;
            logs.sources
        };
        SecuritySnapshot {
            since,
            subject: NginxSubject::new(nginx_pids),
            selinux,
            apparmor,
            sources,
        }
    }

    /// SELinux's and AppArmor's verdicts on nginx reaching `dest`, combined: a break from
    /// either, else unknown, else a warning, else clear with what was checked.
    pub fn judge(&self, dest: &Destination) -> SecurityJudgement {
        self.judge_selinux(dest).combine(self.judge_apparmor(dest))
    }

    pub fn judge_selinux(&self, dest: &Destination) -> SecurityJudgement {
        judge_selinux(
            &self.selinux,
            &self.sources.selinux_coverage(),
            &self.subject,
            dest,
        )
    }

    pub fn judge_apparmor(&self, dest: &Destination) -> SecurityJudgement {
        judge_apparmor(
            &self.apparmor,
            &self.sources.apparmor_coverage(),
            &self.subject,
            dest,
        )
    }
}
