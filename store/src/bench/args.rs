//! Command-line flags of `keel bench`: the global flags, given before the
//! subcommand as with etcd's benchmark tool, and one struct per workload with
//! the defaults of etcd 3.4's `benchmark`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

/// `keel bench [global flags] <workload> [workload flags]`.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
pub struct BenchArgs {
    /// gRPC endpoints, comma separated (host:port, http://host:port or https://host:port;
    /// host:port is dialled with TLS when a TLS flag is given).
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// Number of gRPC connections (channels); clients are spread over them round-robin.
    #[arg(long, global = true, default_value_t = 1)]
    pub conns: usize,
    /// Number of concurrent clients, each with one request in flight.
    #[arg(long, global = true, default_value_t = 1)]
    pub clients: usize,
    /// Send every request to the leader (Maintenance.Status, else /metrics'
    /// etcd_server_is_leader; best effort: without an answer, all endpoints are used).
    #[arg(long, global = true)]
    pub target_leader: bool,
    /// Print figures with full floating-point precision.
    #[arg(long, global = true)]
    pub precise: bool,
    /// Print one JSON object on stdout instead of the text report (no progress bar).
    #[arg(long, global = true)]
    pub json: bool,
    /// How long to wait for each connection to be established.
    #[arg(long, global = true, default_value = "2s", value_parser = parse_duration)]
    pub dial_timeout: Duration,
    /// Authenticate as `name:password` (etcd's benchmark `--user`; with no
    /// `:password`, the password is read from the first line of stdin).
    #[arg(long, global = true)]
    pub user: Option<String>,
    /// Verify certificates of TLS-enabled secure servers using this CA bundle.
    #[arg(long, global = true)]
    pub cacert: Option<PathBuf>,
    /// Identify secure client using this TLS certificate file.
    #[arg(long, global = true)]
    pub cert: Option<PathBuf>,
    /// Identify secure client using this TLS key file.
    // Its own id: `range` has a KEY argument.
    #[arg(long = "key", id = "tls_key", value_name = "KEY", global = true)]
    pub tls_key: Option<PathBuf>,
    /// Accept any server certificate (servers started with --auto-tls).
    #[arg(long, global = true)]
    pub insecure_skip_tls_verify: bool,
    /// Send the unary KV calls through tonic, as on TLS endpoints, instead
    /// of keel bench's lean HTTP/2 client (which uses less of the machine's
    /// CPU; docs/benchmarks.md, "A leaner load generator").
    #[arg(long, global = true)]
    pub tonic_client: bool,
    /// The workload.
    #[command(subcommand)]
    pub cmd: BenchCmd,
}

/// The workloads.
#[derive(Subcommand, Debug, Clone)]
pub enum BenchCmd {
    /// Put keys: random or sequential within a key space.
    Put(PutArgs),
    /// Range over KEY, or [KEY, END).
    Range(RangeArgs),
    /// Put keys inside transactions (--txn-ops puts each).
    TxnPut(TxnPutArgs),
    /// Measure the disk's fdatasync latency (4 KiB writes), to set beside put figures.
    Fsync(FsyncArgs),
    /// Watch streams × watchers on the watched keys, put to those keys, and measure
    /// each event's delivery latency (put sent to event received) and any event missed.
    Watch(WatchArgs),
    /// Watchers on one key, puts to it at --put-rate: the delivery latency of each event.
    WatchLatency(WatchLatencyArgs),
    /// Lease keep-alives: each client grants a lease, then sends keep-alives on
    /// its own LeaseKeepAlive stream, one in flight, and times each answer.
    LeaseKeepalive(LeaseKeepaliveArgs),
}

impl BenchArgs {
    /// The TLS options of `--cacert`, `--cert`, `--key` and
    /// `--insecure-skip-tls-verify`, if any is given.
    pub fn tls(&self) -> anyhow::Result<Option<keel_client::tls::TlsOptions>> {
        if self.cacert.is_none()
            && self.cert.is_none()
            && self.tls_key.is_none()
            && !self.insecure_skip_tls_verify
        {
            return Ok(None);
        }
        let tls = keel_client::tls::TlsOptions::from_files(
            self.cacert.as_deref(),
            self.cert.as_deref(),
            self.tls_key.as_deref(),
        )?;
        Ok(Some(
            tls.with_insecure_skip_verify(self.insecure_skip_tls_verify),
        ))
    }
}

impl BenchCmd {
    /// The workload's name as printed in reports.
    pub fn name(&self) -> &'static str {
        match self {
            BenchCmd::Put(_) => "put",
            BenchCmd::Range(_) => "range",
            BenchCmd::TxnPut(_) => "txn-put",
            BenchCmd::Fsync(_) => "fsync",
            BenchCmd::Watch(_) => "watch",
            BenchCmd::WatchLatency(_) => "watch-latency",
            BenchCmd::LeaseKeepalive(_) => "lease-keepalive",
        }
    }
}

