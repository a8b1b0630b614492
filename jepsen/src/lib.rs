//! keel-jepsen: chaos and linearizability testing for keel and etcd.
//!
//! This first part is the linearizability checker: [`history`] reads histories
//! (keel's JSON lines and Porcupine's two formats), [`model`] holds sequential
//! specifications, [`checker`] decides whether a history is linearizable and, if
//! not, reports the smallest window that is not, and [`bench`] times it on
//! Porcupine's data. The cluster harness, nemeses and workloads come later.
//!
//! Invariant: a verdict of `false` is always backed by an exhaustive search of
//! some partition; `true` means every partition has a linearization.

pub mod bench;
pub mod checker;
mod error;
pub mod hash;
pub mod history;
pub mod model;

pub use checker::{check, Options, Verdict};
pub use error::{Error, Result};
pub use history::History;

/// The models known by name on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    Register,
    Kv,
}

impl ModelKind {
    /// Checks `history` against this model.
    pub fn check(self, history: &History, opts: &Options) -> Result<Verdict> {
        match self {
            ModelKind::Register => check(&model::register::Register, history, opts),
            ModelKind::Kv => check(&model::kv::Kv, history, opts),
        }
    }
}
