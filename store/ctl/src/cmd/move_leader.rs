//! `move-leader <transferee-member-id>`: finds the leader among the
//! endpoints and asks it to hand over leadership.

use clap::Args;

use crate::error::{CtlError, Result};
use crate::global::{parse_uint, Ctx};

/// Transfers leadership to another etcd cluster member.
#[derive(Debug, Clone, Args)]
pub struct MoveLeaderArgs {
    /// <transferee-member-id>
    pub args: Vec<String>,
}

pub async fn run(ctx: &Ctx, a: MoveLeaderArgs) -> Result<()> {
    if a.args.len() != 1 {
        return Err(CtlError::bad_args("move-leader command needs 1 argument"));
    }
    let target = parse_uint(&a.args[0], 16).map_err(CtlError::bad_args)?;
    let p = ctx.printer()?;
    let mut leader = None;
    for ep in &ctx.g.endpoints {
        let c = ctx.client_for(std::slice::from_ref(ep))?;
        let s = ctx.timed(c.status()).await?;
        let me = s.header.as_ref().map(|h| h.member_id).unwrap_or(0);
        if me == s.leader {
            leader = Some((c, s.leader));
            break;
        }
    }
    let Some((c, leader_id)) = leader else {
        return Err(CtlError::bad_args(format!(
            "no leader endpoint given at [{}]",
            ctx.g.endpoints.join(" ")
        )));
    };
    let r = ctx.timed(c.move_leader(target)).await?;
    p.move_leader(leader_id, target, &r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: MoveLeaderArgs,
    }

    #[test]
    fn parses_as_etcdctl() {
        let t = T::try_parse_from(["move-leader", "8e9e05c52164694d"]).unwrap();
        assert_eq!(parse_uint(&t.a.args[0], 16), Ok(0x8e9e05c52164694d));
        assert!(parse_uint("zz", 16).is_err());
    }
}