/// Flags of `put`.
#[derive(Args, Debug, Clone, serde::Serialize)]
pub struct PutArgs {
    /// Key size in bytes.
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 8)]
    pub val_size: usize,
    /// Use sequential keys (request i writes key i mod key-space-size).
    #[arg(long)]
    pub sequential_keys: bool,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 1)]
    pub key_space_size: u64,
    /// Total number of put requests.
    #[arg(long, default_value_t = 10000)]
    pub total: u64,
    /// Maximum puts per second (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Compact to (current revision - compact-index-delta) this often (0: never); e.g. 10s.
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    #[serde(serialize_with = "ser_duration")]
    pub compact_interval: Duration,
    /// How many revisions to keep when compacting.
    #[arg(long, default_value_t = 1000)]
    pub compact_index_delta: i64,
}

/// Read consistency of `range`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Consistency {
    /// Linearizable.
    #[value(name = "l")]
    #[serde(rename = "l")]
    Linearizable,
    /// Serializable (served from the member's local state).
    #[value(name = "s")]
    #[serde(rename = "s")]
    Serializable,
}

/// Flags of `range`.
#[derive(Args, Debug, Clone, serde::Serialize)]
pub struct RangeArgs {
    /// The key (or first key) to read.
    pub key: String,
    /// The exclusive end of the range.
    pub end: Option<String>,
    /// Linearizable (l) or serializable (s).
    #[arg(long, value_enum, default_value = "l")]
    pub consistency: Consistency,
    /// Total number of range requests.
    #[arg(long, default_value_t = 10000)]
    pub total: u64,
    /// Maximum ranges per second (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
}

/// Flags of `txn-put`.
#[derive(Args, Debug, Clone, serde::Serialize)]
pub struct TxnPutArgs {
    /// Key size in bytes.
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 8)]
    pub val_size: usize,
    /// Number of puts in each transaction.
    #[arg(long, default_value_t = 1)]
    pub txn_ops: u64,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 1)]
    pub key_space_size: u64,
    /// Total number of transactions.
    #[arg(long, default_value_t = 10000)]
    pub total: u64,
    /// Maximum transactions per second (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
}

/// Flags of `lease-keepalive`.
#[derive(Args, Debug, Clone, serde::Serialize)]
pub struct LeaseKeepaliveArgs {
    /// Total number of keep-alive requests.
    #[arg(long, default_value_t = 10000)]
    pub total: u64,
    /// TTL in seconds of each client's lease (revoked at the end).
    #[arg(long, default_value_t = 100)]
    pub ttl: i64,
}

/// Flags of `fsync`.
#[derive(Args, Debug, Clone, serde::Serialize)]
pub struct FsyncArgs {
    /// Directory on the disk to measure (a scratch file is made and removed there).
    #[arg(long, default_value = ".")]
    pub path: PathBuf,
    /// Number of write + fdatasync rounds.
    #[arg(long, default_value_t = 200)]
    pub count: u64,
    /// Bytes written before each fdatasync.
    #[arg(long, default_value_t = 4096)]
    pub block_size: usize,
}

/// Flags of `watch`.
#[derive(Args, Debug, Clone, serde::Serialize)]
pub struct WatchArgs {
    /// Number of gRPC watch streams, spread over --conns round-robin.
    #[arg(long, default_value_t = 10)]
    pub streams: u64,
    /// Watchers on each stream; watcher i watches key i mod --watched-key-total.
    #[arg(long, default_value_t = 10)]
    pub watch_per_stream: u64,
    /// Number of distinct watched keys (default: --watch-per-stream, one key per
    /// watcher of a stream).
    #[arg(long, alias = "key-space-size")]
    pub watched_key_total: Option<u64>,
    /// Total number of puts, put j to watched key j mod --watched-key-total.
    #[arg(long, default_value_t = 10000)]
    pub put_total: u64,
    /// Maximum puts per second (0: no limit); the puts come from --clients clients.
    #[arg(long, default_value_t = 0)]
    pub put_rate: u64,
    /// Key size in bytes.
    #[arg(long, default_value_t = 32)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 32)]
    pub val_size: usize,
    /// Send the puts over the streams' connections (as a client that shares one
    /// connection between its watches and its requests, like kube-apiserver)
    /// instead of over a connection of their own (as etcd's tool).
    #[arg(long)]
    pub shared_conns: bool,
    /// After the puts, keep every stream open this long (e.g. 30s), to measure the
    /// server's memory with the watchers in place.
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    #[serde(serialize_with = "ser_duration")]
    pub hold: Duration,
}

