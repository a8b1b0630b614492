//! Member configuration: etcd's flag names, a YAML config file and `KEEL_*`
//! environment variables, resolved into one validated [`Config`].
//!
//! Precedence: command line > `KEEL_*` environment > `--config-file` > defaults.
//! The config file is YAML with the flag names as keys (as etcd's), e.g.
//! `name: n1` or `initial-cluster: "n1=http://127.0.0.1:2380"`.
//!
//! Member and cluster ids are derived from the flags, deterministically, the way
//! etcd derives them (a hash of the member's peer URLs and the cluster token; the
//! cluster id from the sorted member ids), so every member computes the same ids.
//!
//! Durations of etcd's own flags that keel copies with their Go meaning
//! (`--auto-compaction-retention`, `--experimental-corrupt-check-time`) are
//! parsed with Go's `time.ParseDuration` rules ([`parse_go_duration`]).
//!
//! The auth flags (`--auth-token`, `--auth-token-ttl`, `--bcrypt-cost`) are
//! [`crate::auth::AuthFlags`].
//!
//! URLs are `http://` or `https://`; the TLS flags (`--cert-file` ...) are
//! [`crate::tls::TlsFlags`], checked against the URLs here.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::error::{Error, Result};
use crate::maintenance::compactor::AutoCompaction;

/// sled's cache when `--backend-cache-bytes` is not given.
pub const DEFAULT_BACKEND_CACHE_BYTES: u64 = 96 * 1024 * 1024;

/// The MVCC backend kinds (`--backend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// Append-only files with an in-memory index ([`crate::mvcc::LogBackend`]).
    Log,
    /// A sled tree ([`crate::mvcc::SledBackend`]).
    Sled,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Log => "log",
            BackendKind::Sled => "sled",
        }
    }

    /// The kind [`BackendKind::name`] names.
    pub fn from_name(name: &[u8]) -> Option<BackendKind> {
        <BackendKind as clap::ValueEnum>::value_variants()
            .iter()
            .copied()
            .find(|k| k.name().as_bytes() == name)
    }
}

/// A member id (raft node id). Never 0.
pub type MemberId = u64;
/// A cluster id.
pub type ClusterId = u64;

