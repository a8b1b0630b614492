//! `compaction [options] <revision>`: etcdctl's compaction command.

use clap::{ArgAction, Args};

use crate::error::{CtlError, Result};
use crate::global::{go_bool, go_i64, Ctx};
use crate::outln;

/// Compacts the event history in etcd
#[derive(Debug, Clone, Args)]
pub struct CompactionArgs {
    /// 'true' to wait for compaction to physically remove all old revisions
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub physical: bool,
    /// <revision>
    pub args: Vec<String>,
}

pub async fn run(ctx: &Ctx, a: CompactionArgs) -> Result<()> {
    if a.args.len() != 1 {
        return Err(CtlError::bad_args("compaction command needs 1 argument"));
    }
    let rev = go_i64(&a.args[0]).map_err(CtlError::error)?;
    let client = ctx.client()?;
    ctx.timed(client.compact(rev, a.physical)).await?;
    outln!("compacted revision {rev}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: CompactionArgs,
    }

    #[test]
    fn parses_as_etcdctl() {
        let t = T::try_parse_from(["compaction", "5", "--physical"]).unwrap();
        assert_eq!((t.a.args, t.a.physical), (vec!["5".to_string()], true));
        let t = T::try_parse_from(["compaction", "--physical=false", "7"]).unwrap();
        assert!(!t.a.physical);
        assert!(T::try_parse_from(["compaction", "--physical=maybe"]).is_err());
    }
}
