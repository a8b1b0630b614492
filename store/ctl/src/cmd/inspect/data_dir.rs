//! `inspect data-dir PATH`: a stopped member's data dir, read offline with
//! keel-store's own code (the Raft log storage and the MVCC store): hard
//! state, conf state, log bounds and terms, last snapshot, MVCC revision
//! range, key count, sizes, and a consistency check of what the files hold.
//!
//! The member must be stopped (sled locks the directory; a running member
//! makes this fail with "in use"). The Raft log is read from the member's
//! write-ahead log (`member/wal`) without changing it.

use std::path::{Path, PathBuf};

use clap::Args;
use keel_store::mvcc::Store;
use keel_store::raftlog::RaftStorage;
use serde_json::json;

use super::{bold, print_table, Style};
use crate::error::{CtlError, Result};
use crate::global::Ctx;
use crate::outln;
use crate::output::go::humanize_bytes;

/// inspect data-dir PATH
#[derive(Debug, Clone, Args)]
pub struct DataDirArgs {
    /// The member's --data-dir (the member must be stopped)
    pub path: PathBuf,
}

/// What a data dir holds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub path: String,
    pub hard_state: (u64, u64, u64),
    pub voters: Vec<String>,
    pub learners: Vec<String>,
    pub first_index: u64,
    pub first_term: u64,
    pub last_index: u64,
    pub last_term: u64,
    pub snapshot_index: u64,
    pub snapshot_term: u64,
    pub applied_index: u64,
    pub current_revision: i64,
    pub compact_revision: i64,
    pub keys: usize,
    pub backend_bytes: u64,
    pub backend_bytes_in_use: u64,
    pub files_bytes: u64,
    pub snapshot_files: Vec<(String, u64)>,
    /// Problems found; empty when consistent.
    pub problems: Vec<String>,
}

fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Reads and checks the data dir at `path`.
pub fn inspect(path: &Path) -> Result<Report> {
    let member = path.join("member");
    if !member.join("db").is_dir() {
        return Err(CtlError::error(format!(
            "{} is not a keel data dir (no member/db)",
            path.display()
        )));
    }
    let db = sled::Config::new()
        .path(member.join("db"))
        .open()
        .map_err(|e| {
            CtlError::error(format!(
                "cannot open {} (is the member stopped?): {e}",
                path.display()
            ))
        })?;
    let err = |e: keel_store::Error| CtlError::error(e.to_string());
    let storage = RaftStorage::read_only(&member.join("wal"), Some(&db)).map_err(err)?;
    let backend = keel_store::server::open_backend_read_only(&db, &member).map_err(err)?;
    let store = Store::open(backend).map_err(err)?;
    let hs = storage.hard_state().clone();
    let cs = storage.conf_state().clone();
    let snap = storage.snapshot_metadata().clone();
    let first = storage.first_index();
    let last = storage.last_index();
    let term = |i: u64| storage.term(i).unwrap_or(0);
    let mut problems = Vec::new();
    if last + 1 < first {
        problems.push(format!(
            "log bounds: last index {last} < first index {first} - 1"
        ));
    }
    if hs.commit > last {
        problems.push(format!(
            "commit index {} is past the log's last index {last}",
            hs.commit
        ));
    }
    if hs.commit < snap.index {
        problems.push(format!(
            "commit index {} is below the snapshot index {}",
            hs.commit, snap.index
        ));
    }
    // The hard state's commit index is synced only with entries (as etcd's
    // MustSync), so after a crash it may be behind what the state machine
    // applied; keel then takes the applied index as committed. Applied
    // entries missing from the log are a real loss.
    let applied = store.consistent_index();
    if applied > last.max(snap.index) {
        problems.push(format!(
            "applied index {applied} is past the log's last index {last}"
        ));
    }
    if store.current_revision() < store.compact_revision() {
        problems.push(format!(
            "revision {} is below the compaction point {}",
            store.current_revision(),
            store.compact_revision()
        ));
    }
    // Every entry readable, indexes contiguous, terms never decreasing and
    // never above the hard state's term.
    let mut prev_term = snap.term;
    let mut i = first;
    while i <= last {
        let hi = (i + 1024).min(last + 1);
        let es = match storage.entries(i, hi) {
            Ok(es) => es,
            Err(e) => {
                problems.push(format!("entries {i}..{hi}: {e}"));
                Vec::new()
            }
        };
        for (k, e) in es.iter().enumerate() {
            if e.index != i + k as u64 {
                problems.push(format!("entry at {} has index {}", i + k as u64, e.index));
            }
            if e.term < prev_term {
                problems.push(format!(
                    "entry {} has term {} after term {prev_term}",
                    e.index, e.term
                ));
            }
            if e.term > hs.term {
                problems.push(format!(
                    "entry {} has term {} above the hard state's {}",
                    e.index, e.term, hs.term
                ));
            }
            prev_term = e.term;
        }
        if es.len() as u64 != hi - i {
            problems.push(format!(
                "entries {i}..{hi}: {} of {} readable",
                es.len(),
                hi - i
            ));
        }
        i = hi;
    }
    let ids = |v: &[u64]| v.iter().map(|x| format!("{x:x}")).collect::<Vec<_>>();
    let snap_dir = member.join("snap");
    let snapshot_files = std::fs::read_dir(&snap_dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        e.metadata().map(|m| m.len()).unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Report {
        path: path.display().to_string(),
        hard_state: (hs.term, hs.vote, hs.commit),
        voters: ids(&cs.voters),
        learners: ids(&cs.learners),
        first_index: first,
        first_term: if first <= last { term(first) } else { 0 },
        last_index: last,
        last_term: term(last),
        snapshot_index: snap.index,
        snapshot_term: snap.term,
        applied_index: applied,
        current_revision: store.current_revision(),
        compact_revision: store.compact_revision(),
        keys: store.key_count(),
        backend_bytes: store.size_bytes().unwrap_or(0),
        backend_bytes_in_use: store.size_in_use(),
        files_bytes: dir_size(path),
        snapshot_files,
        problems,
    })
}