/// The flags of `keel store` (and, with other defaults, `keel server`).
#[derive(Args, Debug, Clone)]
pub struct StoreFlags {
    /// Human-readable name for this member.
    #[arg(long, env = "KEEL_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory [default: <name>.keel].
    #[arg(long, env = "KEEL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Comma-separated URLs to listen on for client traffic.
    #[arg(
        long,
        env = "KEEL_LISTEN_CLIENT_URLS",
        default_value = "http://127.0.0.1:2379"
    )]
    pub listen_client_urls: String,
    /// Comma-separated client URLs to advertise to the rest of the cluster [default: the listen URLs].
    #[arg(long, env = "KEEL_ADVERTISE_CLIENT_URLS")]
    pub advertise_client_urls: Option<String>,
    /// Comma-separated URLs to listen on for peer (Raft) traffic.
    #[arg(
        long,
        env = "KEEL_LISTEN_PEER_URLS",
        default_value = "http://127.0.0.1:2380"
    )]
    pub listen_peer_urls: String,
    /// This member's peer URLs to advertise to the rest of the cluster [default: the listen peer URLs].
    #[arg(long, env = "KEEL_INITIAL_ADVERTISE_PEER_URLS")]
    pub initial_advertise_peer_urls: Option<String>,
    /// Initial cluster configuration for bootstrapping: name=peer-url,... [default: <name>=<advertise peer URLs>].
    #[arg(long, env = "KEEL_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Initial cluster state ('new' or 'existing').
    #[arg(long, env = "KEEL_INITIAL_CLUSTER_STATE", default_value = "new")]
    pub initial_cluster_state: String,
    /// Initial cluster token, so that clusters started from the same flags get different ids.
    #[arg(
        long,
        env = "KEEL_INITIAL_CLUSTER_TOKEN",
        default_value = "etcd-cluster"
    )]
    pub initial_cluster_token: String,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "KEEL_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, env = "KEEL_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "KEEL_MAX_REQUEST_BYTES", default_value_t = 1_572_864)]
    pub max_request_bytes: usize,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long, env = "KEEL_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: usize,
    /// Reject reconfiguration requests that would cause quorum loss.
    #[arg(
        long,
        env = "KEEL_STRICT_RECONFIG_CHECK",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub strict_reconfig_check: bool,
    /// keel only: the leader answers linearizable reads (ReadIndex) from a lease a quorum confirmed less than election-timeout minus two heartbeats ago, instead of a round of heartbeats per read; members then ignore votes for an election timeout after they start (false: a round per read, as etcd).
    #[arg(
        long,
        env = "KEEL_LEADER_READ_LEASE",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub leader_read_lease: bool,
    /// keel only: Raft messages to peers reached over http:// travel on a plain TCP connection the Raft thread writes itself (the Raft lane), not on the gRPC stream; https:// peers always use the gRPC stream (false: the gRPC stream for every peer).
    #[arg(
        long,
        env = "KEEL_RAFT_LANE",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub raft_lane: bool,
    /// Number of committed transactions to trigger a snapshot to disk (log compaction).
    #[arg(long, env = "KEEL_SNAPSHOT_COUNT", default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Authentication: token type and TTL, bcrypt cost.
    #[command(flatten)]
    pub auth: crate::auth::AuthFlags,
    /// Number of entries kept in the Raft log after a truncation, for slow followers to catch up without a snapshot.
    #[arg(
        long,
        env = "KEEL_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES",
        default_value_t = 5_000
    )]
    pub experimental_snapshot_catchup_entries: u64,
    /// How long the Raft thread may spin on its queue before it sleeps (as leader, or as a follower waiting for a ReadIndex), while recent waits were shorter and found fewer than two client requests queued; on a lone member, a lone request's task polls as long for its reply (e.g. 500us; 0s: never spin).
    #[arg(long, env = "KEEL_EXPERIMENTAL_RAFT_SPIN", default_value = "500us", value_parser = parse_duration_or_zero)]
    pub experimental_raft_spin: Duration,
    /// Duration of periodic watch progress notifications (e.g. 10m, 30s, 500ms).
    #[arg(long, env = "KEEL_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub experimental_watch_progress_notify_interval: Duration,
    /// Raise alarms when backend size exceeds the given quota. 0 means use the default quota (2 GiB); a negative value disables it.
    #[arg(
        long,
        env = "KEEL_QUOTA_BACKEND_BYTES",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub quota_backend_bytes: i64,
    /// keel only: bytes of sled's page cache (the MVCC data kept in memory; the rest is read from disk).
    #[arg(long, env = "KEEL_BACKEND_CACHE_BYTES", default_value_t = DEFAULT_BACKEND_CACHE_BYTES)]
    pub backend_cache_bytes: u64,
    /// keel only: where a new member keeps the MVCC data: `log` (append-only files with an
    /// in-memory index) or `sled` (a B-tree). A data dir keeps the kind it was created with.
    #[arg(long, env = "KEEL_BACKEND", value_enum, default_value_t = BackendKind::Log)]
    pub backend: BackendKind,
    /// Interpret 'auto-compaction-retention' one of: periodic|revision. 'periodic' for duration based retention, defaulting to hours if no time unit is provided (e.g. '5m'). 'revision' for revision number based retention.
    #[arg(long, env = "KEEL_AUTO_COMPACTION_MODE", default_value = "periodic")]
    pub auto_compaction_mode: String,
    /// Auto compaction retention for mvcc key value store. 0 means disable auto compaction.
    #[arg(long, env = "KEEL_AUTO_COMPACTION_RETENTION", default_value = "0")]
    pub auto_compaction_retention: String,
    /// Duration of time between cluster corruption check passes (0s: off).
    #[arg(
        long,
        env = "KEEL_EXPERIMENTAL_CORRUPT_CHECK_TIME",
        default_value = "0s"
    )]
    pub experimental_corrupt_check_time: String,
    /// Test-only: how often revision-mode auto compaction runs (etcd: 5m, fixed).
    #[arg(
        long,
        env = "KEEL_UNSAFE_REVISION_COMPACTION_INTERVAL",
        default_value = "5m",
        value_parser = parse_duration,
        hide = true
    )]
    pub unsafe_revision_compaction_interval: Duration,
    /// Path to a YAML config file whose keys are these flag names.
    #[arg(long, env = "KEEL_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    /// Log level: debug, info, warn, error.
    #[arg(long, env = "KEEL_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Test-only: serve /debug/fault endpoints that cut peer links. Never in production.
    #[arg(
        long,
        env = "KEEL_UNSAFE_FAULT_HOOKS",
        default_value_t = false,
        hide = true
    )]
    pub unsafe_fault_hooks: bool,
    /// Test-only, deliberately UNSAFE: serve linearizable reads from local state
    /// without ReadIndex (stale reads), so the jepsen harness can prove it notices.
    #[arg(
        long,
        env = "KEEL_UNSAFE_STALE_READS",
        default_value_t = false,
        hide = true
    )]
    pub unsafe_stale_reads: bool,
    /// Test-only: abort the process in the middle of installing a received
    /// snapshot (state replaced, Raft log not yet), to test crash recovery.
    #[arg(
        long,
        env = "KEEL_UNSAFE_CRASH_IN_SNAPSHOT_INSTALL",
        default_value_t = false,
        hide = true
    )]
    pub unsafe_crash_in_snapshot_install: bool,
    /// TLS on the client and peer ports.
    #[command(flatten)]
    pub tls: crate::tls::TlsFlags,
}

