//! `txn [options]`: etcdctl's txn command. Reads from stdin, one item a
//! line, three blocks each ended by an empty line: compares
//! (`mod("k") > "0"`, `value("k") = "v"`, `create`, `version`, `lease`),
//! then the requests run on success, then those run on failure
//! (`put k v [--lease=..]`, `get k [end] [flags]`, `del k [end] [flags]`).
//! `-i` prompts for each block. A stdin that ends before the last empty
//! line is etcdctl's "Error: EOF" (exit 3).

use std::io::BufRead;

use clap::{ArgAction, Args, Parser};
use keel_client::{compare, request_op, Compare, RequestOp, TxnRequest};

use super::{del, get, put};
use crate::error::{CtlError, ExitCode, Result};
use crate::global::{go_bool, parse_int, Ctx};
use crate::outln;

/// Txn processes all the requests in one transaction
#[derive(Debug, Clone, Args)]
pub struct TxnArgs {
    /// Input transaction in interactive mode
    #[arg(short = 'i', long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub interactive: bool,
    pub args: Vec<String>,
}

fn invalid_input(msg: impl Into<String>) -> CtlError {
    CtlError::new(ExitCode::InvalidInput, msg)
}

/// Reads one line; `None` at the block's empty line. A line without its
/// newline (end of input) is an error, as Go's `ReadString('\n')`.
fn read_line(r: &mut dyn BufRead) -> Result<Option<String>> {
    let mut buf = Vec::new();
    r.read_until(b'\n', &mut buf)
        .map_err(|e| invalid_input(e.to_string()))?;
    if buf.last() != Some(&b'\n') {
        return Err(invalid_input("EOF"));
    }
    let line = String::from_utf8_lossy(&buf).trim().to_string();
    Ok((!line.is_empty()).then_some(line))
}

/// Reads a Go quoted string (`"..."` with escapes, or `` `...` ``) at the
/// start of `s`; returns it and the rest.
fn go_unquote_prefix(s: &str) -> Option<(String, &str)> {
    let mut chars = s.char_indices();
    match chars.next()? {
        (_, '`') => {
            let end = s[1..].find('`')? + 1;
            Some((s[1..end].to_string(), &s[end + 1..]))
        }
        (_, '"') => {
            let mut out = String::new();
            let mut it = s[1..].char_indices();
            while let Some((i, c)) = it.next() {
                match c {
                    '"' => return Some((out, &s[i + 2..])),
                    '\\' => {
                        let (_, e) = it.next()?;
                        match e {
                            'n' => out.push('\n'),
                            't' => out.push('\t'),
                            'r' => out.push('\r'),
                            'a' => out.push('\x07'),
                            'b' => out.push('\x08'),
                            'f' => out.push('\x0c'),
                            'v' => out.push('\x0b'),
                            '\\' => out.push('\\'),
                            '"' => out.push('"'),
                            '\'' => out.push('\''),
                            'x' => {
                                let h: String =
                                    (0..2).filter_map(|_| it.next().map(|x| x.1)).collect();
                                out.push(u8::from_str_radix(&h, 16).ok()? as char);
                            }
                            'u' => {
                                let h: String =
                                    (0..4).filter_map(|_| it.next().map(|x| x.1)).collect();
                                out.push(char::from_u32(u32::from_str_radix(&h, 16).ok()?)?);
                            }
                            _ => return None,
                        }
                    }
                    c => out.push(c),
                }
            }
            None
        }
        _ => None,
    }
}

