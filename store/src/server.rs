//! A store member: opens the data dir, starts the Raft driver thread, the peer
//! transport and the client and peer listeners, and runs until shutdown.
//!
//! Shape after mini-redis: `Server::new(config)?.serve(shutdown).await`.
//!
//! Data dir layout: `<data-dir>/member/db` is one sled database holding the Raft
//! log and state (trees of [`crate::raftlog`]), the MVCC history and the
//! replicated member list (tree `mvcc`, see [`crate::membership`]) and this
//! member's identity (tree `meta`: cluster id, member id, name; for a member
//! that joined a running cluster, the members it learned of when it joined).
//! A data dir that belongs to another member or cluster is refused; sled's
//! file lock refuses a second process on the same dir.
//!
//! Identity: a new cluster's members derive their ids from the flags and
//! write the initial member list; a member started with
//! `--initial-cluster-state existing` and an empty data dir joins (see
//! [`crate::membership::join`]) and keeps the ids the cluster gave it. On a
//! restart the data dir's identity must match the flags, except with
//! `--initial-cluster-state existing`, where the data dir's identity wins
//! (peer URLs may have changed with MemberUpdate), the name still checked.
//!
//! `<data-dir>/member/snap` holds snapshot images received from the leader
//! (see [`crate::consensus::snapshot`]).
//!
//! TLS ([`crate::tls`]): certificates are loaded (or, with auto-tls, made
//! under `<data-dir>/fixtures`) when the member opens; `https` listeners
//! serve behind TLS, and every peer client dials through one
//! [`crate::tls::Dialer`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use keel_proto::etcdserverpb::auth_server::AuthServer;
use keel_proto::etcdserverpb::cluster_server::ClusterServer;
use keel_proto::etcdserverpb::kv_server::KvServer;
use keel_proto::etcdserverpb::lease_server::LeaseServer;
use keel_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use keel_proto::peer::lease_peer_server::LeasePeerServer;
use keel_proto::peer::maintenance_peer_server::MaintenancePeerServer;
use keel_proto::peer::membership_peer_server::MembershipPeerServer;
use keel_proto::peer::peer_server::PeerServer;
use keel_proto::v3electionpb::election_server::ElectionServer;
use keel_proto::v3lockpb::lock_server::LockServer;
use raft::eraftpb::ConfState;
use raft::RawNode;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::apply::Applier;
use crate::auth::{self, AuthStore};
use crate::concurrency::service::{ElectionService, LockService};
use crate::concurrency::Recipes;
use crate::config::{Config, MemberConfig, MemberId};
use crate::consensus::driver::{Driver, LogRetention};
use crate::consensus::lease::LeaseRules;
use crate::consensus::snapshot::{self, SnapDir};
use crate::consensus::{self, logger};
use crate::error::{Error, Result};
use crate::kv::{Identity, Kv, StoreNode};
use crate::lane::LaneReceiver;
use crate::lease::service::{LeasePeerService, LeaseService};
use crate::lease::{Leases, Lessor};
use crate::maintenance::alarm::Alarms;
use crate::maintenance::quota::Quota;
use crate::maintenance::service::{MaintenancePeerService, MaintenanceService};
use crate::maintenance::{compactor, corrupt, Maintenance};
use crate::membership::service::{ClusterService, MembershipPeerService};
use crate::membership::{gate, join, Member, Members, Membership};
use crate::metrics::Metrics;
use crate::mvcc::{ImageSummary, SledBackend, Store};
use crate::raftlog::RaftStorage;
use crate::service::KvService;
use crate::transport::{Activity, LinkFilter, PeerService, PeerTransport, TransportDeps};
use crate::watch::grpc::WatchServer;
use crate::watch::stream::WatchService;
use crate::watch::Hub;

/// gRPC adds this much on top of `--max-request-bytes` before refusing a message
/// outright (etcd's grpcOverheadBytes), so that "request is too large" comes
/// from keel's own check with etcd's message.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// One member, opened but not yet serving.
pub struct Server {
    cfg: Config,
    storage: RaftStorage,
    store: Arc<Store>,
    snaps: SnapDir,
    membership: Arc<Membership>,
    security: crate::tls::Security,
}