/// A listen URL: the address to bind, and whether it is `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub addr: std::net::SocketAddr,
    pub https: bool,
}

/// One member of the cluster as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberConfig {
    pub id: MemberId,
    pub name: String,
    pub peer_urls: Vec<String>,
}

/// The validated configuration of one member.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client: Vec<Listen>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer: Vec<Listen>,
    pub advertise_peer_urls: Vec<String>,
    pub initial_cluster: Vec<MemberConfig>,
    pub new_cluster: bool,
    pub cluster_token: String,
    pub member_id: MemberId,
    pub cluster_id: ClusterId,
    pub heartbeat: Duration,
    pub election_ticks: usize,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    pub snapshot_count: u64,
    /// Auth token TTL and bcrypt cost (see [`crate::auth`]).
    pub auth: crate::auth::Settings,
    pub snapshot_catchup_entries: u64,
    /// `--experimental-raft-spin`: see [`crate::consensus::spin`].
    pub raft_spin: Duration,
    /// `--leader-read-lease`: see [`crate::consensus::lease`].
    pub leader_read_lease: bool,
    /// `--raft-lane`: see [`crate::lane`].
    pub raft_lane: bool,
    pub strict_reconfig_check: bool,
    pub watch_progress_notify_interval: Duration,
    /// `--quota-backend-bytes` as given (0: default, negative: no quota).
    pub quota_backend_bytes: i64,
    /// `--backend-cache-bytes`: sled's cache capacity.
    pub backend_cache_bytes: u64,
    /// `--backend`: the MVCC backend of a new data dir.
    pub backend: BackendKind,
    /// Automatic compaction, if on.
    pub auto_compaction: Option<AutoCompaction>,
    /// How often the leader compares hashes with the other members, if at all.
    pub corrupt_check_interval: Option<Duration>,
    /// How often revision-mode auto compaction runs (5 minutes but in tests).
    pub revision_compaction_interval: Duration,
    pub log_level: String,
    pub unsafe_fault_hooks: bool,
    pub unsafe_stale_reads: bool,
    pub unsafe_crash_in_snapshot_install: bool,
    /// TLS settings of both ports (see [`crate::tls`]).
    pub tls: crate::tls::Settings,
}

impl Config {
    /// Election timeout as a duration.
    pub fn election_timeout(&self) -> Duration {
        self.heartbeat * self.election_ticks as u32
    }

    /// How long a client request waits for its proposal or read before
    /// "request timed out" (etcd: 5 s plus two election timeouts).
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(5) + 2 * self.election_timeout()
    }
}

