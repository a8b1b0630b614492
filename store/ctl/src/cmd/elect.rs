//! `elect <election-name> [proposal]` and `elect -l <election-name>`:
//! campaigns (clientv3's Election, see [`super::session`]) and prints the
//! leader key once elected, resigning when interrupted; or observes the
//! election and prints each leader.

use clap::{ArgAction, Args};
use keel_client::{RangeRequest, RangeResponse, WatchMessage, WatchOptions};

use super::session::{self, Session};
use crate::error::{CtlError, Result};
use crate::global::{go_bool, Ctx};
use crate::output::Printer;

/// Observes and participates in leader election
#[derive(Debug, Clone, Args)]
pub struct ElectArgs {
    /// observation mode
    #[arg(short = 'l', long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub listen: bool,
    /// <election-name> [proposal]
    pub args: Vec<String>,
}

pub async fn run(ctx: &Ctx, a: ElectArgs) -> Result<()> {
    if a.args.len() != 1 && a.args.len() != 2 {
        return Err(CtlError::bad_args(
            "elect takes one election name argument and an optional proposal argument",
        ));
    }
    let c = ctx.client()?;
    let p = ctx.printer()?;
    if a.args.len() == 1 {
        if !a.listen {
            return Err(CtlError::bad_args("no proposal argument but -l not set"));
        }
        let _s = Session::new(&c, 60).await?;
        let pfx = format!("{}/", a.args[0]);
        tokio::select! {
            r = observe(&c, &p, &pfx) => {
                r?;
                Err(CtlError::error("elect: observer lost"))
            }
            _ = session::interrupted() => Ok(()),
        }
    } else {
        if a.listen {
            return Err(CtlError::bad_args("proposal given but -l is set"));
        }
        campaign(&c, &p, &a.args[0], &a.args[1]).await
    }
}

async fn campaign(c: &keel_client::Client, p: &Printer, name: &str, val: &str) -> Result<()> {
    let mut s = Session::new(c, 60).await?;
    let pfx = format!("{name}/");
    let key = s.key(&pfx);
    let resp = session::create_key(&s, &key, val.as_bytes(), None).await?;
    let mut rev = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
    if !resp.succeeded {
        if let Some(kv) = session::range_of(&resp, 0).kvs.first() {
            rev = kv.create_revision;
            if kv.value != val.as_bytes() {
                c.put_request(keel_client::PutRequest {
                    key: key.clone(),
                    value: val.as_bytes().to_vec(),
                    lease: s.lease,
                    ..Default::default()
                })
                .await?;
            }
        }
    }
    tokio::select! {
        r = session::wait_deletes(c, &pfx, rev - 1) => r?,
        _ = session::interrupted() => {
            let _ = session::delete(c, &key).await;
            return Err(CtlError::error("context canceled"));
        }
    }
    let got = c
        .range(RangeRequest {
            key: key.clone(),
            ..Default::default()
        })
        .await?;
    p.get(&got)?;
    tokio::select! {
        _ = session::interrupted() => session::delete(c, &key).await,
        _ = s.done() => Err(CtlError::error("elect: session expired")),
    }
}

/// Prints the leader, then each change of it, until the watch fails.
async fn observe(c: &keel_client::Client, p: &Printer, pfx: &str) -> Result<()> {
    loop {
        let first = c.range(session::top(pfx, true)).await?;
        let header = first.header.unwrap_or_default();
        let (kv, rev) = match first.kvs.first() {
            Some(kv) => (kv.clone(), header.revision),
            None => {
                let mut w = c
                    .watch(
                        pfx.as_bytes().to_vec(),
                        WatchOptions::prefix(pfx.as_bytes()).from_revision(header.revision),
                    )
                    .await?;
                let mut found = None;
                while found.is_none() {
                    match w.next().await {
                        Some(WatchMessage::Events { events, .. }) => {
                            found = events
                                .into_iter()
                                .find(|e| e.r#type == 0)
                                .and_then(|e| e.kv)
                                .map(|kv| {
                                    let r = kv.mod_revision;
                                    (kv, r)
                                });
                        }
                        Some(WatchMessage::Progress { .. }) => {}
                        _ => return Ok(()),
                    }
                }
                found.expect("set above")
            }
        };
        let mut h = header;
        h.revision = rev;
        p.get(&RangeResponse {
            header: Some(h),
            kvs: vec![kv.clone()],
            ..Default::default()
        })?;
        let mut w = c
            .watch(
                kv.key.clone(),
                WatchOptions::default().from_revision(rev + 1),
            )
            .await?;
        'key: loop {
            match w.next().await {
                Some(WatchMessage::Events {
                    header_revision,
                    events,
                }) => {
                    for e in events {
                        if e.r#type == 1 {
                            break 'key;
                        }
                        let mut h = h;
                        h.revision = header_revision;
                        p.get(&RangeResponse {
                            header: Some(h),
                            kvs: e.kv.into_iter().collect(),
                            ..Default::default()
                        })?;
                    }
                }
                Some(WatchMessage::Progress { .. }) => {}
                _ => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: ElectArgs,
    }

    #[test]
    fn parses_as_etcdctl() {
        let t = T::try_parse_from(["elect", "e", "p"]).unwrap();
        assert_eq!((t.a.args.len(), t.a.listen), (2, false));
        let t = T::try_parse_from(["elect", "-l", "e"]).unwrap();
        assert!(t.a.listen);
        let t = T::try_parse_from(["elect", "--listen=false", "e"]).unwrap();
        assert!(!t.a.listen);
    }
}
