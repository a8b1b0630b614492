//! `keelctl inspect`: what etcdctl cannot show. `raft` (each member's Raft
//! state and the leader's view of replication, from keel's admin API),
//! `history` (every revision of a key still in history), `data-dir` (a
//! stopped member's files, offline), `tree` (the key space as a tree).
//!
//! Output: readable tables by default (bold headers on a terminal only,
//! and not when NO_COLOR is set), JSON with `-w json`.

pub mod data_dir;
pub mod history;
pub mod raft;
pub mod tree;

use std::io::IsTerminal;

use clap::{Args, Subcommand};

use crate::error::{CtlError, ExitCode, Result};
use crate::global::Ctx;

/// Inspects what etcdctl cannot show (keel's Raft state, key history, data dirs, the key tree)
#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    #[command(subcommand)]
    pub cmd: InspectCmd,
}

#[derive(Debug, Clone, Subcommand)]
pub enum InspectCmd {
    /// Each member's Raft role, term, leader, commit and applied index, log
    /// bounds and pending work; on the leader each member's progress
    Raft,
    /// Every revision of a key (or of the keys with a prefix) still in
    /// history, newest first, with the compaction point
    History(history::HistoryArgs),
    /// A stopped member's data dir: hard state, conf state, log bounds,
    /// snapshot, MVCC revisions, key count, sizes, and a consistency check
    #[command(name = "data-dir")]
    DataDir(data_dir::DataDirArgs),
    /// The key space (or the keys under a prefix) as a tree split on `/`,
    /// with key counts and byte sizes per branch; JSON values pretty-printed
    Tree(tree::TreeArgs),
}

/// `-w` for inspect: table (also for "simple") or json.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Table,
    Json,
}

pub fn style(ctx: &Ctx) -> Result<Style> {
    match ctx.g.write_out.as_str() {
        "simple" | "table" => Ok(Style::Table),
        "json" => Ok(Style::Json),
        other => Err(CtlError::new(
            ExitCode::BadFeature,
            format!("{other} not supported as output format for inspect (table or json)"),
        )),
    }
}

/// Whether to colour: stdout is a terminal and NO_COLOR is not set.
pub fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// `s` in bold when colouring.
pub fn bold(s: &str) -> String {
    if colour() {
        format!("\x1b[1m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

/// A titled table.
pub fn print_table(title: &str, hdr: &[&str], rows: &[Vec<String>]) {
    crate::outln!("{}", bold(title));
    let mut t = crate::output::table::render_aligned(hdr, rows, true);
    if rows.is_empty() {
        t.push_str("(none)\n");
    }
    crate::output::out(t);
}

pub async fn run(ctx: &Ctx, a: InspectArgs) -> Result<()> {
    match a.cmd {
        InspectCmd::Raft => raft::run(ctx).await,
        InspectCmd::History(h) => history::run(ctx, h).await,
        InspectCmd::DataDir(d) => data_dir::run(ctx, d),
        InspectCmd::Tree(t) => tree::run(ctx, t).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> InspectCmd {
        let args = std::iter::once("keelctl")
            .chain(s.split_whitespace())
            .map(Into::into)
            .collect();
        match crate::parse(args).unwrap().0.cmd {
            crate::cmd::Command::Inspect(a) => a.cmd,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses() {
        assert!(matches!(parse("inspect raft"), InspectCmd::Raft));
        let InspectCmd::History(h) = parse("inspect history /a --prefix") else {
            panic!()
        };
        assert_eq!((h.key.as_str(), h.prefix), ("/a", true));
        let InspectCmd::Tree(t) = parse("inspect tree /r/ --no-values") else {
            panic!()
        };
        assert_eq!((t.prefix.as_deref(), t.no_values), (Some("/r/"), true));
        assert!(matches!(
            parse("inspect tree"),
            InspectCmd::Tree(tree::TreeArgs { prefix: None, .. })
        ));
        let InspectCmd::DataDir(d) = parse("inspect data-dir /x") else {
            panic!()
        };
        assert_eq!(d.path, std::path::PathBuf::from("/x"));
    }
}
