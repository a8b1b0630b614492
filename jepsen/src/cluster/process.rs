//! Process control of the members: spawn (log appended, data dir kept), SIGKILL,
//! SIGSTOP / SIGCONT (by pid, through the `kill` command), health and leader
//! through the members' HTTP endpoints, and crash detection.

use std::fs::OpenOptions;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use super::{http, log_tail, Cluster, Proc, HTTP_TIMEOUT};
use crate::db::MemberSpec;
use crate::error::harness;
use crate::Result;

impl Cluster {
    pub(super) fn procs(&self) -> MutexGuard<'_, Vec<Proc>> {
        self.procs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts member `i` unless it is running or removed from the cluster
    /// (see [`Cluster::rejoin_member`]). A member that rejoined starts with
    /// `--initial-cluster-state existing` and the initial cluster it joined.
    pub fn spawn(&self, i: usize) -> Result<()> {
        let mut procs = self.procs();
        if procs[i].child.is_some() || procs[i].removed {
            return Ok(());
        }
        let m = &self.members[i];
        let spec = MemberSpec {
            name: m.name.clone(),
            client_url: m.endpoint(),
            peer_url: format!("http://{}", m.peer),
            data_dir: m.data_dir.clone(),
        };
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .map_err(harness)?;
        let joining = if procs[i].joined.is_some() {
            " (added back: --initial-cluster-state existing)"
        } else {
            ""
        };
        let _ = writeln!(log, "=== keel-jepsen: starting {}{joining} ===", m.name);
        let mut argv: Vec<String> = match &self.netns {
            Some(n) => n.exec_prefix(i),
            None => Vec::new(),
        };
        let mut cluster = self.spec.clone();
        if let Some(joined) = &procs[i].joined {
            cluster.initial_cluster = joined.clone();
            cluster.existing = true;
        }
        argv.push(self.db.binary().display().to_string());
        argv.extend(self.db.args(&spec, &cluster));
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .envs(self.db.env())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(harness)?)
            .stderr(log)
            .spawn()
            .map_err(|e| harness(format!("cannot start {}: {e}", argv.join(" "))))?;
        procs[i].child = Some(child);
        procs[i].paused = false;
        Ok(())
    }

    /// SIGKILLs member `i` (if running) and reaps it.
    pub fn kill(&self, i: usize) {
        self.stop(i, true);
    }

    /// SIGKILLs and reaps member `i`; if it had exited on its own and
    /// `note_crash`, that is remembered as a crash (a removed member may stop
    /// by itself: that is not one).
    pub(super) fn stop(&self, i: usize, note_crash: bool) {
        let mut procs = self.procs();
        if let Some(mut c) = procs[i].child.take() {
            if let Ok(Some(status)) = c.try_wait() {
                if note_crash {
                    self.lost(i, status.to_string());
                }
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        procs[i].paused = false;
    }

    fn lost(&self, i: usize, status: String) {
        let text = format!(
            "{} exited on its own ({status}); log tail:\n{}",
            self.members[i].name,
            self.log_tail(i, 10)
        );
        self.crashed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(text);
    }

    /// SIGSTOPs member `i`.
    pub fn pause(&self, i: usize) -> Result<()> {
        self.signal(i, "STOP", true)
    }

    /// SIGCONTs member `i`.
    pub fn resume(&self, i: usize) -> Result<()> {
        self.signal(i, "CONT", false)
    }

    fn signal(&self, i: usize, sig: &str, paused: bool) -> Result<()> {
        let mut procs = self.procs();
        let Some(child) = procs[i].child.as_ref() else {
            return Ok(());
        };
        let pid = child.id().to_string();
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .map_err(harness)?;
        if !st.success() {
            return Err(harness(format!("kill -{sig} {pid} failed")));
        }
        procs[i].paused = paused;
        Ok(())
    }

    /// Running and not paused.
    pub fn is_up(&self, i: usize) -> bool {
        let p = &self.procs()[i];
        p.child.is_some() && !p.paused
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.procs()[i].child.is_some()
    }

    pub fn is_paused(&self, i: usize) -> bool {
        self.procs()[i].paused
    }

    /// `/health` says true.
    pub fn healthy(&self, i: usize) -> bool {
        http::healthy(self.members[i].client, HTTP_TIMEOUT)
    }

    /// Waits for member `i` to be healthy; on timeout, an error with its log tail.
    pub fn wait_healthy(&self, i: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.healthy(i) {
                return Ok(());
            }
            if let Some(status) = self.exited(i) {
                return Err(harness(format!(
                    "member {} exited ({status}); log:\n{}",
                    self.members[i].name,
                    log_tail(&self.members[i].log, 30)
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(harness(format!(
            "member {} not healthy after {timeout:?}; log:\n{}",
            self.members[i].name,
            log_tail(&self.members[i].log, 30)
        )))
    }

    /// If member `i`'s process has exited on its own, how.
    pub fn exited(&self, i: usize) -> Option<String> {
        let mut procs = self.procs();
        let c = procs[i].child.as_mut()?;
        match c.try_wait() {
            Ok(Some(st)) => {
                procs[i].child = None;
                Some(st.to_string())
            }
            _ => None,
        }
    }

    /// Members whose process exited without the harness killing it (a crash),
    /// each with its exit status and log tail; they are reaped, so a later
    /// [`Cluster::heal_all`] restarts them.
    pub fn crashes(&self) -> Vec<String> {
        for i in 0..self.len() {
            if let Some(status) = self.exited(i) {
                self.lost(i, status);
            }
        }
        std::mem::take(&mut *self.crashed.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The member that says it leads, among those up.
    pub fn leader(&self) -> Option<usize> {
        (0..self.len())
            .filter(|&i| self.is_up(i))
            .find(|&i| http::is_leader(self.members[i].client, HTTP_TIMEOUT))
    }
}