pub fn run(ctx: &Ctx, a: DataDirArgs) -> Result<()> {
    let style = super::style(ctx)?;
    let r = inspect(&a.path)?;
    match style {
        Style::Json => outln!("{}", json!(r)),
        Style::Table => {
            let rows = vec![
                vec![
                    "hard state".into(),
                    format!(
                        "term {}, vote {:x}, commit {}",
                        r.hard_state.0, r.hard_state.1, r.hard_state.2
                    ),
                ],
                vec![
                    "conf state".into(),
                    format!(
                        "voters [{}], learners [{}]",
                        r.voters.join(" "),
                        r.learners.join(" ")
                    ),
                ],
                vec![
                    "log".into(),
                    format!(
                        "first index {} (term {}), last index {} (term {})",
                        r.first_index, r.first_term, r.last_index, r.last_term
                    ),
                ],
                vec![
                    "snapshot".into(),
                    format!("index {}, term {}", r.snapshot_index, r.snapshot_term),
                ],
                vec!["applied".into(), format!("index {}", r.applied_index)],
                vec![
                    "mvcc".into(),
                    format!(
                        "revisions {}..{} (compacted at {}), {} keys",
                        r.compact_revision, r.current_revision, r.compact_revision, r.keys
                    ),
                ],
                vec![
                    "sizes".into(),
                    format!(
                        "backend {} ({} in use), files {}",
                        humanize_bytes(r.backend_bytes),
                        humanize_bytes(r.backend_bytes_in_use),
                        humanize_bytes(r.files_bytes)
                    ),
                ],
            ];
            print_table(&format!("Data dir {}", r.path), &["What", "Value"], &rows);
            let snaps: Vec<Vec<String>> = r
                .snapshot_files
                .iter()
                .map(|(n, s)| vec![n.clone(), humanize_bytes(*s)])
                .collect();
            print_table("Snapshot files", &["File", "Size"], &snaps);
            if r.problems.is_empty() {
                outln!("{}", bold("consistency check: ok"));
            } else {
                outln!("{}", bold("consistency check: FAILED"));
                for p in &r.problems {
                    outln!("  - {p}");
                }
            }
        }
    }
    if !r.problems.is_empty() {
        return Err(CtlError::error(format!(
            "data dir {}: {} consistency problem(s)",
            r.path,
            r.problems.len()
        )));
    }
    Ok(())
}