impl Server {
    /// Opens (or bootstraps) the data dir and checks it belongs to this member.
    pub fn new(mut cfg: Config) -> Result<Server> {
        let dir = cfg.data_dir.join("member");
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::Config(format!(
                "cannot create data dir {}: {e}",
                cfg.data_dir.display()
            ))
        })?;
        let db = sled::Config::new()
            .path(dir.join("db"))
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(cfg.backend_cache_bytes)
            .flush_every_ms(None)
            .open()
            .map_err(|e| match e {
                e if is_lock_conflict(&e) => Error::Config(format!(
                    "data dir {} is in use by another process",
                    cfg.data_dir.display()
                )),
                other => Error::Sled(other),
            })?;
        let security = crate::tls::Security::load(&cfg.tls, &cfg.data_dir)?;
        let storage = RaftStorage::open(&dir.join("wal"), Some(&db))?;
        let meta = db.open_tree("meta")?;
        let backend = open_backend(&db, &meta, &dir, cfg.backend)?;
        let store = Arc::new(Store::open(backend.clone())?);
        storage.set_state_flush(move || backend.flush());
        let remotes = check_identity(&mut cfg, &meta, &storage, &store, &security.dialer)?;
        let snaps = SnapDir::open(dir.join("snap"))?;
        snapshot::recover(&snaps, &storage, |image| {
            store
                .install_image(&mut std::fs::File::open(image)?)
                .map(|_| ())
        })?;
        let membership = Arc::new(Membership::open(&store, cfg.member_id)?);
        if membership.local_removed() {
            tracing::error!(
                member = format!("{:x}", cfg.member_id),
                "the member has been permanently removed from the cluster; the data dir used by this member must be removed"
            );
            return Err(Error::Removed);
        }
        membership.set_remotes(remotes);
        sync_conf_state(&membership, &storage)?;
        tracing::info!(
            name = %cfg.name,
            member = format!("{:x}", cfg.member_id),
            cluster = format!("{:x}", cfg.cluster_id),
            data_dir = %cfg.data_dir.display(),
            revision = store.current_revision(),
            applied = store.consistent_index(),
            "opened data dir"
        );
        Ok(Server {
            cfg,
            storage,
            store,
            snaps,
            membership,
            security,
        })
    }

    /// Serves until `shutdown` resolves or the Raft driver stops on an error.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let Server {
            cfg,
            storage,
            store,
            snaps,
            membership,
            security,
        } = self;
        let metrics = Arc::new(Metrics::new());
        let filter = Arc::new(LinkFilter::default());
        let activity = Arc::new(Activity::new(filter.clone()));
        let (node, rx): (StoreNode, _) = consensus::channel(
            cfg.member_id,
            cfg.request_timeout(),
            cfg.heartbeat.min(Duration::from_millis(50)),
        );

        // Bind every listener first, so a port in use fails start-up cleanly.
        let mut client_listeners = Vec::new();
        for l in &cfg.listen_client {
            let tls = l.https.then(|| security.client.clone()).flatten();
            client_listeners.push((bind(l.addr, "client").await?, tls));
        }
        let mut peer_listeners = Vec::new();
        for l in &cfg.listen_peer {
            let tls = l.https.then(|| security.peer.clone()).flatten();
            peer_listeners.push((bind(l.addr, "peer").await?, tls));
        }

        let transport = PeerTransport::start(
            cfg.cluster_id,
            cfg.member_id,
            node.clone(),
            TransportDeps {
                filter: filter.clone(),
                store: store.clone(),
                metrics: metrics.clone(),
                membership: membership.clone(),
                activity: activity.clone(),
                dialer: security.dialer.clone(),
                lane: cfg.raft_lane,
            },
        );
        // A follower that needs a snapshot gets the metadata at our applied
        // index; the transport streams the state's image beside it.
        {
            let status = node.status().clone();
            let st = storage.clone();
            storage.set_snapshot_provider(Box::new(move |_request_index| {
                let index = status
                    .applied_index
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .max(st.first_index() - 1);
                let mut snap = raft::eraftpb::Snapshot::default();
                let meta = snap.mut_metadata();
                meta.index = index;
                meta.term = raft::Storage::term(&st, index)?;
                meta.set_conf_state(st.conf_state());
                Ok(snap)
            }));
        }

        // raft-rs requires applied <= commit; the MVCC consistent index may be
        // durable a little ahead of the commit index in the hard state.
        let applied = store.consistent_index();
        // sled recovered its state up to `applied`: entries up to there may
        // leave the Raft log; the checkpointer moves that point on.
        storage.set_durable_applied(applied);
        if applied > storage.hard_state().commit {
            storage.set_commit(applied)?;
        }
        let raft_cfg = raft::Config {
            id: cfg.member_id,
            election_tick: cfg.election_ticks,
            // etcd randomises in [1, 2) election timeouts; [1, 1.5) re-elects sooner
            // after a leader dies, and pre-vote keeps split votes rare.
            max_election_tick: cfg.election_ticks * 3 / 2,
            heartbeat_tick: 1,
            applied,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        raft_cfg.validate()?;
        let raw = RawNode::new(
            &raft_cfg,
            storage.clone(),
            &logger::raft_logger(cfg.member_id),
        )?;
        let single_voter = storage.conf_state().voters == [cfg.member_id];
        let hub = Hub::new(store.clone());
        let lessor = Arc::new(Lessor::open(&store, min_lease_ttl(&cfg))?);
        let alarms = Arc::new(Alarms::open(&store)?);
        let auth_store = AuthStore::open(&store, cfg.auth.token_ttl)?;
        let applier = Applier::new(
            store.clone(),
            metrics.clone(),
            hub.clone(),
            lessor.clone(),
            membership.clone(),
        )
        .with_alarms(alarms.clone())
        .with_auth(auth_store.clone());
        {
            let written = applier.written_index();
            storage.start_checkpointer(move || written.load(std::sync::atomic::Ordering::Acquire));
        }
        let driver = Driver::new(
            raw,
            applier,
            transport,
            rx,
            node.status().clone(),
            metrics.clone(),
            cfg.heartbeat,
            snaps.clone(),
            LogRetention {
                snapshot_count: cfg.snapshot_count,
                catchup_entries: cfg.snapshot_catchup_entries,
                crash_in_install: cfg.unsafe_crash_in_snapshot_install,
            },
        )
        .with_spin(cfg.raft_spin)
        .with_read_lease(if cfg.leader_read_lease {
            LeaseRules::new(cfg.heartbeat, cfg.election_ticks)
        } else {
            None
        });
        let (driver_done_tx, driver_done) = tokio::sync::oneshot::channel();
        let driver_thread = std::thread::Builder::new()
            .name("raft".into())
            .spawn(move || {
                let r = driver.run();
                let _ = driver_done_tx.send(r);
            })?;
        if single_voter {
            node.campaign()?;
        }

        let kv = Kv::new(
            node.clone(),
            store.clone(),
            metrics.clone(),
            Identity {
                cluster_id: cfg.cluster_id,
                member_id: cfg.member_id,
            },
            cfg.max_request_bytes,
            cfg.max_txn_ops,
        )
        .with_unsafe_stale_reads(cfg.unsafe_stale_reads)
        .with_membership(membership.clone())
        .with_alarms(alarms)
        .with_auth(auth_store)
        .with_quota(Quota::from_flag(cfg.quota_backend_bytes));
        if let Some(q) = kv.quota() {
            metrics.quota_backend_bytes.set(q.max_bytes() as i64);
        }
        let maintenance = Maintenance::new(
            kv.clone(),
            membership.clone(),
            cfg.election_timeout(),
            cfg.request_timeout(),
        )
        .with_snapshot_dir(snaps.path().to_path_buf());
        let leases = Leases::new(
            kv.clone(),
            lessor,
            membership.clone(),
            cfg.election_timeout(),
            cfg.request_timeout(),
        )
        .with_peer_dialer(security.dialer.clone());
        let members = Members::new(
            kv.clone(),
            membership.clone(),
            activity.clone(),
            cfg.strict_reconfig_check,
            cfg.request_timeout(),
        )
        .with_peer_dialer(security.dialer.clone());
        let recipes = Recipes::new(leases.clone(), hub.clone());
        let auth_api = auth::api::Auth::new(kv.clone(), kv.auth().clone(), cfg.auth.bcrypt_cost);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(leases.clone().run_expiry(stop_rx.clone()));
        let publish = tokio::spawn(members.clone().publish(
            cfg.name.clone(),
            cfg.advertise_client_urls.clone(),
            stop_rx.clone(),
        ));
        if let Some(mode) = cfg.auto_compaction {
            tasks.spawn(compactor::run(
                kv.clone(),
                mode,
                cfg.revision_compaction_interval,
                stop_rx.clone(),
            ));
        }
        if let Some(every) = cfg.corrupt_check_interval {
            tasks.spawn(corrupt::run(
                kv.clone(),
                membership.clone(),
                every,
                cfg.request_timeout(),
                security.dialer.clone(),
                stop_rx.clone(),
            ));
        }

        // Client port: gRPC (KV, health) and HTTP/1 (health, version, metrics).
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        let max_recv = cfg.max_request_bytes + GRPC_OVERHEAD_BYTES;
        for (listener, tls) in client_listeners {
            let mut builder = tonic::service::Routes::builder();
            builder
                .add_service(
                    KvServer::new(KvService(kv.clone()))
                        .max_decoding_message_size(max_recv)
                        .max_encoding_message_size(usize::MAX),
                )
                .add_service(WatchServer::new(
                    WatchService::new(
                        hub.clone(),
                        kv.clone(),
                        cfg.max_request_bytes,
                        cfg.watch_progress_notify_interval,
                        cfg.election_timeout(),
                    ),
                    max_recv,
                ))
                .add_service(LeaseServer::new(LeaseService(leases.clone())))
                .add_service(LockServer::new(LockService(recipes.clone())))
                .add_service(ElectionServer::new(ElectionService(recipes.clone())))
                .add_service(ClusterServer::new(ClusterService(members.clone())))
                .add_service(MaintenanceServer::new(MaintenanceService(
                    maintenance.clone(),
                )))
                .add_service(AuthServer::new(auth::service::AuthService(
                    auth_api.clone(),
                )))
                .add_service(keel_proto::admin::admin_server::AdminServer::new(
                    crate::admin::AdminService(kv.clone()),
                ))
                .add_service(health_service.clone());
            let routes = builder.routes();
            let mut router = routes.into_axum_router();
            router = router.merge(crate::http::router(
                kv.clone(),
                metrics.clone(),
                filter.clone(),
                membership.clone(),
                cfg.unsafe_fault_hooks,
            ));
            router = router.layer(gate::GateLayer(membership.clone()));
            let routes = tonic::service::Routes::from(router);
            let mut stop = stop_rx.clone();
            tasks.spawn(async move {
                let router = tonic::transport::Server::builder()
                    .accept_http1(true)
                    .tcp_nodelay(true)
                    .http2_keepalive_interval(Some(Duration::from_secs(2 * 60 * 60)))
                    .add_routes(routes);
                crate::tls::serve(
                    router,
                    listener,
                    tls,
                    crate::tls::Port::Client,
                    None,
                    async move {
                        let _ = stop.wait_for(|s| *s).await;
                    },
                )
                .await
                .map_err(|e| Error::Transport(format!("client listener: {e}")))
            });
        }
        let lane_in = LaneReceiver::new(
            cfg.cluster_id,
            cfg.member_id,
            node.clone(),
            filter.clone(),
            membership.clone(),
        );
        for (listener, tls) in peer_listeners {
            let lane = {
                let lane_in = lane_in.clone();
                let handler: crate::tls::LaneHandler = Arc::new(move |conn| lane_in.accept(conn));
                Some(handler)
            };
            let svc = PeerServer::new(PeerService::new(
                cfg.cluster_id,
                cfg.member_id,
                node.clone(),
                filter.clone(),
                snaps.clone(),
                metrics.clone(),
                membership.clone(),
            ))
            .max_decoding_message_size(usize::MAX);
            let lease_peer = LeasePeerServer::new(LeasePeerService(leases.clone()));
            let membership_peer = MembershipPeerServer::new(MembershipPeerService {
                members: members.clone(),
                cluster_id: cfg.cluster_id,
            });
            let maintenance_peer =
                MaintenancePeerServer::new(MaintenancePeerService(maintenance.clone()));
            let mut stop = stop_rx.clone();
            tasks.spawn(async move {
                let router = tonic::transport::Server::builder()
                    .tcp_nodelay(true)
                    .add_service(svc)
                    .add_service(lease_peer)
                    .add_service(membership_peer)
                    .add_service(maintenance_peer);
                crate::tls::serve(
                    router,
                    listener,
                    tls,
                    crate::tls::Port::Peer,
                    lane,
                    async move {
                        let _ = stop.wait_for(|s| *s).await;
                    },
                )
                .await
                .map_err(|e| Error::Transport(format!("peer listener: {e}")))
            });
        }
        // grpc.health.v1: "" is SERVING while the member has a leader.
        {
            let status = node.status().clone();
            let mut stop = stop_rx.clone();
            tasks.spawn(async move {
                let mut serving = None;
                loop {
                    let now = status.has_leader();
                    if serving != Some(now) {
                        if now {
                            health_reporter
                                .set_service_status("", tonic_health::ServingStatus::Serving)
                                .await;
                        } else {
                            health_reporter
                                .set_service_status("", tonic_health::ServingStatus::NotServing)
                                .await;
                        }
                        serving = Some(now);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = stop.wait_for(|s| *s) => return Ok(()),
                    }
                }
            });
        }
        tracing::info!(
            name = %cfg.name,
            client = ?cfg.listen_client,
            peer = ?cfg.listen_peer,
            "serving"
        );

        // A removed member stops after a second (etcd's delay, which lets the
        // removal's commit reach the other members first).
        let removed = {
            let membership = membership.clone();
            async move {
                membership.wait_removed().await;
                tracing::error!(
                    member = format!("{:x}", membership.local_id()),
                    "the member has been permanently removed from the cluster; the data dir used by this member must be removed"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        };
        let result = tokio::select! {
            _ = shutdown => Ok(()),
            _ = removed => Err(Error::Removed),
            r = driver_done => match r {
                Ok(Ok(())) => Err(Error::Stopped),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(Error::Stopped),
            },
            Some(r) = tasks.join_next() => match r {
                Ok(Err(e)) => Err(e),
                _ => Err(Error::Stopped),
            },
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, "member stopping on error");
        }
        let _ = stop_tx.send(true);
        publish.abort();
        node.stop();
        lane_in.close_all();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        let _ = tokio::task::spawn_blocking(move || driver_thread.join()).await;
        storage.checkpoint()?;
        result
    }
}

