//! `GET /events?since=S&until=U&filters=...`: the engine's record of what happened to a
//! container (`start`, `die` with its `exitCode`, `oom`, `kill`, `stop`). With `until` in the
//! past or now, the engine sends the stored events and ends the answer. A container that is
//! restarting in a loop shows `running` with exit code 0 between two crashes; its `die`
//! events still carry the codes it exited with.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::api::{EngineClient, EngineError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub at: SystemTime,
    /// `start`, `die`, `oom`, `kill`, `stop`, `restart`.
    pub action: String,
    /// A `die` event's exit code.
    pub exit_code: Option<i64>,
}

/// The events of container `id` between `since` and `until` (epoch seconds), oldest first.
pub async fn container_events(
    client: &EngineClient,
    id: &str,
    since: i64,
    until: i64,
) -> Result<Vec<ContainerEvent>, EngineError> {
    let filters = format!(
        r#"{{"type":["container"],"container":["{id}"],"event":["start","die","oom","kill","stop"]}}"#
    );
    let body = client
        .get(&format!(
            "/events?since={since}&until={until}&filters={}",
            query_escape(&filters)
        ))
        .await?;
    Ok(parse_events(&body))
}

/// The engine writes one JSON object per event, one after the other.
pub fn parse_events(body: &[u8]) -> Vec<ContainerEvent> {
    let mut out: Vec<ContainerEvent> = serde_json::Deserializer::from_slice(body)
        .into_iter::<Value>()
        .map_while(Result::ok)
        .filter_map(|v| {
            let action = v
                .get("Action")
                .or_else(|| v.get("status"))?
                .as_str()?
                .to_string();
            let at = v
                .get("timeNano")
                .and_then(Value::as_u64)
                .map(|n| SystemTime::UNIX_EPOCH + Duration::from_nanos(n))
                .or_else(|| {
                    v.get("time")
                        .and_then(Value::as_u64)
                        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
                })?;
            let exit_code = v
                .get("Actor")
                .and_then(|a| a.get("Attributes"))
                .and_then(|a| a.get("exitCode"))
                .and_then(Value::as_str)
                .and_then(|c| c.parse().ok());
            Some(ContainerEvent {
                at,
                action,
                exit_code,
            })
        })
        .collect();
    out.sort_by_key(|e| e.at);
    out
}

/// Percent-encodes a query value (the `filters` JSON).
pub fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 2);
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_events_of_a_container_restarting_in_a_loop() {
        let body = include_bytes!("../tests/fixtures/events-loop.json");
        let events = parse_events(body);
        let dies: Vec<&ContainerEvent> = events.iter().filter(|e| e.action == "die").collect();
        assert!(dies.len() >= 3, "{events:?}");
        assert!(dies.iter().all(|e| e.exit_code == Some(3)), "{dies:?}");
        assert!(events.iter().any(|e| e.action == "start"));
        assert!(events.windows(2).all(|w| w[0].at <= w[1].at));
    }

    #[test]
    fn an_oom_and_a_cut_stream() {
        let body = br#"{"status":"oom","id":"x","Type":"container","Action":"oom","Actor":{"ID":"x","Attributes":{}},"time":1796186155,"timeNano":1796186155700000000}
{"status":"die","id":"x","Type":"container","Action":"die","Actor":{"ID":"x","Attributes":{"exitCode":"137"}},"time":1796186155,"timeNano":1796186155750000000}
{"status":"die","id":"x","Acti"#;
        let events = parse_events(body);
        assert_eq!(events.len(), 2);
        assert_eq!(
            (events[0].action.as_str(), events[1].exit_code),
            ("oom", Some(137))
        );
    }

    #[test]
    fn filters_are_escaped() {
        assert_eq!(
            query_escape(r#"{"a":["b"]}"#),
            "%7B%22a%22%3A%5B%22b%22%5D%7D"
        );
    }
}
