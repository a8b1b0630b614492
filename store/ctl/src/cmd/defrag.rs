//! `defrag [--cluster]`: defragments each endpoint's backend.

use clap::{ArgAction, Args};

use crate::error::{CtlError, ExitCode, Result};
use crate::global::{go_bool, Ctx};
use crate::outln;

/// Defragments the storage of the etcd members with given endpoints
#[derive(Debug, Clone, Args)]
pub struct DefragArgs {
    /// use all endpoints from the cluster member list
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub cluster: bool,
    /// Offline defragmentation of a data dir: refused by keelctl.
    #[arg(
        long,
        default_value = "",
        help = "Optional. If present, defragments a data directory not in use by etcd."
    )]
    pub data_dir: String,
}

pub async fn run(ctx: &Ctx, a: DefragArgs) -> Result<()> {
    if !a.data_dir.is_empty() {
        return Err(CtlError::new(
            ExitCode::BadFeature,
            "defrag --data-dir: offline defragmentation of a bbolt file is etcd's; keel defragments online",
        ));
    }
    let eps = super::endpoint::endpoints(ctx, a.cluster).await?;
    let mut failures = 0;
    for ep in &eps {
        let c = ctx.client_for(std::slice::from_ref(ep))?;
        match ctx.timed(c.defragment()).await {
            Ok(_) => outln!("Finished defragmenting etcd member[{ep}]"),
            Err(e) => {
                eprintln!("Failed to defragment etcd member[{ep}] ({})", e.msg);
                failures += 1;
            }
        }
    }
    if failures > 0 {
        return Err(CtlError::exit(ExitCode::Error));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: DefragArgs,
    }

    #[test]
    fn parses_as_etcdctl() {
        let t = T::try_parse_from(["defrag", "--cluster"]).unwrap();
        assert!(t.a.cluster);
        let t = T::try_parse_from(["defrag", "--data-dir=/x"]).unwrap();
        assert_eq!(t.a.data_dir, "/x");
        assert!(!t.a.cluster);
    }
}