/// `keel snapshot restore`: builds the data dir of a member of a new cluster
/// (described by `cfg`, as `keel store` would be started) from a backup file,
/// with every key, revision, the compaction point and the leases of the
/// backup. Every member restored from the same file with the same cluster
/// flags starts from the same state and Raft log position.
pub fn restore(
    cfg: &Config,
    backup_file: &std::path::Path,
    skip_hash_check: bool,
) -> Result<ImageSummary> {
    let dir_in_use = std::fs::read_dir(&cfg.data_dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if dir_in_use {
        return Err(Error::Config(format!(
            "data-dir {:?} exists",
            cfg.data_dir.display().to_string()
        )));
    }
    let summary = crate::backup::verify_backup(backup_file, skip_hash_check)?;
    let mut cfg = cfg.clone();
    cfg.new_cluster = true;
    let server = Server::new(cfg)?;
    server
        .store
        .install_image(&mut std::fs::File::open(backup_file)?)?;
    // The backup carries the old cluster's member list: the new one is the
    // restored cluster's (as etcd's restore rewrites its members bucket).
    Membership::replace_all(&server.store, &initial_members(&server.cfg.initial_cluster))?;
    // The Raft log starts after the restored state: a snapshot one past the
    // backup's index, with the new cluster's membership.
    let index = summary.consistent_index.max(1) + 1;
    server.store.set_consistent_index(index)?;
    let mut snap = raft::eraftpb::Snapshot::default();
    let meta = snap.mut_metadata();
    meta.index = index;
    meta.term = 1;
    meta.set_conf_state(server.storage.conf_state());
    server.storage.apply_snapshot(&snap)?;
    server.storage.checkpoint()?;
    tracing::info!(
        revision = summary.revision,
        records = summary.records,
        index,
        "restored a snapshot"
    );
    Ok(summary)
}

/// etcd's minimum lease TTL: 1.5 election timeouts, rounded up to seconds.
fn min_lease_ttl(cfg: &Config) -> i64 {
    let ms = cfg.election_timeout().as_millis() as i64 * 3 / 2;
    (ms + 999) / 1000
}

async fn bind(addr: std::net::SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config(format!("listen tcp {addr} ({what} port): {e}")))
}