impl StoreFlags {
    /// Validates the flags and derives ids.
    pub fn into_config(self) -> Result<Config> {
        let bad = |m: String| Error::Config(m);
        if self.heartbeat_interval == 0 {
            return Err(bad("--heartbeat-interval must be > 0".into()));
        }
        if self.election_timeout < 5 * self.heartbeat_interval {
            return Err(bad(format!(
                "--election-timeout[{}ms] should be at least 5 times as --heartbeat-interval[{}ms]",
                self.election_timeout, self.heartbeat_interval
            )));
        }
        if self.election_timeout > 50_000 {
            return Err(bad(format!(
                "--election-timeout[{}ms] is too long, and should be set less than 50000ms",
                self.election_timeout
            )));
        }
        let new_cluster = match self.initial_cluster_state.as_str() {
            "new" => true,
            "existing" => false,
            other => {
                return Err(bad(format!(
                    "--initial-cluster-state: invalid value {other:?} (want 'new' or 'existing')"
                )))
            }
        };
        if self.max_request_bytes == 0 {
            return Err(bad("--max-request-bytes must be > 0".into()));
        }
        let auto_compaction =
            parse_auto_compaction(&self.auto_compaction_mode, &self.auto_compaction_retention)?;
        let corrupt_check =
            parse_go_duration(&self.experimental_corrupt_check_time).map_err(|e| {
                bad(format!(
                    "invalid value {:?} for flag -experimental-corrupt-check-time: {e}",
                    self.experimental_corrupt_check_time
                ))
            })?;
        if corrupt_check < 0 {
            return Err(bad(
                "--experimental-corrupt-check-time must not be negative".into(),
            ));
        }
        let corrupt_check_interval =
            (corrupt_check > 0).then(|| Duration::from_nanos(corrupt_check as u64));
        let listen_client = parse_listen_urls("--listen-client-urls", &self.listen_client_urls)?;
        let listen_peer = parse_listen_urls("--listen-peer-urls", &self.listen_peer_urls)?;
        let advertise_client_urls = match &self.advertise_client_urls {
            Some(s) => split_urls("--advertise-client-urls", s)?,
            None => split_urls("--listen-client-urls", &self.listen_client_urls)?,
        };
        let advertise_peer_urls = match &self.initial_advertise_peer_urls {
            Some(s) => split_urls("--initial-advertise-peer-urls", s)?,
            None => split_urls("--listen-peer-urls", &self.listen_peer_urls)?,
        };
        let initial_cluster_text = self
            .initial_cluster
            .clone()
            .unwrap_or_else(|| format!("{}={}", self.name, advertise_peer_urls.join(",")));
        let initial_cluster =
            parse_initial_cluster(&initial_cluster_text, &self.initial_cluster_token)?;
        let me = initial_cluster
            .iter()
            .find(|m| m.name == self.name)
            .ok_or_else(|| {
                bad(format!(
                    "couldn't find local name {:?} in the initial cluster configuration",
                    self.name
                ))
            })?;
        let mut mine = advertise_peer_urls.clone();
        mine.sort();
        if me.peer_urls != mine {
            return Err(bad(format!(
                "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={} (\"{}\"(resolved from {:?}) != \"{}\"(resolved from {:?}))",
                self.name,
                me.peer_urls.join(","),
                advertise_peer_urls.join(","),
                mine.join(","),
                mine,
                me.peer_urls.join(","),
                me.peer_urls
            )));
        }
        let member_id = me.id;
        let cluster_id = cluster_id_of(&initial_cluster);
        let tls = {
            let listen_client = split_urls("--listen-client-urls", &self.listen_client_urls)?;
            let listen_peer = split_urls("--listen-peer-urls", &self.listen_peer_urls)?;
            let cluster_peers: Vec<String> = initial_cluster
                .iter()
                .flat_map(|m| m.peer_urls.iter().cloned())
                .collect();
            self.tls.into_settings(crate::tls::Urls {
                listen_client: &listen_client,
                advertise_client: &advertise_client_urls,
                listen_peer: &listen_peer,
                advertise_peer: &advertise_peer_urls,
                cluster_peers: &cluster_peers,
            })?
        };
        let data_dir = self
            .data_dir
            .unwrap_or_else(|| PathBuf::from(format!("{}.keel", self.name)));
        Ok(Config {
            name: self.name,
            data_dir,
            listen_client,
            advertise_client_urls,
            listen_peer,
            advertise_peer_urls,
            initial_cluster,
            new_cluster,
            cluster_token: self.initial_cluster_token,
            member_id,
            cluster_id,
            heartbeat: Duration::from_millis(self.heartbeat_interval),
            election_ticks: (self.election_timeout / self.heartbeat_interval) as usize,
            max_request_bytes: self.max_request_bytes,
            max_txn_ops: self.max_txn_ops,
            // etcd: 0 means the default.
            snapshot_count: if self.snapshot_count == 0 {
                100_000
            } else {
                self.snapshot_count
            },
            auth: self.auth.into_settings()?,
            snapshot_catchup_entries: self.experimental_snapshot_catchup_entries,
            raft_spin: self.experimental_raft_spin,
            leader_read_lease: self.leader_read_lease,
            raft_lane: self.raft_lane,
            strict_reconfig_check: self.strict_reconfig_check,
            watch_progress_notify_interval: self.experimental_watch_progress_notify_interval,
            quota_backend_bytes: self.quota_backend_bytes,
            backend_cache_bytes: self.backend_cache_bytes,
            backend: self.backend,
            auto_compaction,
            corrupt_check_interval,
            revision_compaction_interval: self.unsafe_revision_compaction_interval,
            log_level: self.log_level,
            unsafe_fault_hooks: self.unsafe_fault_hooks,
            unsafe_stale_reads: self.unsafe_stale_reads,
            unsafe_crash_in_snapshot_install: self.unsafe_crash_in_snapshot_install,
            tls,
        })
    }
}