/// etcdctl's parseCompare.
pub fn parse_compare(line: &str) -> Result<Compare> {
    let malformed = || invalid_input(format!("malformed comparison: {line}"));
    let (target, rest) = line.split_once('(').ok_or_else(malformed)?;
    // fmt.Sscanf(rest, "%q) %s %q", &key, &op, &val)
    let mut key = String::new();
    let mut op = String::new();
    let mut val = String::new();
    let mut n = 0;
    let scanned = (|| {
        let (k, r) = go_unquote_prefix(rest.trim_start())?;
        key = k;
        n = 1;
        let r = r.strip_prefix(')')?.trim_start();
        let end = r.find(char::is_whitespace).unwrap_or(r.len());
        if end == 0 {
            return None;
        }
        op = r[..end].to_string();
        n = 2;
        let (v, _) = go_unquote_prefix(r[end..].trim_start())?;
        val = v;
        n = 3;
        Some(())
    })();
    if scanned.is_none() || n != 3 {
        let q = |s: &str| crate::output::go::quote(s.as_bytes());
        return Err(invalid_input(format!(
            "malformed comparison: {line}; got {target}({}) {op} {}",
            q(&key),
            q(&val)
        )));
    }
    let result = match op.as_str() {
        "=" => compare::CompareResult::Equal,
        "!=" => compare::CompareResult::NotEqual,
        "<" => compare::CompareResult::Less,
        ">" => compare::CompareResult::Greater,
        // clientv3.Compare panics on an unknown operator.
        _ => return Err(CtlError::raw(ExitCode::Panic, "panic: Unknown result op")),
    };
    let invalid = || invalid_input(format!("invalid txn compare request: {line}"));
    let (t, tu) = match target {
        "ver" | "version" => (
            compare::CompareTarget::Version,
            compare::TargetUnion::Version(parse_int(&val, 10).map_err(|_| invalid())?),
        ),
        "c" | "create" => (
            compare::CompareTarget::Create,
            compare::TargetUnion::CreateRevision(parse_int(&val, 10).map_err(|_| invalid())?),
        ),
        "m" | "mod" => (
            compare::CompareTarget::Mod,
            compare::TargetUnion::ModRevision(parse_int(&val, 10).map_err(|_| invalid())?),
        ),
        "val" | "value" => (
            compare::CompareTarget::Value,
            compare::TargetUnion::Value(val.clone().into_bytes()),
        ),
        "lease" => (
            compare::CompareTarget::Lease,
            compare::TargetUnion::Lease(parse_int(&val, 16).map_err(|_| invalid())?),
        ),
        _ => {
            return Err(invalid_input(format!(
                "malformed comparison: {line} (unknown target {target})"
            )))
        }
    };
    Ok(Compare {
        result: result as i32,
        target: t as i32,
        key: key.into_bytes(),
        range_end: Vec::new(),
        target_union: Some(tu),
    })
}

/// etcdctl's argify: whitespace-separated words, `"..."` and `'...'` quoted.
pub fn argify(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        if rest.starts_with('"') {
            let (v, r) =
                go_unquote_prefix(rest).ok_or_else(|| invalid_input("bad quoted string"))?;
            out.push(v);
            rest = r;
        } else if let Some(r) = rest.strip_prefix('\'') {
            let end = r.find('\'').unwrap_or(r.len());
            out.push(r[..end].to_string());
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            out.push(rest[..end].to_string());
            rest = &rest[end..];
        }
        rest = rest.trim_start();
    }
    Ok(out)
}

#[derive(Parser)]
#[command(no_binary_name = true)]
enum OpCmd {
    Put(put::PutArgs),
    Get(get::GetArgs),
    Del(del::DelArgs),
}

/// etcdctl's parseRequestUnion: a put, get or del line.
pub fn parse_op(line: &str) -> Result<RequestOp> {
    let args = argify(line)?;
    if args.len() < 2 {
        return Err(invalid_input(format!(
            "invalid txn compare request: {line}"
        )));
    }
    let cmd = OpCmd::try_parse_from(&args)
        .map_err(|_| invalid_input(format!("invalid txn request: {line}")))?;
    let req = match cmd {
        OpCmd::Put(a) => request_op::Request::RequestPut(put::request(&a, &mut std::io::empty())?),
        OpCmd::Get(a) => request_op::Request::RequestRange(get::request(&a)?),
        OpCmd::Del(a) => request_op::Request::RequestDeleteRange(del::request(&a)?),
    };
    Ok(RequestOp { request: Some(req) })
}