const META_CLUSTER_ID: &[u8] = b"cluster_id";
const META_MEMBER_ID: &[u8] = b"member_id";
const META_NAME: &[u8] = b"name";
/// The bootstrap member list of a new cluster's member (JSON).
const META_MEMBERS: &[u8] = b"members";
/// The members a joining member learned of when it joined (JSON).
const META_REMOTES: &[u8] = b"remotes";

/// The meta key naming the data dir's MVCC backend.
const META_BACKEND: &[u8] = b"backend";

/// Opens the data dir's MVCC backend: the kind it was created with (its
/// meta record; without one, a `mvcc` directory means the log, a non-empty
/// sled tree means sled), or `wanted` for a new data dir, recorded.
fn open_backend(
    db: &sled::Db,
    meta: &sled::Tree,
    dir: &std::path::Path,
    wanted: crate::config::BackendKind,
) -> Result<Arc<dyn crate::mvcc::Backend>> {
    use crate::config::BackendKind;
    let kind = backend_kind(db, meta, dir)?.unwrap_or(wanted);
    if kind != wanted {
        tracing::warn!(
            data_dir_backend = kind.name(),
            flag = wanted.name(),
            "--backend applies to new data dirs only; using the data dir's"
        );
    }
    meta.insert(META_BACKEND, kind.name())?;
    tracing::info!(backend = kind.name(), "mvcc backend");
    Ok(match kind {
        BackendKind::Sled => Arc::new(SledBackend::with_db(db.clone(), db.open_tree("mvcc")?)),
        BackendKind::Log => Arc::new(crate::mvcc::LogBackend::open(&dir.join("mvcc"))?),
    })
}

