//! `put [options] <key> <value>` (value from stdin when left out): etcdctl's
//! put command.

use std::io::Read;

use clap::{ArgAction, Args};
use keel_client::PutRequest;

use crate::error::{CtlError, Result};
use crate::global::{go_bool, parse_int, Ctx};

/// Puts the given key into the store
#[derive(Debug, Clone, Args)]
pub struct PutArgs {
    /// lease ID (in hexadecimal) to attach to the key
    #[arg(long, default_value = "0")]
    pub lease: String,
    /// return the previous key-value pair before modification
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub prev_kv: bool,
    /// updates the key using its current value
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub ignore_value: bool,
    /// updates the key using its current lease
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub ignore_lease: bool,
    /// <key> <value>
    pub args: Vec<String>,
}

/// The put request etcdctl's getPutOp builds; `stdin` gives the value when
/// only the key is an argument.
pub fn request(a: &PutArgs, stdin: &mut dyn Read) -> Result<PutRequest> {
    let needs = "put command needs 1 argument and input from stdin or 2 arguments";
    if a.args.is_empty() {
        return Err(CtlError::bad_args(needs));
    }
    if a.ignore_value && a.args.len() > 1 {
        return Err(CtlError::bad_args(
            "put command needs only 1 argument when 'ignore-value' is set",
        ));
    }
    let mut value = Vec::new();
    if !a.ignore_value {
        if a.args.len() > 1 {
            value = a.args[1].clone().into_bytes();
        } else if stdin.read_to_end(&mut value).is_err() || value.is_empty() {
            return Err(CtlError::bad_args(needs));
        }
    }
    let lease = parse_int(&a.lease, 16)
        .map_err(|e| CtlError::bad_args(format!("bad lease ID ({e}), expecting ID in Hex")))?;
    Ok(PutRequest {
        key: a.args[0].clone().into_bytes(),
        value,
        lease,
        prev_kv: a.prev_kv,
        ignore_value: a.ignore_value,
        ignore_lease: a.ignore_lease,
    })
}

pub async fn run(ctx: &Ctx, a: PutArgs) -> Result<()> {
    let req = request(&a, &mut std::io::stdin())?;
    let client = ctx.client()?;
    let p = ctx.printer()?;
    let resp = ctx.timed(client.put_request(req)).await?;
    p.put(&resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: PutArgs,
    }

    fn req(s: &str, stdin: &str) -> Result<PutRequest> {
        let t = T::try_parse_from(std::iter::once("put").chain(s.split_whitespace())).unwrap();
        request(&t.a, &mut stdin.as_bytes())
    }

    #[test]
    fn parses_as_etcdctl() {
        let r = req("k v --lease=1f --prev-kv", "").unwrap();
        assert_eq!(
            (r.key, r.value, r.lease, r.prev_kv),
            (b"k".to_vec(), b"v".to_vec(), 31, true)
        );
        assert_eq!(
            req("k", "from stdin").unwrap().value,
            b"from stdin".to_vec()
        );
        assert_eq!(
            req("k", "").unwrap_err().msg,
            "put command needs 1 argument and input from stdin or 2 arguments"
        );
        assert!(req("k --ignore-value", "").unwrap().ignore_value);
        assert_eq!(
            req("k v --ignore-value", "").unwrap_err().msg,
            "put command needs only 1 argument when 'ignore-value' is set"
        );
        assert_eq!(
            req("k v --lease=zz", "").unwrap_err().msg,
            "bad lease ID (strconv.ParseInt: parsing \"zz\": invalid syntax), expecting ID in Hex"
        );
    }
}
