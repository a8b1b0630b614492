//! Command-line flags of `keel bench`: the global flags, given before the
//! subcommand as with etcd's benchmark tool, and one struct per workload with
//! the defaults of etcd 3.4's `benchmark`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

/// `keel bench [global flags] <workload> [workload flags]`.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
#[command(after_help = "Not yet: watch, watch-latency, lease-keepalive \
    (they will come with keel's watch and lease services).")]
pub struct BenchArgs {
    /// gRPC endpoints, comma separated (host:port or http://host:port).
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
    /// The workload.
    #[command(subcommand)]
    pub cmd: BenchCmd,
}

/// The workloads (`watch`, `watch-latency` and `lease-keepalive` are not yet here).
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
}

impl BenchCmd {
    /// The workload's name as printed in reports.
    pub fn name(&self) -> &'static str {
        match self {
            BenchCmd::Put(_) => "put",
            BenchCmd::Range(_) => "range",
            BenchCmd::TxnPut(_) => "txn-put",
            BenchCmd::Fsync(_) => "fsync",
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
        assert!(
            Top::try_parse_from(["keel", "bench", "watch"]).is_err(),
            "not yet"
        );
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