/// Opens the MVCC backend of a stopped member's data dir (`db` its sled
/// database, `member_dir` its `member` directory) for reading, changing
/// nothing (`keelctl inspect`).
pub fn open_backend_read_only(
    db: &sled::Db,
    member_dir: &std::path::Path,
) -> Result<Arc<dyn crate::mvcc::Backend>> {
    use crate::config::BackendKind;
    let meta = db.open_tree("meta")?;
    Ok(match backend_kind(db, &meta, member_dir)? {
        Some(BackendKind::Log) => Arc::new(crate::mvcc::LogBackend::open_read_only(
            &member_dir.join("mvcc"),
        )?),
        _ => Arc::new(SledBackend::with_db(db.clone(), db.open_tree("mvcc")?)),
    })
}

/// The kind of MVCC backend the data dir has: its meta record, else a
/// `mvcc` directory means the log and a non-empty sled tree sled; `None`
/// for a new data dir.
fn backend_kind(
    db: &sled::Db,
    meta: &sled::Tree,
    dir: &std::path::Path,
) -> Result<Option<crate::config::BackendKind>> {
    use crate::config::BackendKind;
    let log_dir = dir.join("mvcc");
    Ok(match meta.get(META_BACKEND)? {
        Some(name) => Some(BackendKind::from_name(&name).ok_or_else(|| {
            Error::Corrupt(format!(
                "unknown MVCC backend {:?} recorded in the data dir",
                String::from_utf8_lossy(&name)
            ))
        })?),
        None if log_dir.exists() => Some(BackendKind::Log),
        None if !db.open_tree("mvcc")?.is_empty() => Some(BackendKind::Sled),
        None => None,
    })
}