impl WatchArgs {
    /// The number of distinct watched keys.
    pub fn watched_keys(&self) -> u64 {
        self.watched_key_total.unwrap_or(self.watch_per_stream)
    }
}

/// Flags of `watch-latency`.
#[derive(Args, Debug, Clone, serde::Serialize)]
pub struct WatchLatencyArgs {
    /// Number of gRPC watch streams, spread over --conns round-robin.
    #[arg(long, default_value_t = 10)]
    pub streams: u64,
    /// Watchers on each stream, all on the one key.
    #[arg(long, default_value_t = 1)]
    pub watchers_per_stream: u64,
    /// Total number of puts to the key.
    #[arg(long, default_value_t = 1000)]
    pub put_total: u64,
    /// Puts per second (0: no limit).
    #[arg(long, default_value_t = 100)]
    pub put_rate: u64,
    /// Key size in bytes.
    #[arg(long, default_value_t = 32)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 32)]
    pub val_size: usize,
}

impl From<&WatchLatencyArgs> for WatchArgs {
    /// `watch-latency` is `watch` with one watched key.
    fn from(a: &WatchLatencyArgs) -> WatchArgs {
        WatchArgs {
            streams: a.streams,
            watch_per_stream: a.watchers_per_stream,
            watched_key_total: Some(1),
            put_total: a.put_total,
            put_rate: a.put_rate,
            key_size: a.key_size,
            val_size: a.val_size,
            shared_conns: false,
            hold: Duration::ZERO,
        }
    }
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Parses a duration as Go prints them: `0`, `1500ms`, `10s`, `1.5s`, `2m`, `1h`,
/// `250us`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "ns" => n / 1e9,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration unit in {s:?} (use ns, us, ms, s, m or h)"
            ))
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The shape of the `keel` binary: `bench` is one subcommand among others.
    #[derive(Parser, Debug)]
    struct Top {
        #[command(subcommand)]
        cmd: TopCmd,
    }

    #[derive(Subcommand, Debug)]
    enum TopCmd {
        Bench(BenchArgs),
    }

    fn parse(args: &[&str]) -> BenchArgs {
        let argv = ["keel", "bench"].iter().chain(args);
        let TopCmd::Bench(b) = Top::try_parse_from(argv).unwrap().cmd;
        b
    }

    #[test]
    fn tls_flags_beside_range_key() {
        let b = parse(&[
            "--cacert", "ca.pem", "--cert", "c.pem", "--key", "k.pem", "range", "foo",
        ]);
        assert_eq!(b.cacert, Some(PathBuf::from("ca.pem")));
        assert_eq!(b.cert, Some(PathBuf::from("c.pem")));
        assert_eq!(b.tls_key, Some(PathBuf::from("k.pem")));
        let BenchCmd::Range(r) = &b.cmd else {
            panic!("{:?}", b.cmd)
        };
        assert_eq!(r.key, "foo");
        // Missing files are reported when the options are read.
        let e = b.tls().unwrap_err().to_string();
        assert!(e.contains("ca.pem"), "{e}");
        assert!(parse(&["range", "foo"]).tls().unwrap().is_none());
        let skip = parse(&["--insecure-skip-tls-verify", "range", "foo"]);
        assert!(skip.tls().unwrap().unwrap().insecure_skip_verify);
    }

    #[test]
    fn global_flags_before_the_subcommand() {
        let b = parse(&[
            "--endpoints",
            "127.0.0.1:2379,http://10.0.0.2:2379",
            "--conns",
            "10",
            "--clients",
            "100",
            "--target-leader",
            "--precise",
            "put",
            "--total",
            "20000",
            "--json",
        ]);
        assert_eq!(b.endpoints, ["127.0.0.1:2379", "http://10.0.0.2:2379"]);
        assert_eq!((b.conns, b.clients), (10, 100));
        assert!(b.target_leader && b.precise && b.json);
        let BenchCmd::Put(p) = b.cmd else {
            panic!("not put: {:?}", b.cmd)
        };
        assert_eq!(p.total, 20000);
    }

    #[test]
    fn defaults_are_etcds() {
        let b = parse(&["put"]);
        assert_eq!(b.endpoints, ["127.0.0.1:2379"]);
        assert_eq!((b.conns, b.clients), (1, 1));
        assert!(!b.target_leader && !b.precise && !b.json);
        let BenchCmd::Put(p) = b.cmd else { panic!() };
        assert_eq!((p.key_size, p.val_size, p.key_space_size), (8, 8, 1));
        assert_eq!((p.total, p.rate, p.compact_index_delta), (10000, 0, 1000));
        assert!(!p.sequential_keys);
        assert_eq!(p.compact_interval, Duration::ZERO);

        let BenchCmd::Range(r) = parse(&["range", "foo"]).cmd else {
            panic!()
        };
        assert_eq!((r.key.as_str(), r.end.as_deref()), ("foo", None));
        assert_eq!(
            (r.consistency, r.total, r.rate),
            (Consistency::Linearizable, 10000, 0)
        );

        let BenchCmd::TxnPut(t) = parse(&["txn-put"]).cmd else {
            panic!()
        };
        assert_eq!(
            (t.key_size, t.val_size, t.txn_ops, t.key_space_size),
            (8, 8, 1, 1)
        );
        assert_eq!((t.total, t.rate), (10000, 0));

        let BenchCmd::Fsync(f) = parse(&["fsync"]).cmd else {
            panic!()
        };
        assert_eq!(
            (f.path, f.count, f.block_size),
            (PathBuf::from("."), 200, 4096)
        );
    }

    #[test]
    fn workload_flags() {
        let b = parse(&[
            "--clients=4",
            "put",
            "--key-size=16",
            "--val-size=256",
            "--sequential-keys",
            "--key-space-size=1000",
            "--rate=500",
            "--compact-interval=10s",
        ]);
        let BenchCmd::Put(p) = b.cmd else { panic!() };
        assert_eq!(
            (p.key_size, p.val_size, p.key_space_size, p.rate),
            (16, 256, 1000, 500)
        );
        assert!(p.sequential_keys);
        assert_eq!(p.compact_interval, Duration::from_secs(10));

        let BenchCmd::Range(r) = parse(&["range", "a", "z", "--consistency", "s"]).cmd else {
            panic!()
        };
        assert_eq!(
            (r.end.as_deref(), r.consistency),
            (Some("z"), Consistency::Serializable)
        );
        assert!(
            Top::try_parse_from(["keel", "bench", "range", "a", "--consistency", "x"]).is_err()
        );
        assert!(
            Top::try_parse_from(["keel", "bench"]).is_err(),
            "a workload is required"
        );
        let BenchCmd::LeaseKeepalive(l) = parse(&["lease-keepalive", "--total", "500"]).cmd else {
            panic!()
        };
        assert_eq!((l.total, l.ttl), (500, 100));
        assert!(Top::try_parse_from(["keel", "bench", "lease-keepalive", "--rate", "5"]).is_err());
    }

    #[test]
    fn watch_flags() {
        let b = parse(&[
            "--conns",
            "2",
            "--clients",
            "2",
            "watch",
            "--streams",
            "4",
            "--watch-per-stream",
            "10",
            "--put-total",
            "100",
            "--put-rate=1000",
            "--key-size=8",
            "--val-size=256",
            "--hold=30s",
            "--shared-conns",
            "--json",
        ]);
        assert!(b.json);
        assert_eq!(b.cmd.name(), "watch");
        let BenchCmd::Watch(w) = b.cmd else { panic!() };
        assert_eq!(
            (w.streams, w.watch_per_stream, w.put_total, w.put_rate),
            (4, 10, 100, 1000)
        );
        assert_eq!((w.key_size, w.val_size), (8, 256));
        assert_eq!(w.hold, Duration::from_secs(30));
        assert!(w.shared_conns);
        assert_eq!(w.watched_keys(), 10, "one key per watcher of a stream");

        let BenchCmd::Watch(w) = parse(&["watch", "--watched-key-total", "3"]).cmd else {
            panic!()
        };
        assert_eq!(w.watched_keys(), 3);
        let BenchCmd::Watch(w) = parse(&["watch", "--key-space-size", "7"]).cmd else {
            panic!()
        };
        assert_eq!(w.watched_keys(), 7, "alias");

        let BenchCmd::Watch(w) = parse(&["watch"]).cmd else {
            panic!()
        };
        assert_eq!(
            (w.streams, w.watch_per_stream, w.put_total),
            (10, 10, 10000)
        );
        assert_eq!((w.put_rate, w.hold), (0, Duration::ZERO));
        assert!(
            !w.shared_conns,
            "puts on a connection of their own, as etcd's tool"
        );

        let b = parse(&["watch-latency", "--streams=3", "--put-total=50"]);
        assert_eq!(b.cmd.name(), "watch-latency");
        let BenchCmd::WatchLatency(l) = b.cmd else {
            panic!()
        };
        assert_eq!(
            (l.streams, l.watchers_per_stream, l.put_total, l.put_rate),
            (3, 1, 50, 100)
        );
        let w = WatchArgs::from(&l);
        assert_eq!((w.streams, w.watch_per_stream, w.watched_keys()), (3, 1, 1));
        assert!(Top::try_parse_from(["keel", "bench", "watch", "--hold", "soon"]).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }
}
