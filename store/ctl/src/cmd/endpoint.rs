//! `endpoint health|status|hashkv [--cluster]`: etcdctl's endpoint
//! commands, one client per endpoint.

use std::time::Instant;

use clap::{ArgAction, Args, Subcommand};

use crate::error::{status_text, CtlError, Result};
use crate::global::{go_bool, go_i64, Ctx};
use crate::output::{EpHashKv, EpHealth, EpStatus};

/// Endpoint related commands
#[derive(Debug, Clone, Args)]
pub struct EndpointArgs {
    /// use all endpoints from the cluster member list
    #[arg(long, global = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub cluster: bool,
    #[command(subcommand)]
    pub cmd: EndpointCmd,
}

#[derive(Debug, Clone, Subcommand)]
pub enum EndpointCmd {
    /// Checks the healthiness of endpoints specified in `--endpoints` flag
    Health,
    /// Prints out the status of endpoints specified in `--endpoints` flag
    Status,
    /// Prints the KV history hash for each endpoint in --endpoints
    Hashkv {
        /// maximum revision to hash (default: all revisions)
        #[arg(long, default_value = "0", value_parser = go_i64)]
        rev: i64,
    },
}

/// `--endpoints`, or with `--cluster` every member's client URLs.
pub async fn endpoints(ctx: &Ctx, cluster: bool) -> Result<Vec<String>> {
    if !cluster {
        return Ok(ctx.g.endpoints.clone());
    }
    let c = ctx.client()?;
    let list = ctx.timed(c.member_list()).await.map_err(|e| {
        CtlError::error(format!(
            "failed to fetch endpoints from etcd cluster member list: {}",
            e.msg
        ))
    })?;
    Ok(list
        .members
        .into_iter()
        .flat_map(|m| m.client_ur_ls)
        .collect())
}

fn err_text(e: &keel_client::Error) -> String {
    match e {
        keel_client::Error::Status(s) | keel_client::Error::Authenticate(s) => status_text(s),
        other => other.to_string(),
    }
}

pub async fn run(ctx: &Ctx, a: EndpointArgs) -> Result<()> {
    let p = ctx.printer()?;
    let eps = endpoints(ctx, a.cluster).await?;
    match a.cmd {
        EndpointCmd::Health => {
            let mut hs = Vec::new();
            for ep in &eps {
                let c = ctx.client_for(std::slice::from_ref(ep))?;
                let st = Instant::now();
                let got = tokio::time::timeout(ctx.g.command_timeout, c.get("health")).await;
                let mut h = EpHealth {
                    ep: ep.clone(),
                    health: false,
                    took: st.elapsed(),
                    error: String::new(),
                };
                match got {
                    Ok(Ok(_)) => h.health = true,
                    Ok(Err(e)) if err_text(&e) == "etcdserver: permission denied" => {
                        h.health = true
                    }
                    Ok(Err(e)) => h.error = err_text(&e),
                    Err(_) => h.error = "context deadline exceeded".into(),
                }
                if h.health {
                    let req = keel_client::maintenance::AlarmRequest::default();
                    match tokio::time::timeout(ctx.g.command_timeout, c.alarm(req)).await {
                        Ok(Ok(r)) if !r.alarms.is_empty() => {
                            h.health = false;
                            h.error = "Active Alarm(s): ".into();
                            for a in &r.alarms {
                                h.error.push_str(match a.alarm {
                                    1 => "NOSPACE ",
                                    2 => "CORRUPT ",
                                    _ => "UNKNOWN ",
                                });
                            }
                        }
                        Ok(Ok(_)) => {}
                        _ => {
                            h.health = false;
                            h.error = "Unable to fetch the alarm list".into();
                        }
                    }
                }
                hs.push(h);
            }
            p.endpoint_health(&hs)?;
            if hs.iter().any(|h| !h.health) {
                return Err(CtlError::error("unhealthy cluster"));
            }
            Ok(())
        }
        EndpointCmd::Status => {
            let mut out = Vec::new();
            let mut failed = false;
            for ep in &eps {
                let c = ctx.client_for(std::slice::from_ref(ep))?;
                match ctx.timed(c.status()).await {
                    Ok(resp) => out.push(EpStatus {
                        ep: ep.clone(),
                        resp,
                    }),
                    Err(e) => {
                        failed = true;
                        eprintln!("Failed to get the status of endpoint {ep} ({})", e.msg);
                    }
                }
            }
            p.endpoint_status(&out)?;
            if failed {
                return Err(CtlError::exit(crate::error::ExitCode::Error));
            }
            Ok(())
        }
        EndpointCmd::Hashkv { rev } => {
            let mut out = Vec::new();
            let mut failed = false;
            for ep in &eps {
                let c = ctx.client_for(std::slice::from_ref(ep))?;
                match ctx.timed(c.hash_kv(rev)).await {
                    Ok(resp) => out.push(EpHashKv {
                        ep: ep.clone(),
                        resp,
                    }),
                    Err(e) => {
                        failed = true;
                        eprintln!("Failed to get the hash of endpoint {ep} ({})", e.msg);
                    }
                }
            }
            p.endpoint_hashkv(&out)?;
            if failed {
                return Err(CtlError::exit(crate::error::ExitCode::Error));
            }
            Ok(())
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
        a: EndpointArgs,
    }

    #[test]
    fn parses_as_etcdctl() {
        let t = T::try_parse_from(["endpoint", "status", "--cluster"]).unwrap();
        assert!(t.a.cluster);
        assert!(matches!(t.a.cmd, EndpointCmd::Status));
        let t = T::try_parse_from(["endpoint", "--cluster", "health"]).unwrap();
        assert!(t.a.cluster && matches!(t.a.cmd, EndpointCmd::Health));
        let t = T::try_parse_from(["endpoint", "hashkv", "--rev=9"]).unwrap();
        assert!(matches!(t.a.cmd, EndpointCmd::Hashkv { rev: 9 }));
        assert!(T::try_parse_from(["endpoint", "hashkv", "--rev=x"]).is_err());
    }
}
