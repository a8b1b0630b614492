//! `lease grant|revoke|timetolive|list|keep-alive`: etcdctl's lease
//! commands. Lease IDs are read and printed in hexadecimal.

use clap::{ArgAction, Args, Subcommand};
use keel_proto::etcdserverpb::lease_client::LeaseClient;
use keel_proto::etcdserverpb::LeaseKeepAliveRequest;

use crate::error::{CtlError, ExitCode, Result};
use crate::global::{go_bool, parse_int, Ctx};
use crate::outln;
use crate::output::Format;

/// Lease related commands
#[derive(Debug, Clone, Args)]
pub struct LeaseArgs {
    #[command(subcommand)]
    pub cmd: LeaseCmd,
}

#[derive(Debug, Clone, Subcommand)]
pub enum LeaseCmd {
    /// Creates leases
    Grant {
        /// <ttl>
        args: Vec<String>,
    },
    /// Revokes leases
    Revoke {
        /// <leaseID>
        args: Vec<String>,
    },
    /// Get lease information
    Timetolive {
        /// Get keys attached to this lease
        #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "false", value_parser = go_bool)]
        keys: bool,
        /// <leaseID>
        args: Vec<String>,
    },
    /// List all active leases
    List,
    /// Keeps leases alive (renew)
    #[command(name = "keep-alive")]
    KeepAlive {
        /// Resets the keep-alive time to its original value and exits immediately
        #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "false", value_parser = go_bool)]
        once: bool,
        /// <leaseID>
        args: Vec<String>,
    },
}

/// A lease ID argument (hex), or `msg` when it is missing.
fn lease_id(args: &[String], missing: &str, bad: &str) -> Result<i64> {
    if args.len() != 1 {
        return Err(CtlError::bad_args(missing));
    }
    parse_int(&args[0], 16)
        .map_err(|e| CtlError::bad_args(format!("{bad} ({e}), expecting ID in Hex")))
}

pub async fn run(ctx: &Ctx, a: LeaseArgs) -> Result<()> {
    match a.cmd {
        LeaseCmd::Grant { args } => {
            if args.len() != 1 {
                return Err(CtlError::bad_args("lease grant command needs TTL argument"));
            }
            let ttl = parse_int(&args[0], 10)
                .map_err(|e| CtlError::bad_args(format!("bad TTL ({e})")))?;
            let c = ctx.client()?;
            let p = ctx.printer()?;
            let r = ctx
                .timed(c.lease_grant(ttl, 0))
                .await
                .map_err(|e| CtlError::error(format!("failed to grant lease ({})", e.msg)))?;
            p.grant(&r)
        }
        LeaseCmd::Revoke { args } => {
            let id = lease_id(
                &args,
                "lease revoke command needs 1 argument",
                "bad lease ID arg",
            )?;
            let c = ctx.client()?;
            let p = ctx.printer()?;
            let r = ctx
                .timed(c.lease_revoke(id))
                .await
                .map_err(|e| CtlError::error(format!("failed to revoke lease ({})", e.msg)))?;
            p.revoke(id, &r)
        }
        LeaseCmd::Timetolive { keys, args } => {
            let id = lease_id(
                &args,
                "lease timetolive command needs lease ID as argument",
                "bad lease ID arg",
            )?;
            let c = ctx.client()?;
            let p = ctx.printer()?;
            let r = ctx.timed(c.lease_time_to_live(id, keys)).await?;
            p.time_to_live(&r, keys)
        }
        LeaseCmd::List => {
            let c = ctx.client()?;
            let p = ctx.printer()?;
            let r = ctx
                .timed(c.lease_leases())
                .await
                .map_err(|e| CtlError::error(format!("failed to list leases ({})", e.msg)))?;
            p.leases(&r)
        }
        LeaseCmd::KeepAlive { once, args } => {
            let id = lease_id(
                &args,
                "lease keep-alive command needs lease ID as argument",
                "bad lease ID arg",
            )?;
            let c = ctx.client()?;
            let p = ctx.printer()?;
            keep_alive(ctx, &c, &p, id, once).await
        }
    }
}

/// Sends keep-alives every third of the TTL and prints each answer; ends
/// when the lease is gone (`--once`: one round, and a missing lease is an
/// error with exit code 2, as etcdctl).
async fn keep_alive(
    ctx: &Ctx,
    c: &keel_client::Client,
    p: &crate::output::Printer,
    id: i64,
    once: bool,
) -> Result<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut lc = LeaseClient::new(ctx.timed(c.channel()).await?);
    let _ = tx.send(LeaseKeepAliveRequest { id }).await;
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let call = async { lc.lease_keep_alive(stream).await };
    let mut resp = if once {
        ctx.timed(async { call.await.map_err(keel_client::Error::from) })
            .await
            .map_err(|e| CtlError::new(ExitCode::BadConnection, e.msg))?
            .into_inner()
    } else {
        match call.await {
            Ok(r) => r.into_inner(),
            Err(_) => return expired(p, id),
        }
    };
    loop {
        let msg = if once {
            ctx.timed(async { resp.message().await.map_err(keel_client::Error::from) })
                .await
                .map_err(|e| CtlError::new(ExitCode::BadConnection, e.msg))?
        } else {
            resp.message().await.ok().flatten()
        };
        let Some(r) = msg else {
            if once {
                return Err(CtlError::new(ExitCode::BadConnection, "context canceled"));
            }
            return expired(p, id);
        };
        if r.ttl <= 0 {
            if once {
                return Err(CtlError::new(
                    ExitCode::BadConnection,
                    "etcdserver: requested lease not found",
                ));
            }
            return expired(p, id);
        }
        p.keep_alive(&r)?;
        if once {
            return Ok(());
        }
        let wait = std::time::Duration::from_millis((r.ttl as u64 * 1000 / 3).max(500));
        tokio::time::sleep(wait).await;
        if tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
            return expired(p, id);
        }
    }
}

fn expired(p: &crate::output::Printer, id: i64) -> Result<()> {
    if p.format == Format::Simple {
        outln!("lease {id:016x} expired or revoked.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex() {
        assert_eq!(lease_id(&["1f".into()], "m", "bad").unwrap(), 31);
        assert_eq!(lease_id(&[], "missing", "bad").unwrap_err().msg, "missing");
        assert_eq!(
            lease_id(&["zz".into()], "m", "bad lease ID arg").unwrap_err().msg,
            "bad lease ID arg (strconv.ParseInt: parsing \"zz\": invalid syntax), expecting ID in Hex"
        );
    }
}