/// Bootstraps a fresh data dir (a new cluster's member, or a member joining
/// a running one), or checks that an existing one is this member's. Sets the
/// ids in `cfg` to the data dir's; returns the peers known from outside the
/// replicated member list (a joined member's view of the cluster).
fn check_identity(
    cfg: &mut Config,
    meta: &sled::Tree,
    storage: &RaftStorage,
    store: &Store,
    dialer: &crate::tls::Dialer,
) -> Result<BTreeMap<MemberId, Vec<String>>> {
    let Some(cluster) = meta.get(META_CLUSTER_ID)? else {
        if !storage.is_empty() {
            return Err(Error::Corrupt(format!(
                "data dir {} has a Raft log but no member identity",
                cfg.data_dir.display()
            )));
        }
        return if cfg.new_cluster {
            bootstrap(cfg, meta, storage, store).map(|()| BTreeMap::new())
        } else {
            join_cluster(cfg, meta, storage, dialer)
        };
    };
    let cluster = read_u64(&cluster)?;
    let member = read_u64(&meta.get(META_MEMBER_ID)?.unwrap_or_default())?;
    let name = String::from_utf8_lossy(&meta.get(META_NAME)?.unwrap_or_default()).into_owned();
    if cluster != cfg.cluster_id || member != cfg.member_id {
        if cfg.new_cluster || name != cfg.name {
            return Err(Error::Config(format!(
                "data dir {} belongs to member {name:?} ({member:x}) of cluster {cluster:x}, but the flags describe member {:?} ({:x}) of cluster {:x}: start with the flags it was created with, or use an empty --data-dir",
                cfg.data_dir.display(),
                cfg.name,
                cfg.member_id,
                cfg.cluster_id
            )));
        }
        tracing::info!(
            member = format!("{member:x}"),
            cluster = format!("{cluster:x}"),
            "--initial-cluster-state existing: using the identity in the data dir"
        );
        cfg.cluster_id = cluster;
        cfg.member_id = member;
    }
    // A data dir bootstrapped before the member list was replicated: write
    // the bootstrap members, as every other initial member does.
    if !Membership::has_records(store)? {
        if let Some(json) = meta.get(META_MEMBERS)? {
            Membership::bootstrap(store, &decode_members(&json)?)?;
            storage.checkpoint()?;
        }
    }
    match meta.get(META_REMOTES)? {
        Some(json) => Ok(decode_members(&json)?
            .into_iter()
            .map(|m| (m.id, m.peer_urls))
            .collect()),
        None => Ok(BTreeMap::new()),
    }
}

