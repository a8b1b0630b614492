//! keelctl's commands, one file per command group (as etcdctl's
//! `ctlv3/command`), and the dispatch from the parsed command line.

pub mod alarm;
pub mod auth;
pub mod check;
pub mod compaction;
pub mod defrag;
pub mod del;
pub mod elect;
pub mod endpoint;
pub mod get;
pub mod inspect;
pub mod lease;
pub mod lock;
pub mod member;
pub mod mirror;
pub mod move_leader;
pub mod put;
pub mod role;
pub mod session;
pub mod snapshot;
pub mod txn;
pub mod user;
pub mod version;
pub mod watch;

use clap::Subcommand;

use crate::error::Result;
use crate::global::Ctx;

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Gets the key or a range of keys
    Get(get::GetArgs),
    /// Puts the given key into the store
    Put(put::PutArgs),
    /// Removes the specified key or range of keys [key, range_end)
    Del(del::DelArgs),
    /// Txn processes all the requests in one transaction
    Txn(txn::TxnArgs),
    /// Compacts the event history in etcd
    Compaction(compaction::CompactionArgs),
    /// Alarm related commands
    Alarm(alarm::AlarmArgs),
    /// Defragments the storage of the etcd members with given endpoints
    Defrag(defrag::DefragArgs),
    /// Endpoint related commands
    Endpoint(endpoint::EndpointArgs),
    /// Watches events stream on keys or prefixes
    Watch(watch::WatchArgs),
    /// Lease related commands
    Lease(lease::LeaseArgs),
    /// Membership related commands
    Member(member::MemberArgs),
    /// Manages etcd node snapshots
    Snapshot(snapshot::SnapshotArgs),
    #[command(
        name = "move-leader",
        about = "Transfers leadership to another etcd cluster member."
    )]
    MoveLeader(move_leader::MoveLeaderArgs),
    /// Acquires a named lock
    Lock(lock::LockArgs),
    /// Observes and participates in leader election
    Elect(elect::ElectArgs),
    /// Enable or disable authentication
    Auth(auth::AuthArgs),
    /// User related commands
    User(user::UserArgs),
    /// Role related commands
    Role(role::RoleArgs),
    /// commands for checking properties of the etcd cluster
    Check(check::CheckArgs),
    /// Makes a mirror at the destination etcd cluster
    #[command(name = "make-mirror")]
    MakeMirror(mirror::MirrorArgs),
    /// Prints the version of keelctl
    Version,
    /// Inspects what etcdctl cannot show (keel's Raft state, key history, data dirs, the key tree)
    Inspect(inspect::InspectArgs),
}

/// Runs one command.
pub async fn run(ctx: &Ctx, cmd: Command) -> Result<()> {
    match cmd {
        Command::Get(a) => get::run(ctx, a).await,
        Command::Put(a) => put::run(ctx, a).await,
        Command::Del(a) => del::run(ctx, a).await,
        Command::Txn(a) => txn::run(ctx, a).await,
        Command::Compaction(a) => compaction::run(ctx, a).await,
        Command::Alarm(a) => alarm::run(ctx, a).await,
        Command::Defrag(a) => defrag::run(ctx, a).await,
        Command::Endpoint(a) => endpoint::run(ctx, a).await,
        Command::Watch(a) => watch::run(ctx, a).await,
        Command::Lease(a) => lease::run(ctx, a).await,
        Command::Member(a) => member::run(ctx, a).await,
        Command::Snapshot(a) => snapshot::run(ctx, a).await,
        Command::MoveLeader(a) => move_leader::run(ctx, a).await,
        Command::Lock(a) => lock::run(ctx, a).await,
        Command::Elect(a) => elect::run(ctx, a).await,
        Command::MakeMirror(a) => mirror::run(ctx, a).await,
        Command::Check(a) => check::run(ctx, a).await,
        Command::Auth(a) => auth::run(ctx, a).await,
        Command::User(a) => user::run(ctx, a).await,
        Command::Role(a) => role::run(ctx, a).await,
        Command::Version => version::run(),
        Command::Inspect(a) => inspect::run(ctx, a).await,
    }
}
