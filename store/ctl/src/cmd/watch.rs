//! `watch [options] [key or prefix] [range_end] [--] [exec-command arg1 ...]`
//! and `watch -i` (watch requests read from stdin, one a line): etcdctl's
//! watch command. Each response with events is printed in the output
//! format; with a command after `--`, the command runs once per event with
//! `ETCD_WATCH_REVISION`, `ETCD_WATCH_EVENT_TYPE`, `ETCD_WATCH_KEY` and
//! `ETCD_WATCH_VALUE` set. `ETCDCTL_WATCH_KEY` / `ETCDCTL_WATCH_RANGE_END`
//! give the key and range end instead of arguments.
//!
//! The watch is one gRPC stream on the first endpoint (with etcd's
//! `hasleader` requirement); when the server ends it, keelctl exits as
//! etcdctl does ("watch is canceled by the server", exit 5).

use std::io::BufRead;

use clap::{ArgAction, Args, Parser};
use keel_proto::etcdserverpb::watch_client::WatchClient;
use keel_proto::etcdserverpb::{watch_request, WatchCreateRequest, WatchRequest, WatchResponse};
use tokio_stream::wrappers::ReceiverStream;

use crate::error::{CtlError, ExitCode, Result};
use crate::global::{go_bool, go_i64, Ctx};
use crate::output::go::quote;
use crate::output::Printer;

/// Watches events stream on keys or prefixes
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Interactive mode
    #[arg(short = 'i', long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub interactive: bool,
    /// Watch on a prefix if prefix is set
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub prefix: bool,
    /// Revision to start watching
    #[arg(long, default_value = "0", value_parser = go_i64)]
    pub rev: i64,
    /// get the previous key-value pair before the event happens
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub prev_kv: bool,
    /// [key or prefix] [range_end]
    pub args: Vec<String>,
    /// [exec-command arg1 arg2 ...] after `--`
    #[arg(last = true)]
    pub exec: Vec<String>,
}

#[derive(Parser)]
#[command(no_binary_name = true)]
struct Line {
    #[command(flatten)]
    a: WatchArgs,
}

/// The create request for `args` (etcdctl's getWatchChan).
pub fn request(a: &WatchArgs, args: &[String]) -> Result<WatchCreateRequest> {
    if args.is_empty() || args.len() > 2 {
        return Err(CtlError::bad_args("bad number of arguments"));
    }
    let key = args[0].clone().into_bytes();
    let mut req = WatchCreateRequest {
        start_revision: a.rev,
        prev_kv: a.prev_kv,
        ..Default::default()
    };
    if args.len() == 2 {
        if a.prefix {
            return Err(CtlError::bad_args(
                "`range_end` and `--prefix` are mutually exclusive",
            ));
        }
        req.range_end = args[1].clone().into_bytes();
    }
    if a.prefix {
        req.range_end = if key.is_empty() {
            vec![0]
        } else {
            keel_client::prefix_end(&key)
        };
    }
    req.key = if key.is_empty() && a.prefix {
        vec![0]
    } else {
        key
    };
    Ok(req)
}

/// The watch key arguments, from the command line or the environment.
fn watch_args(a: &WatchArgs, env_key: &str, env_range: &str) -> Result<Vec<String>> {
    if !env_key.is_empty() {
        if !a.args.is_empty() {
            return Err(CtlError::bad_args(
                "bad number of arguments (conflicts with environment variables)",
            ));
        }
        let mut v = vec![env_key.to_string()];
        if !env_range.is_empty() {
            v.push(env_range.to_string());
        }
        return Ok(v);
    }
    Ok(a.args.clone())
}

pub async fn run(ctx: &Ctx, a: WatchArgs) -> Result<()> {
    let env_key = std::env::var("ETCDCTL_WATCH_KEY").unwrap_or_default();
    let env_range = std::env::var("ETCDCTL_WATCH_RANGE_END").unwrap_or_default();
    if env_key.is_empty() && !env_range.is_empty() {
        return Err(CtlError::bad_args(format!(
            "ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={}",
            quote(env_range.as_bytes())
        )));
    }
    if a.interactive {
        return interactive(ctx, &env_key, &env_range).await;
    }
    let separator = std::env::args().any(|x| x == "--");
    if separator && a.exec.is_empty() {
        return Err(CtlError::bad_args(
            "bad number of arguments (found separator --, but no commands)",
        ));
    }
    let args = watch_args(&a, &env_key, &env_range)?;
    let c = ctx.client()?;
    let p = ctx.printer()?;
    let req = request(&a, &args)?;
    watch(c, p, req, a.exec).await?;
    Err(CtlError::new(
        ExitCode::Interrupted,
        "watch is canceled by the server",
    ))
}