/// A duration that may be zero (`0s` turns the setting off).
fn parse_duration_or_zero(s: &str) -> std::result::Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Parses a duration as etcd's flags take them ("10m", "1m30s", "500ms").
fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let d = parse_duration_or_zero(s)?;
    if d.is_zero() {
        return Err(format!("invalid duration {s:?}: must be > 0"));
    }
    Ok(d)
}

/// `--auto-compaction-mode` and `--auto-compaction-retention` as etcd 3.4
/// reads them (its `parseCompactionRetention`): a non-negative integer is a
/// number of revisions (revision mode) or of hours (periodic mode); anything
/// else is a Go duration, which in revision mode counts its nanoseconds as
/// revisions (etcd's quirk, kept). 0 turns automatic compaction off.
pub fn parse_auto_compaction(mode: &str, retention: &str) -> Result<Option<AutoCompaction>> {
    let bad = |m: String| Error::Config(m);
    if !matches!(mode, "" | "periodic" | "revision") {
        return Err(bad(format!("unknown auto-compaction-mode {mode:?}")));
    }
    let amount: i64 = match parse_go_int(retention) {
        Some(n) if n >= 0 => match mode {
            "revision" => n,
            "periodic" => n
                .checked_mul(3_600_000_000_000)
                .ok_or_else(|| bad(format!("--auto-compaction-retention {n}: too many hours")))?,
            _ => 0,
        },
        _ => parse_go_duration(retention)
            .map_err(|e| bad(format!("error parsing CompactionRetention: {e}")))?,
    };
    if amount == 0 {
        return Ok(None);
    }
    match mode {
        "revision" => Ok(Some(AutoCompaction::Revision(amount))),
        "periodic" if amount > 0 => Ok(Some(AutoCompaction::Periodic(Duration::from_nanos(
            amount as u64,
        )))),
        "periodic" => Err(bad(format!(
            "--auto-compaction-retention {retention:?}: must not be negative"
        ))),
        _ => Err(bad(format!("unsupported compaction mode {mode}"))),
    }
}