/// Reads the three blocks, prompting when `interactive`.
pub fn read_txn(r: &mut dyn BufRead, interactive: bool) -> Result<TxnRequest> {
    let prompt = |s: &str| {
        if interactive {
            outln!("{s}");
        }
    };
    let mut req = TxnRequest::default();
    prompt("compares:");
    while let Some(line) = read_line(r)? {
        req.compare.push(parse_compare(&line)?);
    }
    prompt("success requests (get, put, del):");
    while let Some(line) = read_line(r)? {
        req.success.push(parse_op(&line)?);
    }
    prompt("failure requests (get, put, del):");
    while let Some(line) = read_line(r)? {
        req.failure.push(parse_op(&line)?);
    }
    Ok(req)
}

pub async fn run(ctx: &Ctx, a: TxnArgs) -> Result<()> {
    if !a.args.is_empty() {
        return Err(CtlError::bad_args("txn command does not accept argument"));
    }
    let client = ctx.client()?;
    let p = ctx.printer()?;
    let req = read_txn(&mut std::io::stdin().lock(), a.interactive)?;
    // etcdctl commits with no deadline.
    let resp = client.txn(req).await?;
    p.txn(&resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_as_etcdctl() {
        let c = parse_compare(r#"mod("key1") > "0""#).unwrap();
        assert_eq!(c.key, b"key1".to_vec());
        assert_eq!(c.result, compare::CompareResult::Greater as i32);
        assert_eq!(c.target_union, Some(compare::TargetUnion::ModRevision(0)));
        let c = parse_compare(r#"value("k") = "a b""#).unwrap();
        assert_eq!(
            c.target_union,
            Some(compare::TargetUnion::Value(b"a b".to_vec()))
        );
        let c = parse_compare(r#"lease("k") != "1f""#).unwrap();
        assert_eq!(c.target_union, Some(compare::TargetUnion::Lease(31)));
        assert_eq!(
            parse_compare("nope").unwrap_err().msg,
            "malformed comparison: nope"
        );
        assert_eq!(
            parse_compare(r#"foo("k") = "1""#).unwrap_err().msg,
            "malformed comparison: foo(\"k\") = \"1\" (unknown target foo)"
        );
        assert_eq!(
            parse_compare(r#"ver("k") = "x""#).unwrap_err().msg,
            "invalid txn compare request: ver(\"k\") = \"x\""
        );
        assert_eq!(
            parse_compare(r#"ver("k") ~ "1""#).unwrap_err().code,
            ExitCode::Panic
        );
    }

    #[test]
    fn ops_as_etcdctl() {
        let op = parse_op(r#"put k "two words" --prev-kv"#).unwrap();
        match op.request {
            Some(request_op::Request::RequestPut(p)) => {
                assert_eq!(p.value, b"two words".to_vec());
                assert!(p.prev_kv);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_op("get a --prefix").unwrap().request,
            Some(request_op::Request::RequestRange(_))
        ));
        assert!(matches!(
            parse_op("del a b").unwrap().request,
            Some(request_op::Request::RequestDeleteRange(_))
        ));
        assert_eq!(
            parse_op("frob a b").unwrap_err().msg,
            "invalid txn request: frob a b"
        );
        assert_eq!(
            argify(r#"put 'a b' "c\"d" e"#).unwrap(),
            vec!["put", "a b", "c\"d", "e"]
        );
    }

    #[test]
    fn blocks_and_eof() {
        let input = "mod(\"a\") > \"0\"\n\nput a b\n\nget a\n\n";
        let t = read_txn(&mut input.as_bytes(), false).unwrap();
        assert_eq!(
            (t.compare.len(), t.success.len(), t.failure.len()),
            (1, 1, 1)
        );
        let e = read_txn(&mut "\nput a b\n".as_bytes(), false).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (ExitCode::InvalidInput, "EOF"));
    }
}