async fn interactive(ctx: &Ctx, env_key: &str, env_range: &str) -> Result<()> {
    let c = ctx.client()?;
    let p = ctx.printer()?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<String>>(16);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut lock = stdin.lock();
        loop {
            let mut line = String::new();
            let r = lock.read_line(&mut line);
            let end = matches!(r, Ok(0)) || r.is_err();
            let item = match r {
                Ok(0) => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "EOF",
                )),
                Ok(_) => Ok(line),
                Err(e) => Err(e),
            };
            if tx.blocking_send(item).is_err() || end {
                return;
            }
        }
    });
    while let Some(line) = rx.recv().await {
        let line = line.map_err(|e| {
            CtlError::new(
                ExitCode::InvalidInput,
                format!("Error reading watch request line: {e}"),
            )
        })?;
        let l = line.strip_suffix('\n').unwrap_or(&line).to_string();
        let args = super::txn::argify(&l)?;
        if args.len() < 2 && env_key.is_empty() {
            eprintln!("Invalid command {l} (command type or key is not provided)");
            continue;
        }
        if args.first().map(String::as_str) != Some("watch") {
            eprintln!("Invalid command {l} (only support watch)");
            continue;
        }
        let parsed = match Line::try_parse_from(&args[1..]) {
            Ok(x) => x.a,
            Err(e) => {
                eprintln!("Invalid command {l} ({})", e.kind());
                continue;
            }
        };
        let wargs = watch_args(&parsed, env_key, env_range)?;
        let req = match request(&parsed, &wargs) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("Invalid command {l} ({})", e.msg);
                continue;
            }
        };
        let (c, exec) = (c.clone(), parsed.exec.clone());
        tokio::spawn(async move {
            let _ = watch(c, p, req, exec).await;
        });
    }
    Ok(())
}

/// Runs one watch until the server ends it, printing each response.
async fn watch(
    c: keel_client::Client,
    p: Printer,
    req: WatchCreateRequest,
    exec: Vec<String>,
) -> Result<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let _ = tx
        .send(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(req)),
        })
        .await;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    request.metadata_mut().insert(
        "hasleader",
        tonic::metadata::MetadataValue::from_static("true"),
    );
    let mut stream = WatchClient::new(c.channel().await?)
        .max_decoding_message_size(usize::MAX)
        .watch(request)
        .await?
        .into_inner();
    // Fragments of one response, joined before printing.
    let mut pending: Option<WatchResponse> = None;
    while let Some(mut resp) = stream.message().await? {
        if let Some(mut acc) = pending.take() {
            acc.events.append(&mut resp.events);
            acc.fragment = resp.fragment;
            resp = acc;
        }
        if resp.fragment {
            pending = Some(resp);
            continue;
        }
        if resp.created && resp.events.is_empty() && !resp.canceled {
            continue;
        }
        if resp.events.is_empty() && !resp.canceled && resp.compact_revision == 0 {
            // A progress notification: etcdctl prints it like any response.
            p.watch(&resp)?;
            continue;
        }
        if resp.canceled || resp.compact_revision != 0 {
            let why = if resp.compact_revision != 0 {
                "etcdserver: mvcc: required revision has been compacted".to_string()
            } else if !resp.cancel_reason.is_empty() {
                resp.cancel_reason.clone()
            } else {
                "etcdserver: mvcc: required revision is a future revision".to_string()
            };
            eprintln!("watch was canceled ({why})");
            resp.canceled = true;
            p.watch(&resp)?;
            drop(tx);
            return Ok(());
        }
        p.watch(&resp)?;
        if !exec.is_empty() {
            run_exec(&exec, &resp)?;
        }
    }
    drop(tx);
    Ok(())
}

fn run_exec(exec: &[String], resp: &WatchResponse) -> Result<()> {
    let rev = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
    for ev in &resp.events {
        let kv = ev.kv.clone().unwrap_or_default();
        let status = std::process::Command::new(&exec[0])
            .args(&exec[1..])
            .env("ETCD_WATCH_REVISION", rev.to_string())
            .env(
                "ETCD_WATCH_EVENT_TYPE",
                quote(crate::output::simple::event_type(ev.r#type).as_bytes()),
            )
            .env("ETCD_WATCH_KEY", quote(&kv.key))
            .env("ETCD_WATCH_VALUE", quote(&kv.value))
            .status();
        let failed = match status {
            Ok(s) if s.success() => None,
            Ok(s) => Some(format!("{s}")),
            Err(e) => Some(e.to_string()),
        };
        if let Some(e) = failed {
            let q: Vec<String> = exec.iter().map(|x| quote(x.as_bytes())).collect();
            return Err(CtlError::raw(
                ExitCode::Error,
                format!("command [{}] error ({e})", q.join(" ")),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &[&str]) -> WatchArgs {
        Line::try_parse_from(s).unwrap().a
    }

    #[test]
    fn parses_as_etcdctl() {
        let a = parse(&["foo", "--prefix", "--rev=3", "--prev-kv"]);
        let r = request(&a, &a.args).unwrap();
        assert_eq!((r.key, r.range_end), (b"foo".to_vec(), b"fop".to_vec()));
        assert_eq!((r.start_revision, r.prev_kv), (3, true));
        let a = parse(&["a", "b", "--", "echo", "hi"]);
        assert_eq!(a.exec, vec!["echo", "hi"]);
        assert_eq!(request(&a, &a.args).unwrap().range_end, b"b".to_vec());
        let a = parse(&["a", "b", "--prefix"]);
        assert_eq!(
            request(&a, &a.args).unwrap_err().msg,
            "`range_end` and `--prefix` are mutually exclusive"
        );
        let a = parse(&[]);
        assert_eq!(
            request(&a, &a.args).unwrap_err().msg,
            "bad number of arguments"
        );
        assert_eq!(watch_args(&a, "k", "z").unwrap(), vec!["k", "z"]);
        let a = parse(&["x"]);
        assert!(watch_args(&a, "k", "").is_err());
    }
}