/// Go's `strconv.Atoi`: an optional sign and decimal digits.
fn parse_go_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Go's `time.ParseDuration`, in nanoseconds: a signed sequence of decimal
/// numbers, each with an optional fraction and a unit (`ns`, `us`, `µs`,
/// `ms`, `s`, `m`, `h`), e.g. "300ms", "-1.5h", "2h45m"; "0" alone needs no
/// unit. Errors carry Go's messages. (Go's rules, re-implemented.)
pub fn parse_go_duration(orig: &str) -> std::result::Result<i64, String> {
    let invalid = || format!("time: invalid duration \"{orig}\"");
    let mut s = orig;
    let mut neg = false;
    if let Some(rest) = s.strip_prefix('-') {
        neg = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let b = s.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut whole: u128 = 0;
        for c in &b[..int_len] {
            whole = whole * 10 + u128::from(c - b'0');
            if whole > i64::MAX as u128 {
                return Err(invalid());
            }
        }
        s = &s[int_len..];
        let (mut frac, mut scale, mut frac_len) = (0u128, 1u128, 0usize);
        if let Some(rest) = s.strip_prefix('.') {
            s = rest;
            frac_len = s.bytes().take_while(|c| c.is_ascii_digit()).count();
            for c in s[..frac_len].bytes() {
                // Digits past what fits are dropped, as Go does.
                if scale < 1_000_000_000_000_000_000 {
                    frac = frac * 10 + u128::from(c - b'0');
                    scale *= 10;
                }
            }
            s = &s[frac_len..];
        }
        if int_len == 0 && frac_len == 0 {
            return Err(invalid());
        }
        let unit_len = s
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(s.len(), |(i, _)| i);
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration \"{orig}\""));
        }
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        let nanos: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit \"{unit}\" in duration \"{orig}\""
                ))
            }
        };
        total += whole * nanos + frac * nanos / scale;
        if total > i64::MAX as u128 {
            return Err(invalid());
        }
    }
    let total = total as i64;
    Ok(if neg { -total } else { total })
}

/// Reads a YAML config file into `--flag=value` arguments, for the keys the
/// command line and environment left at their defaults.
pub fn config_file_args(path: &std::path::Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read --config-file {}: {e}", path.display())))?;
    let map: BTreeMap<String, serde_yaml_ng::Value> = serde_yaml_ng::from_str(&text)
        .map_err(|e| Error::Config(format!("--config-file {}: {e}", path.display())))?;
    let mut out = Vec::new();
    for (k, v) in map {
        let value = match v {
            serde_yaml_ng::Value::Null => continue,
            serde_yaml_ng::Value::Bool(b) => b.to_string(),
            serde_yaml_ng::Value::Number(n) => n.to_string(),
            serde_yaml_ng::Value::String(s) => s,
            other => {
                return Err(Error::Config(format!(
                    "--config-file {}: key {k:?} must be a scalar, got {other:?}",
                    path.display()
                )))
            }
        };
        out.push((k, value));
    }
    Ok(out)
}

fn split_urls(flag: &str, s: &str) -> Result<Vec<String>> {
    let urls: Vec<String> = s
        .split(',')
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        return Err(Error::Config(format!("{flag}: no URL given")));
    }
    for u in &urls {
        url_host_port(flag, u)?;
    }
    Ok(urls)
}

/// Splits `http://host:port` or `https://host:port` into (host, port),
/// refusing other schemes and paths.
fn url_host_port(flag: &str, u: &str) -> Result<(String, u16)> {
    let rest = if let Some(r) = u.strip_prefix("http://") {
        r
    } else if let Some(r) = u.strip_prefix("https://") {
        r
    } else {
        return Err(Error::Config(format!(
            "{flag}: URL scheme must be http or https: {u}"
        )));
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') {
        return Err(Error::Config(format!(
            "{flag}: URL must not have a path: {u}"
        )));
    }
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| {
        Error::Config(format!(
            "{flag}: URL address does not have the form \"host:port\": {u}"
        ))
    })?;
    let port: u16 = port
        .parse()
        .map_err(|_| Error::Config(format!("{flag}: invalid port in URL: {u}")))?;
    Ok((
        host.trim_matches(|c| c == '[' || c == ']').to_string(),
        port,
    ))
}

fn parse_listen_urls(flag: &str, s: &str) -> Result<Vec<Listen>> {
    let mut out = Vec::new();
    for u in split_urls(flag, s)? {
        let (host, port) = url_host_port(flag, &u)?;
        let ip: std::net::IpAddr = match host.as_str() {
            "localhost" => std::net::IpAddr::from([127, 0, 0, 1]),
            h => h.parse().map_err(|_| {
                Error::Config(format!("{flag}: expected IP in URL for binding ({u})"))
            })?,
        };
        out.push(Listen {
            addr: std::net::SocketAddr::new(ip, port),
            https: u.starts_with("https://"),
        });
    }
    Ok(out)
}

