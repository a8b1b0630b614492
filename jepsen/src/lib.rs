//! keel-jepsen: chaos and linearizability testing for keel and etcd.
//!
//! The checker: [`history`] reads histories (keel's JSON lines and Porcupine's
//! two formats), [`model`] holds sequential specifications, [`checker`] decides
//! whether a history is linearizable and, if not, reports the smallest window
//! that is not, and [`bench`] times it on Porcupine's data.
//!
//! The harness: [`db`] describes the databases (keel, etcd), [`cluster`] runs
//! their members as processes (loopback or network namespaces), [`nemesis`]
//! injects and heals faults on a schedule, [`workload`] drives clients and
//! checks what they saw ([`elle`] and [`watchcheck`] are the checkers of two of
//! them), [`recorder`] writes the history, [`run`] ties one test
//! run together and [`html`] draws its report.
//!
//! Invariant: a verdict of `false` is always backed by an exhaustive search of
//! some partition; `true` means every partition has a linearization.

pub mod bench;
pub mod checker;
pub mod cluster;
pub mod db;
pub mod elle;
mod error;
pub mod hash;
pub mod history;
pub mod html;
pub mod model;
pub mod nemesis;
pub mod recorder;
pub mod run;
pub mod watchcheck;
pub mod workload;

pub use checker::{check, Options, Verdict};
pub use error::{Error, Result};
pub use history::History;

/// The models known by name on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    Register,
    Kv,
    Mutex,
}

impl ModelKind {
    /// Checks `history` against this model.
    pub fn check(self, history: &History, opts: &Options) -> Result<Verdict> {
        match self {
            ModelKind::Register => check(&model::register::Register, history, opts),
            ModelKind::Kv => check(&model::kv::Kv, history, opts),
            ModelKind::Mutex => check(&model::mutex::Mutex, history, opts),
        }
    }
}
