//! `del [options] <key> [range_end]`: etcdctl's del command.

use clap::{ArgAction, Args};
use keel_client::DeleteRangeRequest;

use crate::error::{CtlError, Result};
use crate::global::{go_bool, Ctx};

/// Removes the specified key or range of keys [key, range_end)
#[derive(Debug, Clone, Args)]
pub struct DelArgs {
    /// delete keys with matching prefix
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub prefix: bool,
    /// return deleted key-value pairs
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub prev_kv: bool,
    /// delete keys that are greater than or equal to the given key using byte compare
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub from_key: bool,
    /// <key> [range_end]
    pub args: Vec<String>,
}

/// The delete request etcdctl's getDelOp builds.
pub fn request(a: &DelArgs) -> Result<DeleteRangeRequest> {
    if a.args.is_empty() || a.args.len() > 2 {
        return Err(CtlError::bad_args(
            "del command needs one argument as key and an optional argument as range_end",
        ));
    }
    if a.prefix && a.from_key {
        return Err(CtlError::bad_args(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    let mut req = DeleteRangeRequest::default();
    let mut key = a.args[0].clone().into_bytes();
    if a.args.len() > 1 {
        if a.prefix || a.from_key {
            return Err(CtlError::bad_args(
                "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
            ));
        }
        req.range_end = a.args[1].clone().into_bytes();
    }
    if a.prefix {
        if key.is_empty() {
            key = vec![0];
            req.range_end = vec![0];
        } else {
            req.range_end = keel_client::prefix_end(&key);
        }
    }
    req.prev_kv = a.prev_kv;
    if a.from_key {
        if key.is_empty() {
            key = vec![0];
        }
        req.range_end = vec![0];
    }
    req.key = key;
    Ok(req)
}

pub async fn run(ctx: &Ctx, a: DelArgs) -> Result<()> {
    let req = request(&a)?;
    let client = ctx.client()?;
    let p = ctx.printer()?;
    let resp = ctx.timed(client.delete(req)).await?;
    p.del(&resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: DelArgs,
    }

    fn req(s: &str) -> Result<DeleteRangeRequest> {
        let t = T::try_parse_from(std::iter::once("del").chain(s.split_whitespace())).unwrap();
        request(&t.a)
    }

    #[test]
    fn parses_as_etcdctl() {
        let r = req("a --prefix --prev-kv").unwrap();
        assert_eq!(
            (r.key, r.range_end, r.prev_kv),
            (b"a".to_vec(), b"b".to_vec(), true)
        );
        assert_eq!(req("a z").unwrap().range_end, b"z".to_vec());
        assert_eq!(req("a --from-key").unwrap().range_end, vec![0]);
        assert!(req("").is_err());
        assert!(req("a b c").is_err());
        assert!(req("a --prefix --from-key").is_err());
    }
}
