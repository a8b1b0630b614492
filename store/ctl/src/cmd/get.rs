//! `get [options] <key> [range_end]`: etcdctl's get command.

use clap::{ArgAction, Args};
use keel_client::RangeRequest;

use crate::error::{CtlError, ExitCode, Result};
use crate::global::{go_bool, go_i64, Ctx};
use crate::output::Format;

/// Gets the key or a range of keys
#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l")]
    pub consistency: String,
    /// Order of results; ASCEND or DESCEND (ASCEND by default)
    #[arg(long, default_value = "")]
    pub order: String,
    /// Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION
    #[arg(long, default_value = "")]
    pub sort_by: String,
    /// Maximum number of results
    #[arg(long, default_value = "0", value_parser = go_i64)]
    pub limit: i64,
    /// Get keys with matching prefix
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub prefix: bool,
    /// Get keys that are greater than or equal to the given key using byte compare
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub from_key: bool,
    /// Specify the kv revision
    #[arg(long, default_value = "0", value_parser = go_i64)]
    pub rev: i64,
    /// Get only the keys
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub keys_only: bool,
    /// Only write values when using the "simple" output format
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub print_value_only: bool,
    /// <key> [range_end]
    #[arg(allow_hyphen_values = false)]
    pub args: Vec<String>,
}

/// The range request etcdctl's getGetOp builds, or its argument error.
pub fn request(a: &GetArgs) -> Result<RangeRequest> {
    if a.args.is_empty() {
        return Err(CtlError::bad_args(
            "get command needs one argument as key and an optional argument as range_end",
        ));
    }
    if a.prefix && a.from_key {
        return Err(CtlError::bad_args(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    let mut req = RangeRequest::default();
    match a.consistency.as_str() {
        "s" => req.serializable = true,
        "l" => {}
        c => {
            return Err(CtlError::new(
                ExitCode::BadFeature,
                format!(
                    "unknown consistency flag {}",
                    crate::output::go::quote(c.as_bytes())
                ),
            ))
        }
    }
    let mut key = a.args[0].clone().into_bytes();
    if a.args.len() > 1 {
        if a.prefix || a.from_key {
            return Err(CtlError::bad_args(
                "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
            ));
        }
        req.range_end = a.args[1].clone().into_bytes();
    }
    req.limit = a.limit;
    if a.rev > 0 {
        req.revision = a.rev;
    }
    // SortOrder: NONE 0, ASCEND 1, DESCEND 2; SortTarget: KEY 0, VERSION 1,
    // CREATE 2, MOD 3, VALUE 4.
    let order = match a.order.to_uppercase().as_str() {
        "ASCEND" => 1,
        "DESCEND" => 2,
        "" => 0,
        _ => {
            return Err(CtlError::new(
                ExitCode::BadFeature,
                format!("bad sort order {}", a.order),
            ))
        }
    };
    let target = match a.sort_by.to_uppercase().as_str() {
        "CREATE" => 2,
        "KEY" | "" => 0,
        "MODIFY" => 3,
        "VALUE" => 4,
        "VERSION" => 1,
        _ => {
            return Err(CtlError::new(
                ExitCode::BadFeature,
                format!("bad sort target {}", a.sort_by),
            ))
        }
    };
    // clientv3.WithSort: ascending by key is the server's default order.
    req.sort_order = if target == 0 && order == 1 { 0 } else { order };
    req.sort_target = target;
    if a.prefix {
        if key.is_empty() {
            key = vec![0];
            req.range_end = vec![0];
        } else {
            req.range_end = keel_client::prefix_end(&key);
        }
    }
    if a.from_key {
        if key.is_empty() {
            key = vec![0];
        }
        req.range_end = vec![0];
    }
    req.keys_only = a.keys_only;
    req.key = key;
    Ok(req)
}

pub async fn run(ctx: &Ctx, a: GetArgs) -> Result<()> {
    let req = request(&a)?;
    let client = ctx.client()?;
    let mut p = ctx.printer()?;
    let resp = ctx.timed(client.range(req)).await?;
    if a.print_value_only {
        if p.format != Format::Simple {
            return Err(CtlError::bad_args(
                "print-value-only is only for `--write-out=simple`",
            ));
        }
        p.value_only = true;
    }
    p.get(&resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: GetArgs,
    }

    fn req(s: &str) -> Result<RangeRequest> {
        let t = T::try_parse_from(std::iter::once("get").chain(s.split_whitespace())).unwrap();
        request(&t.a)
    }

    #[test]
    fn parses_as_etcdctl() {
        let r = req("foo --prefix").unwrap();
        assert_eq!((r.key, r.range_end), (b"foo".to_vec(), b"fop".to_vec()));
        let t = T::try_parse_from(["get", "--prefix", ""]).unwrap();
        let r = request(&t.a).unwrap();
        assert_eq!((r.key, r.range_end), (vec![0], vec![0]));
        let r = req("a z --limit=2 --rev=5 --keys-only --consistency=s").unwrap();
        assert_eq!(r.range_end, b"z".to_vec());
        assert_eq!(
            (r.limit, r.revision, r.keys_only, r.serializable),
            (2, 5, true, true)
        );
        let r = req("a --from-key --sort-by=MODIFY --order=descend").unwrap();
        assert_eq!((r.range_end, r.sort_target, r.sort_order), (vec![0], 3, 2));
        let r = req("a --order=ASCEND").unwrap();
        assert_eq!(r.sort_order, 0);
        assert_eq!(req("").unwrap_err().code, ExitCode::BadArgs);
        assert_eq!(
            req("a --prefix --from-key").unwrap_err().code,
            ExitCode::BadArgs
        );
        assert_eq!(req("a b --prefix").unwrap_err().code, ExitCode::BadArgs);
        assert_eq!(req("a --sort-by=x").unwrap_err().msg, "bad sort target x");
        assert_eq!(req("a --order=x").unwrap_err().code, ExitCode::BadFeature);
        assert_eq!(
            req("a --consistency=x").unwrap_err().msg,
            "unknown consistency flag \"x\""
        );
    }
}