/// A new cluster's member: Raft's configuration and the member list from
/// `--initial-cluster`, identical on every initial member.
fn bootstrap(cfg: &Config, meta: &sled::Tree, storage: &RaftStorage, store: &Store) -> Result<()> {
    let cs = ConfState {
        voters: cfg.initial_cluster.iter().map(|m| m.id).collect(),
        ..Default::default()
    };
    storage.bootstrap(cs)?;
    let members = initial_members(&cfg.initial_cluster);
    Membership::bootstrap(store, &members)?;
    meta.insert(META_CLUSTER_ID, &cfg.cluster_id.to_be_bytes())?;
    meta.insert(META_MEMBER_ID, &cfg.member_id.to_be_bytes())?;
    meta.insert(META_NAME, cfg.name.as_bytes())?;
    meta.insert(META_MEMBERS, encode_members(&members).as_bytes())?;
    storage.checkpoint()?;
    tracing::info!(
        members = cfg.initial_cluster.len(),
        "bootstrapped a new cluster member"
    );
    Ok(())
}

/// A member joining a running cluster: the ids come from the cluster; Raft
/// starts with an empty log and no configuration (the leader's snapshot
/// brings both).
fn join_cluster(
    cfg: &mut Config,
    meta: &sled::Tree,
    storage: &RaftStorage,
    dialer: &crate::tls::Dialer,
) -> Result<BTreeMap<MemberId, Vec<String>>> {
    let joined = join::join(cfg, dialer)?;
    cfg.cluster_id = joined.cluster_id;
    cfg.member_id = joined.member_id;
    meta.insert(META_CLUSTER_ID, &cfg.cluster_id.to_be_bytes())?;
    meta.insert(META_MEMBER_ID, &cfg.member_id.to_be_bytes())?;
    meta.insert(META_NAME, cfg.name.as_bytes())?;
    meta.insert(META_REMOTES, encode_members(&joined.members).as_bytes())?;
    storage.checkpoint()?;
    tracing::info!(
        member = format!("{:x}", cfg.member_id),
        cluster = format!("{:x}", cfg.cluster_id),
        members = joined.members.len(),
        "joining a running cluster"
    );
    Ok(joined
        .members
        .into_iter()
        .map(|m| (m.id, m.peer_urls))
        .collect())
}

