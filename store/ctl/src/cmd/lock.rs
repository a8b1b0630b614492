//! `lock <lockname> [exec-command arg1 arg2 ...]`: acquires a named lock
//! (clientv3's Mutex, see [`super::session`]), prints its key, and holds it
//! until interrupted; or runs the command while holding it, with
//! `ETCD_LOCK_KEY` and `ETCD_LOCK_REV` set.

use clap::Args;
use keel_client::RangeRequest;

use super::session::{self, Session};
use crate::error::{CtlError, Result};
use crate::global::{go_i64, Ctx};

/// Acquires a named lock
#[derive(Debug, Clone, Args)]
pub struct LockArgs {
    /// timeout for session
    #[arg(long, default_value = "10", value_parser = go_i64)]
    pub ttl: i64,
    /// <lockname> [exec-command arg1 arg2 ...]
    pub args: Vec<String>,
    /// [exec-command arg1 arg2 ...] after `--`
    #[arg(last = true, hide = true)]
    pub exec: Vec<String>,
}

pub async fn run(ctx: &Ctx, mut a: LockArgs) -> Result<()> {
    a.args.append(&mut a.exec);
    if a.args.is_empty() {
        return Err(CtlError::bad_args(
            "lock takes a lock name argument and an optional command to execute",
        ));
    }
    let c = ctx.client()?;
    let p = ctx.printer()?;
    let mut s = Session::new(&c, a.ttl).await?;
    let pfx = format!("{}/", a.args[0]);
    let key = s.key(&pfx);
    let resp = session::create_key(&s, &key, b"", Some(&pfx)).await?;
    let mut my_rev = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
    if !resp.succeeded {
        my_rev = session::range_of(&resp, 0)
            .kvs
            .first()
            .map(|kv| kv.create_revision)
            .unwrap_or(my_rev);
    }
    let owner = session::range_of(&resp, 1);
    let mine = owner.kvs.is_empty() || owner.kvs[0].create_revision == my_rev;
    if !mine {
        tokio::select! {
            r = session::wait_deletes(&c, &pfx, my_rev - 1) => r?,
            _ = session::interrupted() => {
                let _ = session::delete(&c, &key).await;
                return Err(CtlError::error("context canceled"));
            }
        }
    }
    if a.args.len() > 1 {
        let status = std::process::Command::new(&a.args[1])
            .args(&a.args[2..])
            .env("ETCD_LOCK_KEY", String::from_utf8_lossy(&key).to_string())
            .env("ETCD_LOCK_REV", my_rev.to_string())
            .status();
        let unlock = session::delete(&c, &key).await;
        match status {
            Ok(st) if st.success() => {}
            Ok(st) => return Err(CtlError::error(format!("{st}"))),
            Err(e) => return Err(CtlError::error(e.to_string())),
        }
        return unlock;
    }
    let k = c
        .range(RangeRequest {
            key: key.clone(),
            ..Default::default()
        })
        .await?;
    if k.kvs.is_empty() {
        return Err(CtlError::error("lock lost on init"));
    }
    p.get(&k)?;
    tokio::select! {
        _ = session::interrupted() => session::delete(&c, &key).await,
        _ = s.done() => Err(CtlError::error("session expired")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: LockArgs,
    }

    #[test]
    fn parses_as_etcdctl() {
        let t = T::try_parse_from(["lock", "l", "--ttl=3", "echo", "hi"]).unwrap();
        assert_eq!(
            (t.a.ttl, t.a.args.clone()),
            (3, vec!["l".into(), "echo".into(), "hi".into()])
        );
        let t = T::try_parse_from(["lock", "l", "--", "sh", "-c", "x"]).unwrap();
        assert_eq!(t.a.exec, vec!["sh", "-c", "x"]);
        assert_eq!(t.a.ttl, 10);
        // As cobra: a dash argument before `--` is a flag.
        assert!(T::try_parse_from(["lock", "l", "sh", "-c", "x"]).is_err());
    }
}
