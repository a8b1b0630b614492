//! `member add|remove|update|list|promote`: etcdctl's member commands.
//! Member IDs are read and printed in hexadecimal.

use clap::{ArgAction, Args, Subcommand};
use prost::Message;

use crate::error::{CtlError, Result};
use crate::global::{go_bool, parse_uint, Ctx};
use crate::outln;
use crate::output::go::quote;
use crate::output::Format;

/// Membership related commands
#[derive(Debug, Clone, Args)]
pub struct MemberArgs {
    #[command(subcommand)]
    pub cmd: MemberCmd,
}

#[derive(Debug, Clone, Subcommand)]
pub enum MemberCmd {
    /// Adds a member into the cluster
    Add {
        #[arg(
            long,
            default_value = "",
            help = "comma separated peer URLs for the new member."
        )]
        peer_urls: String,
        /// indicates if the new member is raft learner
        #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
              default_missing_value = "true", default_value = "false", value_parser = go_bool)]
        learner: bool,
        /// <memberName>
        args: Vec<String>,
    },
    /// Removes a member from the cluster
    Remove {
        /// <memberID>
        args: Vec<String>,
    },
    /// Updates a member in the cluster
    Update {
        #[arg(
            long,
            default_value = "",
            help = "comma separated peer URLs for the updated member."
        )]
        peer_urls: String,
        /// <memberID>
        args: Vec<String>,
    },
    /// Lists all members in the cluster
    List,
    /// Promotes a non-voting member in the cluster
    Promote {
        /// <memberID>
        args: Vec<String>,
    },
}

/// A member ID argument (hex).
pub fn member_id(args: &[String]) -> Result<u64> {
    if args.len() != 1 {
        return Err(CtlError::bad_args("member ID is not provided"));
    }
    parse_uint(&args[0], 16)
        .map_err(|e| CtlError::bad_args(format!("bad member ID arg ({e}), expecting ID in Hex")))
}

pub async fn run(ctx: &Ctx, a: MemberArgs) -> Result<()> {
    match a.cmd {
        MemberCmd::Add {
            peer_urls,
            learner,
            args,
        } => {
            if args.is_empty() {
                return Err(CtlError::bad_args("member name not provided"));
            }
            if args.len() > 1 {
                return Err(CtlError::bad_args(format!(
                    "too many arguments ({}), expected 1 (member name)",
                    args.len()
                )));
            }
            let name = args[0].clone();
            if peer_urls.is_empty() {
                return Err(CtlError::bad_args("member peer urls not provided"));
            }
            let urls: Vec<String> = peer_urls.split(',').map(str::to_string).collect();
            let c = ctx.client()?;
            let p = ctx.printer()?;
            let resp = ctx.timed(c.member_add(urls.clone(), learner)).await?;
            p.member_add(&resp)?;
            if p.format == Format::Simple {
                let new_id = resp.member.as_ref().map(|m| m.id).unwrap_or(0);
                let list = ctx.timed(c.member_list()).await?;
                let mut conf = Vec::new();
                for m in &list.members {
                    for u in &m.peer_ur_ls {
                        let n = if m.id == new_id { &name } else { &m.name };
                        conf.push(format!("{n}={u}"));
                    }
                }
                let member_urls = resp
                    .member
                    .as_ref()
                    .map(|m| m.peer_ur_ls.join(","))
                    .unwrap_or_default();
                outln!();
                outln!("ETCD_NAME={}", quote(name.as_bytes()));
                outln!("ETCD_INITIAL_CLUSTER={}", quote(conf.join(",").as_bytes()));
                outln!(
                    "ETCD_INITIAL_ADVERTISE_PEER_URLS={}",
                    quote(member_urls.as_bytes())
                );
                outln!("ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
            }
            Ok(())
        }
        MemberCmd::Remove { args } => {
            let id = member_id(&args)?;
            let c = ctx.client()?;
            let p = ctx.printer()?;
            let r = ctx.timed(c.member_remove(id)).await?;
            p.member_change(id, "removed from", r.header.as_ref(), &r.members, &|| {
                r.encode_to_vec()
            })
        }
        MemberCmd::Update { peer_urls, args } => {
            let id = member_id(&args)?;
            if peer_urls.is_empty() {
                return Err(CtlError::bad_args("member peer urls not provided"));
            }
            let urls: Vec<String> = peer_urls.split(',').map(str::to_string).collect();
            let c = ctx.client()?;
            let p = ctx.printer()?;
            let r = ctx.timed(c.member_update(id, urls)).await?;
            p.member_change(id, "updated in", r.header.as_ref(), &r.members, &|| {
                r.encode_to_vec()
            })
        }
        MemberCmd::Promote { args } => {
            let id = member_id(&args)?;
            let c = ctx.client()?;
            let p = ctx.printer()?;
            let r = ctx.timed(c.member_promote(id)).await?;
            p.member_change(id, "promoted in", r.header.as_ref(), &r.members, &|| {
                r.encode_to_vec()
            })
        }
        MemberCmd::List => {
            let c = ctx.client()?;
            let p = ctx.printer()?;
            let r = ctx.timed(c.member_list()).await?;
            p.member_list(&r)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_hex() {
        assert_eq!(
            member_id(&["2e1259d415f2a040".into()]).unwrap(),
            0x2e1259d415f2a040
        );
        assert_eq!(member_id(&[]).unwrap_err().msg, "member ID is not provided");
        assert_eq!(
            member_id(&["xyz".into()]).unwrap_err().msg,
            "bad member ID arg (strconv.ParseUint: parsing \"xyz\": invalid syntax), expecting ID in Hex"
        );
    }
}