/// Parses `name=url,name=url2,other=url3` into members (URLs of one name grouped,
/// sorted), with ids derived from the peer URLs and the cluster token.
pub fn parse_initial_cluster(s: &str, token: &str) -> Result<Vec<MemberConfig>> {
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, url) = part.split_once('=').ok_or_else(|| {
            Error::Config(format!(
                "--initial-cluster: {part:?} is not of the form name=url"
            ))
        })?;
        url_host_port("--initial-cluster", url)?;
        by_name
            .entry(name.to_string())
            .or_default()
            .push(url.to_string());
    }
    if by_name.is_empty() {
        return Err(Error::Config("--initial-cluster is empty".into()));
    }
    let mut members = Vec::new();
    let mut seen_urls = BTreeMap::new();
    for (name, mut urls) in by_name {
        urls.sort();
        for u in &urls {
            if let Some(other) = seen_urls.insert(u.clone(), name.clone()) {
                return Err(Error::Config(format!(
                    "--initial-cluster: peer URL {u} is given for both {other} and {name}"
                )));
            }
        }
        let id = member_id_of(&urls, token);
        members.push(MemberConfig {
            id,
            name,
            peer_urls: urls,
        });
    }
    Ok(members)
}

/// A member id: a hash of the sorted peer URLs and the cluster token (etcd's recipe,
/// with FNV-1a instead of SHA-1). Never 0.
pub fn member_id_of(sorted_peer_urls: &[String], token: &str) -> MemberId {
    let mut h = Fnv::new();
    for u in sorted_peer_urls {
        h.write(u.as_bytes());
    }
    h.write(token.as_bytes());
    h.finish().max(1)
}

/// The cluster id: a hash of the sorted member ids.
pub fn cluster_id_of(members: &[MemberConfig]) -> ClusterId {
    let mut ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    ids.sort_unstable();
    let mut h = Fnv::new();
    for id in ids {
        h.write(&id.to_be_bytes());
    }
    h.finish().max(1)
}

