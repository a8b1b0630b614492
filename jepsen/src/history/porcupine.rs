//! Readers for the two history formats of Porcupine's test data.
//!
//! - Jepsen logs (`jepsen/etcd_NNN.log`): `INFO  jepsen.util - PROCESS TYPE F VALUE`,
//!   fields separated by tabs or spaces, VALUE in EDN (`nil`, `3`, `[3 0]`,
//!   `:timed-out`). Nemesis lines (`:nemesis` process) are skipped.
//! - EDN maps (`kv/cNN-*.txt`): one `{:process P, :type T, :f F, :key K, :value V}`
//!   a line.
//!
//! Both carry no clock: an event's time is its line number, which keeps real-time
//! order. Blank lines are skipped; any other line that does not fit is an error.

use serde_json::Value;

use super::{edn, Event, EventType, ProcessId};
use crate::{Error, Result};

const JEPSEN_PREFIX: &str = "jepsen.util - ";

/// Parses Jepsen's log lines into events.
pub fn parse_jepsen_log(lines: &[&str]) -> Result<Vec<Event>> {
    let mut events = Vec::with_capacity(lines.len());
    for (i, text) in lines.iter().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        let line = i + 1;
        let bad = |reason: &str| Error::input(line, text, reason);
        let Some(at) = text.find(JEPSEN_PREFIX) else {
            return Err(bad("expected `jepsen.util - PROCESS TYPE F VALUE`"));
        };
        let rest = &text[at + JEPSEN_PREFIX.len()..];
        let (process, rest) = split_token(rest);
        if process == ":nemesis" {
            continue;
        }
        let (kind, rest) = split_token(rest);
        let (f, rest) = split_token(rest);
        if f.is_empty() {
            return Err(bad("expected `PROCESS TYPE F VALUE`"));
        }
        let value = if rest.trim().is_empty() {
            Value::Null
        } else {
            edn::parse(rest).map_err(|e| bad(&format!("bad value: {e}")))?
        };
        events.push(Event {
            process: parse_process(process).ok_or_else(|| bad("bad process id"))?,
            kind: parse_type(kind).ok_or_else(|| bad("bad event type"))?,
            f: f.trim_start_matches(':').to_string(),
            key: None,
            value,
            time: line as u64,
            line,
        });
    }
    Ok(events)
}

/// Parses lines of EDN maps into events.
pub fn parse_edn_lines(lines: &[&str]) -> Result<Vec<Event>> {
    let mut events = Vec::with_capacity(lines.len());
    for (i, text) in lines.iter().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        let line = i + 1;
        let bad = |reason: &str| Error::input(line, text, reason);
        let Value::Object(mut map) = edn::parse(text).map_err(|e| bad(&e))? else {
            return Err(bad("expected a map"));
        };
        let field = |name: &str| -> Option<&str> { map.get(name).and_then(Value::as_str) };
        let process = match map.get("process") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) if s == "nemesis" => continue,
            _ => None,
        }
        .ok_or_else(|| bad("missing or bad :process"))?;
        let kind = field("type")
            .and_then(parse_type_name)
            .ok_or_else(|| bad("missing or bad :type"))?;
        let f = field("f").ok_or_else(|| bad("missing :f"))?.to_string();
        let key = match map.get("key") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        events.push(Event {
            process,
            kind,
            f,
            key,
            value: map.remove("value").unwrap_or(Value::Null),
            time: line as u64,
            line,
        });
    }
    Ok(events)
}

/// Splits off the first whitespace-separated token.
fn split_token(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    (&s[..end], &s[end..])
}

fn parse_process(s: &str) -> Option<ProcessId> {
    s.parse().ok()
}

fn parse_type(s: &str) -> Option<EventType> {
    parse_type_name(s.strip_prefix(':')?)
}

fn parse_type_name(s: &str) -> Option<EventType> {
    Some(match s {
        "invoke" => EventType::Invoke,
        "ok" => EventType::Ok,
        "fail" => EventType::Fail,
        "info" => EventType::Info,
        _ => return None,
    })
}
