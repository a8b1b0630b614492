//! `alarm list|disarm`: etcdctl's alarm commands. `disarm` lists the
//! alarms and clears each, as clientv3's AlarmDisarm does for "all".

use clap::{Args, Subcommand};
use keel_client::maintenance::{AlarmAction, AlarmRequest, AlarmResponse};

use crate::error::Result;
use crate::global::Ctx;

/// Alarm related commands
#[derive(Debug, Clone, Args)]
pub struct AlarmArgs {
    #[command(subcommand)]
    pub cmd: AlarmCmd,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AlarmCmd {
    /// Disarms all alarms
    Disarm,
    /// Lists all alarms
    List,
}

pub async fn run(ctx: &Ctx, a: AlarmArgs) -> Result<()> {
    let c = ctx.client()?;
    let p = ctx.printer()?;
    let list = ctx.timed(c.alarm(AlarmRequest::default())).await?;
    match a.cmd {
        AlarmCmd::List => p.alarm(&list),
        AlarmCmd::Disarm => {
            let mut out = AlarmResponse::default();
            for am in &list.alarms {
                let req = AlarmRequest {
                    action: AlarmAction::Deactivate as i32,
                    member_id: am.member_id,
                    alarm: am.alarm,
                };
                let r = ctx.timed(c.alarm(req)).await?;
                out.alarms.extend(r.alarms);
            }
            p.alarm(&out)
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
        a: AlarmArgs,
    }

    #[test]
    fn parses_as_etcdctl() {
        assert!(matches!(
            T::try_parse_from(["alarm", "list"]).unwrap().a.cmd,
            AlarmCmd::List
        ));
        assert!(matches!(
            T::try_parse_from(["alarm", "disarm"]).unwrap().a.cmd,
            AlarmCmd::Disarm
        ));
        assert!(T::try_parse_from(["alarm", "activate"]).is_err());
    }
}
