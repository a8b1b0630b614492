//! `make-mirror [options] <destination>`: copies every key under
//! `--prefix` to the destination cluster, then follows the source's changes
//! (a watch from the copy's revision), writing each revision's changes in
//! one txn, as etcdctl's mirror does. Prints the number of keys mirrored so
//! far every 30 seconds; ends with "etcdserver: mvcc: required revision has
//! been compacted" if the source compacts past it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use clap::{ArgAction, Args};
use keel_client::{
    request_op, Client, DeleteRangeRequest, Options, PutRequest, RangeRequest, RequestOp,
    TxnRequest, WatchMessage, WatchOptions,
};

use crate::error::{CtlError, Result};
use crate::global::{go_bool, Ctx};
use crate::outln;

/// Makes a mirror at the destination etcd cluster
#[derive(Debug, Clone, Args)]
pub struct MirrorArgs {
    /// Key-value prefix to mirror
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// destination prefix to mirror a prefix to a different prefix in the destination cluster
    #[arg(long, default_value = "")]
    pub dest_prefix: String,
    /// mirror key-values to the root of the destination cluster
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub no_dest_prefix: bool,
    /// Verify certificates of TLS enabled secure servers using this CA bundle
    #[arg(long, default_value = "")]
    pub dest_cacert: String,
    /// Identify secure client using this TLS certificate file for the destination cluster
    #[arg(long, default_value = "")]
    pub dest_cert: String,
    /// Identify secure client using this TLS key file
    #[arg(long, default_value = "")]
    pub dest_key: String,
    /// Disable transport security for client connections
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "true", value_parser = go_bool)]
    pub dest_insecure_transport: bool,
    /// <destination>
    pub args: Vec<String>,
}

/// The destination key for a source key (the first occurrence of the
/// prefix replaced, as etcdctl's `strings.Replace(k, prefix, dest, 1)`).
pub fn dest_key(key: &[u8], prefix: &str, dest: &str) -> Vec<u8> {
    let k = String::from_utf8_lossy(key);
    if prefix.is_empty() {
        return format!("{dest}{k}").into_bytes();
    }
    k.replacen(prefix, dest, 1).into_bytes()
}

pub async fn run(ctx: &Ctx, a: MirrorArgs) -> Result<()> {
    if a.args.len() != 1 {
        return Err(CtlError::bad_args(
            "make-mirror takes one destination argument",
        ));
    }
    // The destination: its own TLS flags, no user (as etcdctl).
    let dest_tls = crate::global::tls_options(
        &a.dest_cacert,
        &a.dest_cert,
        &a.dest_key,
        a.dest_insecure_transport,
        false,
    )?;
    let dst = Client::new(
        [a.args[0].clone()],
        Options {
            dial_timeout: ctx.g.dial_timeout,
            tls: dest_tls,
            ..Options::default()
        },
    )?;
    let src = ctx.client()?;
    if a.no_dest_prefix && !a.dest_prefix.is_empty() {
        return Err(CtlError::bad_args(
            "`--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one",
        ));
    }
    let dest = if !a.no_dest_prefix && a.dest_prefix.is_empty() {
        a.prefix.clone()
    } else {
        a.dest_prefix.clone()
    };
    let total = Arc::new(AtomicI64::new(0));
    let t = total.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            outln!("{}", t.load(Ordering::Relaxed));
        }
    });
    mirror(&src, &dst, &a.prefix, &dest, &total).await
}

/// Copies the keys under `prefix`, then follows the changes, forever.
pub async fn mirror(
    src: &Client,
    dst: &Client,
    prefix: &str,
    dest: &str,
    total: &AtomicI64,
) -> Result<()> {
    let (key, range_end) = if prefix.is_empty() {
        (vec![0], vec![0])
    } else {
        (
            prefix.as_bytes().to_vec(),
            keel_client::prefix_end(prefix.as_bytes()),
        )
    };
    // The base: every key at one revision, in pages.
    let mut rev = 0;
    let mut from = key.clone();
    loop {
        let page = src
            .range(RangeRequest {
                key: from.clone(),
                range_end: range_end.clone(),
                revision: rev,
                limit: 1000,
                ..Default::default()
            })
            .await?;
        if rev == 0 {
            rev = page.header.map(|h| h.revision).unwrap_or(0);
        }
        for kv in &page.kvs {
            dst.put_request(PutRequest {
                key: dest_key(&kv.key, prefix, dest),
                value: kv.value.clone(),
                ..Default::default()
            })
            .await?;
            total.fetch_add(1, Ordering::Relaxed);
        }
        match (page.more, page.kvs.last()) {
            (true, Some(last)) => {
                from = last.key.clone();
                from.push(0);
            }
            _ => break,
        }
    }
    // The updates: one txn per source revision.
    let opts = WatchOptions {
        range_end,
        start_revision: rev + 1,
        ..Default::default()
    };
    let mut w = src.watch(key, opts).await?;
    while let Some(m) = w.next().await {
        let events = match m {
            WatchMessage::Events { events, .. } => events,
            WatchMessage::Progress { .. } => continue,
            WatchMessage::Compacted { .. } => {
                return Err(CtlError::error(
                    "etcdserver: mvcc: required revision has been compacted",
                ))
            }
            WatchMessage::Canceled { reason } => return Err(CtlError::error(reason)),
        };
        let mut ops = Vec::new();
        let mut last_rev = 0;
        for e in events {
            let kv = e.kv.unwrap_or_default();
            if last_rev != 0 && kv.mod_revision > last_rev {
                commit(dst, std::mem::take(&mut ops)).await?;
            }
            last_rev = kv.mod_revision;
            let k = dest_key(&kv.key, prefix, dest);
            ops.push(RequestOp {
                request: Some(if e.r#type == 1 {
                    request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                        key: k,
                        ..Default::default()
                    })
                } else {
                    request_op::Request::RequestPut(PutRequest {
                        key: k,
                        value: kv.value,
                        ..Default::default()
                    })
                }),
            });
            total.fetch_add(1, Ordering::Relaxed);
        }
        commit(dst, ops).await?;
    }
    Err(CtlError::error("watch ended"))
}

async fn commit(dst: &Client, ops: Vec<RequestOp>) -> Result<()> {
    if ops.is_empty() {
        return Ok(());
    }
    dst.txn(TxnRequest {
        success: ops,
        ..Default::default()
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_as_etcdctl() {
        assert_eq!(dest_key(b"/a/x", "/a/", "/b/"), b"/b/x".to_vec());
        assert_eq!(dest_key(b"/a/x", "/a/", ""), b"x".to_vec());
        assert_eq!(dest_key(b"k", "", ""), b"k".to_vec());
        assert_eq!(dest_key(b"k", "", "/m/"), b"/m/k".to_vec());
    }
}
