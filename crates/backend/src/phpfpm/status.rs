//! php-fpm's status page (`pm.status_path`), in its `?json` and plain-text forms, and what it
//! says about the pool's capacity. The engine fetches it over FastCGI; this only parses and
//! judges.
//!
//! Two facts measured on php-fpm 8.2 shape the judgement: the worker that answers the status
//! request counts itself as active (an idle one-child pool reports active 1 of 1), and on
//! Linux the listen queue is measured for TCP listeners only (a unix-socket pool reports 0
//! while requests wait).

use serde::Serialize;

/// One status snapshot; a field the page did not carry is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FpmStatus {
    pub pool: Option<String>,
    /// `static`, `dynamic`, `ondemand`.
    pub process_manager: Option<String>,
    /// Seconds since the epoch (JSON gives it so; text gives `21/Nov/2026:14:02:51 +0000`).
    pub start_time: Option<i64>,
    pub start_since: Option<u64>,
    pub accepted_conn: Option<u64>,
    pub listen_queue: Option<u64>,
    pub max_listen_queue: Option<u64>,
    pub listen_queue_len: Option<u64>,
    pub idle_processes: Option<u64>,
    pub active_processes: Option<u64>,
    pub total_processes: Option<u64>,
    pub max_active_processes: Option<u64>,
    pub max_children_reached: Option<u64>,
    pub slow_requests: Option<u64>,
}

impl FpmStatus {
    fn set(&mut self, key: &str, value: &str) {
        let n = || value.trim().parse::<u64>().ok();
        match key.trim() {
            "pool" => self.pool = Some(value.trim().to_string()),
            "process manager" => self.process_manager = Some(value.trim().to_string()),
            "start time" => {
                self.start_time = value
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .or_else(|| parse_status_time(value.trim()))
            }
            "start since" => self.start_since = n(),
            "accepted conn" => self.accepted_conn = n(),
            "listen queue" => self.listen_queue = n(),
            "max listen queue" => self.max_listen_queue = n(),
            "listen queue len" => self.listen_queue_len = n(),
            "idle processes" => self.idle_processes = n(),
            "active processes" => self.active_processes = n(),
            "total processes" => self.total_processes = n(),
            "max active processes" => self.max_active_processes = n(),
            "max children reached" => self.max_children_reached = n(),
            "slow requests" => self.slow_requests = n(),
            _ => {}
        }
    }

    fn is_empty(&self) -> bool {
        *self == FpmStatus::default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StatusParseError {
    #[error("status page is not JSON: {0}")]
    Json(String),
    #[error("status page carries none of php-fpm's status fields")]
    NotStatus,
}

/// Parse the `?json` form. CGI headers before the body (`Content-Type: ...`) are skipped.
pub fn parse_fpm_status_json(text: &str) -> Result<FpmStatus, StatusParseError> {
    let body = text.find('{').map(|i| &text[i..]).unwrap_or(text);
    let value: serde_json::Value =
        serde_json::from_str(body.trim()).map_err(|e| StatusParseError::Json(e.to_string()))?;
    let obj = value.as_object().ok_or(StatusParseError::NotStatus)?;
    let mut st = FpmStatus::default();
    for (k, v) in obj {
        match v {
            serde_json::Value::String(s) => st.set(k, s),
            serde_json::Value::Number(n) => st.set(k, &n.to_string()),
            _ => {}
        }
    }
    if st.is_empty() {
        return Err(StatusParseError::NotStatus);
    }
    Ok(st)
}

/// Parse the plain-text form (`pool:                 www` lines).
pub fn parse_fpm_status_text(text: &str) -> Result<FpmStatus, StatusParseError> {
    let mut st = FpmStatus::default();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(':') {
            st.set(k, v);
        }
    }
    if st.is_empty() {
        return Err(StatusParseError::NotStatus);
    }
    Ok(st)
}

/// Either form, whichever the text is.
pub fn parse_fpm_status(text: &str) -> Result<FpmStatus, StatusParseError> {
    if text.contains("{\"") {
        parse_fpm_status_json(text)
    } else {
        parse_fpm_status_text(text)
    }
}

/// `21/Nov/2026:14:02:51 +0000`.
fn parse_status_time(s: &str) -> Option<i64> {
    let (stamp, zone) = s.split_once(' ')?;
    let (date, time) = stamp.split_once(':')?;
    let mut d = date.split('/');
    let day: u32 = d.next()?.parse().ok()?;
    let month = crate::logs::stamp::month_number(d.next()?)?;
    let year: i64 = d.next()?.parse().ok()?;
    let secs = crate::logs::stamp::hms(time)?;
    let offset = crate::logs::stamp::parse_offset(zone)?;
    Some(crate::logs::stamp::days_from_civil(year, month, day) * 86_400 + secs - offset)
}

/// How worried the status page makes us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusLevel {
    Ok,
    /// Exhaustion happened since the pool started, or all other workers are busy now.
    Risk,
    /// Requests are waiting in the listen queue now.
    Exhausted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusJudgement {
    pub level: StatusLevel,
    /// One sentence per finding, quoting the numbers.
    pub findings: Vec<String>,
}

/// Judge a snapshot: connections waiting now, or the pool having run out since it started.
pub fn judge_fpm_status(st: &FpmStatus) -> StatusJudgement {
    let mut level = StatusLevel::Ok;
    let mut findings = Vec::new();
    let name = st.pool.as_deref().unwrap_or("?");
    if let Some(q) = st.listen_queue.filter(|q| *q > 0) {
        level = StatusLevel::Exhausted;
        findings.push(format!(
            "pool {name}: {q} connection(s) waiting in the listen queue now (queue length {})",
            st.listen_queue_len
                .map_or("?".to_string(), |l| l.to_string())
        ));
    }
    if let Some(r) = st.max_children_reached.filter(|r| *r > 0) {
        level = level.max(StatusLevel::Risk);
        findings.push(format!(
            "pool {name}: max children reached {r} time(s) since the pool started{}",
            st.start_since
                .map_or(String::new(), |s| format!(" {s} s ago"))
        ));
    }
    if let Some(m) = st.max_listen_queue.filter(|m| *m > 0) {
        level = level.max(StatusLevel::Risk);
        findings.push(format!(
            "pool {name}: up to {m} connection(s) have waited in the listen queue since the pool started"
        ));
    }
    // Every worker active in one snapshot is not a finding: it is normal under load, and racy
    // (a worker that has just answered the agent's own direct request may still count as
    // active). Only connections waiting, or max children reached, say the pool ran out.
    StatusJudgement { level, findings }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_time_in_text_form() {
        // 1795269771 is what the JSON form of the same page carried.
        assert_eq!(
            parse_status_time("21/Nov/2026:14:02:51 +0000"),
            Some(1_795_269_771)
        );
        assert_eq!(
            parse_status_time("21/Nov/2026:15:02:51 +0100"),
            Some(1_795_269_771)
        );
    }
}
