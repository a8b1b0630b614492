//! `inspect history KEY [--prefix]`: every revision of a key still in
//! history, newest first, with the compaction point.
//!
//! Works on keel and on etcd alike through the watch API: a watch from
//! revision 1 tells the compaction point (the server cancels it with the
//! compact revision), a watch from there replays every event still in
//! history, and progress requests tell when it has caught up with the
//! revision read at the start (on etcd 3.4, which answers those at once,
//! with a second of quiet after the answer).

use std::time::Duration;

use clap::{ArgAction, Args};
use keel_client::{Event, RangeRequest, WatchMessage, WatchOptions};
use serde_json::json;

use super::{print_table, Style};
use crate::error::{CtlError, Result};
use crate::global::{go_bool, Ctx};

/// inspect history KEY [--prefix]
#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// Every key with KEY as a prefix
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub prefix: bool,
    /// KEY
    #[arg(id = "history_key", value_name = "KEY")]
    pub key: String,
}

/// What the history walk found.
pub struct History {
    pub current_revision: i64,
    pub compact_revision: i64,
    /// Newest first.
    pub events: Vec<Event>,
}

/// Replays the history of `key` (and `range_end`) up to the current revision.
pub async fn history(c: &keel_client::Client, key: &[u8], range_end: &[u8]) -> Result<History> {
    let now = c
        .range(RangeRequest {
            key: key.to_vec(),
            range_end: range_end.to_vec(),
            count_only: true,
            ..Default::default()
        })
        .await?;
    let current = now.header.map(|h| h.revision).unwrap_or(0);
    let mut from = 1;
    let mut compact = 0;
    let mut events = Vec::new();
    'watch: loop {
        let opts = WatchOptions {
            range_end: range_end.to_vec(),
            start_revision: from,
            ..Default::default()
        };
        let mut w = c.watch(key.to_vec(), opts).await?;
        if current < from {
            break;
        }
        // Progress: keel answers a progress request once the watcher has
        // caught up; etcd 3.4 answers at once, before the replayed events.
        // So after a progress at the current revision, the watch is over
        // when it has been quiet for a second (or an event at the current
        // revision came).
        let mut progressed = false;
        loop {
            if !progressed {
                w.request_progress().await;
            }
            let wait = if progressed { 1000 } else { 200 };
            let msg = tokio::time::timeout(Duration::from_millis(wait), w.next()).await;
            let Ok(msg) = msg else {
                if progressed {
                    break 'watch;
                }
                continue;
            };
            match msg {
                Some(WatchMessage::Events { events: evs, .. }) => {
                    let mut done = false;
                    for e in evs {
                        let rev = e.kv.as_ref().map(|k| k.mod_revision).unwrap_or(0);
                        if rev > current {
                            done = true;
                            break;
                        }
                        events.push(e);
                        done |= rev == current;
                    }
                    if done {
                        break 'watch;
                    }
                }
                Some(WatchMessage::Progress { revision }) if revision >= current => {
                    progressed = true
                }
                Some(WatchMessage::Progress { .. }) => {}
                Some(WatchMessage::Compacted { compact_revision }) => {
                    compact = compact_revision;
                    from = compact_revision;
                    events.clear();
                    continue 'watch;
                }
                Some(WatchMessage::Canceled { reason }) => {
                    return Err(CtlError::error(format!("watch canceled: {reason}")))
                }
                None => return Err(CtlError::error("watch ended")),
            }
        }
    }
    events.reverse();
    Ok(History {
        current_revision: current,
        compact_revision: compact,
        events,
    })
}

fn show(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s.into_owned()
    }
}

pub async fn run(ctx: &Ctx, a: HistoryArgs) -> Result<()> {
    let style = super::style(ctx)?;
    let c = ctx.client()?;
    let key = a.key.as_bytes().to_vec();
    let range_end = if a.prefix {
        keel_client::prefix_end(&key)
    } else {
        Vec::new()
    };
    let h = ctx
        .timed(async {
            history(&c, &key, &range_end)
                .await
                .map_err(|e| keel_client::Error::Status(tonic::Status::unknown(e.msg)))
        })
        .await?;
    let kind = |e: &Event| if e.r#type == 1 { "DELETE" } else { "PUT" };
    match style {
        Style::Json => {
            let evs: Vec<_> = h
                .events
                .iter()
                .map(|e| {
                    let kv = e.kv.clone().unwrap_or_default();
                    json!({
                        "key": String::from_utf8_lossy(&kv.key), "event": kind(e),
                        "mod_revision": kv.mod_revision, "create_revision": kv.create_revision,
                        "version": kv.version, "lease": format!("{:x}", kv.lease),
                        "value": String::from_utf8_lossy(&kv.value),
                    })
                })
                .collect();
            crate::outln!(
                "{}",
                json!({
                    "key": a.key, "prefix": a.prefix, "current_revision": h.current_revision,
                    "compact_revision": h.compact_revision, "events": evs,
                })
            );
        }
        Style::Table => {
            let hdr = [
                "Key",
                "Revision",
                "Event",
                "Create Rev",
                "Version",
                "Lease",
                "Value",
            ];
            let rows: Vec<Vec<String>> = h
                .events
                .iter()
                .map(|e| {
                    let kv = e.kv.clone().unwrap_or_default();
                    vec![
                        show(&kv.key),
                        kv.mod_revision.to_string(),
                        kind(e).to_string(),
                        if e.r#type == 1 {
                            String::new()
                        } else {
                            kv.create_revision.to_string()
                        },
                        if e.r#type == 1 {
                            String::new()
                        } else {
                            kv.version.to_string()
                        },
                        if kv.lease == 0 {
                            String::new()
                        } else {
                            format!("{:x}", kv.lease)
                        },
                        show(&kv.value),
                    ]
                })
                .collect();
            print_table(
                &format!(
                    "History of {}{} (newest first; current revision {})",
                    a.key,
                    if a.prefix { "*" } else { "" },
                    h.current_revision
                ),
                &hdr,
                &rows,
            );
            if h.compact_revision > 0 {
                crate::outln!(
                    "compacted at revision {}: older revisions are gone",
                    h.compact_revision
                );
            } else {
                crate::outln!("never compacted: the whole history is shown");
            }
        }
    }
    Ok(())
}