/// Makes Raft's stored configuration the one the member list implies. They
/// agree unless a crash fell between the apply batch that recorded a
/// membership change and the conf state write after it; the member list,
/// written atomically with the applied index, is the one to trust.
fn sync_conf_state(membership: &Membership, storage: &RaftStorage) -> Result<()> {
    let Some((voters, learners)) = membership.conf_state() else {
        return Ok(());
    };
    let cs = storage.conf_state();
    let sorted = |v: &[u64]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v
    };
    if sorted(&cs.voters) == voters
        && sorted(&cs.learners) == learners
        && cs.voters_outgoing.is_empty()
        && cs.learners_next.is_empty()
    {
        return Ok(());
    }
    tracing::warn!(
        stored_voters = ?cs.voters,
        stored_learners = ?cs.learners,
        ?voters,
        ?learners,
        "raft conf state differs from the member list; using the member list"
    );
    storage.set_conf_state(&ConfState {
        voters,
        learners,
        ..Default::default()
    })?;
    storage.checkpoint()?;
    Ok(())
}

fn read_u64(b: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = b
        .try_into()
        .map_err(|_| Error::Corrupt("member identity record is damaged".into()))?;
    Ok(u64::from_be_bytes(arr))
}

fn initial_members(cluster: &[MemberConfig]) -> Vec<Member> {
    cluster
        .iter()
        .map(|m| Member {
            id: m.id,
            name: m.name.clone(),
            peer_urls: m.peer_urls.clone(),
            ..Member::default()
        })
        .collect()
}

fn encode_members(members: &[Member]) -> String {
    let list: Vec<serde_json::Value> = members
        .iter()
        .map(|m| serde_json::json!({"id": format!("{:x}", m.id), "name": m.name, "peer_urls": m.peer_urls}))
        .collect();
    serde_json::Value::Array(list).to_string()
}

fn decode_members(json: &[u8]) -> Result<Vec<Member>> {
    let bad = || Error::Corrupt("member list in the data dir's identity is damaged".into());
    let list: Vec<serde_json::Value> = serde_json::from_slice(json).map_err(|_| bad())?;
    list.iter()
        .map(|v| {
            let id = v["id"]
                .as_str()
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .ok_or_else(bad)?;
            let peer_urls = v["peer_urls"]
                .as_array()
                .ok_or_else(bad)?
                .iter()
                .filter_map(|u| u.as_str().map(str::to_string))
                .collect();
            Ok(Member {
                id,
                name: v["name"].as_str().unwrap_or_default().to_string(),
                peer_urls,
                ..Member::default()
            })
        })
        .collect()
}

/// Whether sled failed to open because another handle holds the data dir's
/// lock. sled reports it as an `Other` I/O error wrapping the `EWOULDBLOCK`
/// from `flock`, so the kind alone does not tell.
pub(crate) fn is_lock_conflict(e: &sled::Error) -> bool {
    match e {
        sled::Error::Io(io) => {
            io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().contains("could not acquire lock")
        }
        _ => false,
    }
}