/// FNV-1a, 64 bit, with a final avalanche so that nearby inputs spread.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
    }
    fn finish(&self) -> u64 {
        // splitmix64's finaliser.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        flags: StoreFlags,
    }

    fn parse(args: &[&str]) -> Result<Config> {
        let mut argv = vec!["keel"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().flags.into_config()
    }

    #[test]
    fn defaults_make_a_single_member_cluster() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.name, "default");
        assert_eq!(c.initial_cluster.len(), 1);
        assert_eq!(
            c.initial_cluster[0].peer_urls,
            vec!["http://127.0.0.1:2380"]
        );
        assert_eq!(c.election_ticks, 10);
        assert_eq!(c.data_dir, PathBuf::from("default.keel"));
        assert_ne!(c.member_id, 0);
    }

    #[test]
    fn ids_are_stable_and_depend_on_token() {
        let cluster = "a=http://127.0.0.1:1,b=http://127.0.0.1:2,c=http://127.0.0.1:3";
        let a = parse(&[
            "--name",
            "a",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:1",
            "--initial-cluster",
            cluster,
        ])
        .unwrap();
        let b = parse(&[
            "--name",
            "b",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2",
            "--initial-cluster",
            cluster,
        ])
        .unwrap();
        assert_eq!(a.cluster_id, b.cluster_id);
        assert_ne!(a.member_id, b.member_id);
        let a2 = parse(&[
            "--name",
            "a",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:1",
            "--initial-cluster",
            cluster,
            "--initial-cluster-token",
            "other",
        ])
        .unwrap();
        assert_ne!(a.cluster_id, a2.cluster_id);
        let again = parse(&[
            "--name",
            "a",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:1",
            "--initial-cluster",
            cluster,
        ])
        .unwrap();
        assert_eq!(a.member_id, again.member_id);
    }

    #[test]
    fn bad_flags_are_refused_with_a_clear_message() {
        let e = parse(&["--initial-cluster-state", "old"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid value \"old\""), "{e}");
        let e = parse(&["--election-timeout", "200"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 5 times"), "{e}");
        let e = parse(&[
            "--name",
            "x",
            "--initial-cluster",
            "y=http://127.0.0.1:2380",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("couldn't find local name \"x\""), "{e}");
        let e = parse(&["--listen-client-urls", "tcp://1.2.3.4:5"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("scheme"), "{e}");
        let e = parse(&["--listen-client-urls", "http://example.com:5"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected IP"), "{e}");
        let e = parse(&[
            "--initial-cluster",
            "default=http://127.0.0.1:2380,b=http://127.0.0.1:2380",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("given for both"), "{e}");
    }

    #[test]
    fn go_durations_parse_as_go_parses_them() {
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(parse_go_duration("5s"), Ok(5_000_000_000));
        assert_eq!(parse_go_duration("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration("-.5ms"), Ok(-500_000));
        assert_eq!(parse_go_duration("100\u{b5}s"), Ok(100_000));
        assert_eq!(
            parse_go_duration("1"),
            Err("time: missing unit in duration \"1\"".into())
        );
        assert_eq!(
            parse_go_duration("3d"),
            Err("time: unknown unit \"d\" in duration \"3d\"".into())
        );
        assert_eq!(
            parse_go_duration("abc"),
            Err("time: invalid duration \"abc\"".into())
        );
        assert!(parse_go_duration("").is_err());
        assert!(parse_go_duration("1h.").is_err());
    }

    #[test]
    fn auto_compaction_flags_as_etcd_reads_them() {
        use std::time::Duration as D;
        let p = parse_auto_compaction;
        assert_eq!(p("periodic", "0").unwrap(), None);
        assert_eq!(
            p("periodic", "1").unwrap(),
            Some(AutoCompaction::Periodic(D::from_secs(3600)))
        );
        assert_eq!(
            p("periodic", "30m").unwrap(),
            Some(AutoCompaction::Periodic(D::from_secs(1800)))
        );
        assert_eq!(
            p("revision", "1000").unwrap(),
            Some(AutoCompaction::Revision(1000))
        );
        assert_eq!(
            p("revision", "1us").unwrap(),
            Some(AutoCompaction::Revision(1000))
        );
        let e = p("weekly", "1").unwrap_err().to_string();
        assert!(e.contains("unknown auto-compaction-mode \"weekly\""), "{e}");
        let e = p("periodic", "soon").unwrap_err().to_string();
        assert!(
            e.contains("error parsing CompactionRetention: time: invalid duration \"soon\""),
            "{e}"
        );
        let c = parse(&[
            "--auto-compaction-mode",
            "revision",
            "--auto-compaction-retention",
            "10",
            "--quota-backend-bytes",
            "-1",
            "--experimental-corrupt-check-time",
            "2m",
        ])
        .unwrap();
        assert_eq!(c.auto_compaction, Some(AutoCompaction::Revision(10)));
        assert_eq!(c.quota_backend_bytes, -1);
        assert_eq!(c.corrupt_check_interval, Some(D::from_secs(120)));
        let c = parse(&[]).unwrap();
        assert_eq!(
            (
                c.auto_compaction,
                c.quota_backend_bytes,
                c.corrupt_check_interval
            ),
            (None, 0, None)
        );
    }

    #[test]
    fn config_file_is_read_as_flag_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keel.yaml");
        std::fs::write(&p, "name: n1\nheartbeat-interval: 50\ninitial-cluster: \"n1=http://127.0.0.1:1\"\nunused:\n").unwrap();
        let args = config_file_args(&p).unwrap();
        assert_eq!(
            args,
            vec![
                ("heartbeat-interval".to_string(), "50".to_string()),
                (
                    "initial-cluster".to_string(),
                    "n1=http://127.0.0.1:1".to_string()
                ),
                ("name".to_string(), "n1".to_string()),
            ]
        );
        std::fs::write(&p, "name: [1, 2]\n").unwrap();
        assert!(config_file_args(&p).is_err());
    }
}
