//! Joining a running cluster (`--initial-cluster-state existing`), after
//! etcd's `GetClusterFromRemotePeers` and `ValidateClusterAndAssignIDs`.
//!
//! The new member asks the other members named in `--initial-cluster` for
//! the cluster id and the member list over their peer ports. The list must
//! name exactly the members of `--initial-cluster` (the running members plus
//! this one, already added with MemberAdd), matched by peer URLs; this
//! member's id is the one MemberAdd gave it. It then starts with an empty
//! Raft log and no configuration: the leader sends it a snapshot, which
//! brings the configuration, the data and the member list.

use std::time::{Duration, Instant};

use keel_proto::peer::membership_peer_client::MembershipPeerClient;
use keel_proto::peer::MembersRequest;

use super::Member;
use crate::config::{ClusterId, Config, MemberConfig, MemberId};
use crate::error::{Error, Result};
use crate::tls::Dialer;

/// How long to keep asking the peers for the member list.
const FETCH_FOR: Duration = Duration::from_secs(5);

/// What a joining member learned from the cluster.
#[derive(Debug, Clone)]
pub struct Joined {
    pub cluster_id: ClusterId,
    /// This member's id, as MemberAdd chose it.
    pub member_id: MemberId,
    /// The running cluster's members, this one included.
    pub members: Vec<Member>,
}

/// Asks the peers for the cluster and checks it against the flags. Blocks
/// (on a thread of its own, so it can be called from anywhere).
pub fn join(cfg: &Config, dialer: &Dialer) -> Result<Joined> {
    let (me, others): (Vec<_>, Vec<_>) =
        cfg.initial_cluster.iter().partition(|m| m.name == cfg.name);
    let urls: Vec<String> = others.iter().flat_map(|m| m.peer_urls.clone()).collect();
    if urls.is_empty() {
        return Err(Error::Config(
            "--initial-cluster-state existing: --initial-cluster names no other member to join"
                .into(),
        ));
    }
    let mine: Vec<String> = me.first().map(|m| m.peer_urls.clone()).unwrap_or_default();
    let dialer = dialer.clone();
    let (cluster_id, members) = std::thread::spawn(move || -> Result<(ClusterId, Vec<Member>)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(fetch(&urls, &mine, &dialer, FETCH_FOR))
    })
    .join()
    .map_err(|_| Error::Config("joining: the fetch thread panicked".into()))??;
    let member_id = assign_id(&cfg.name, &cfg.initial_cluster, cluster_id, &members)?;
    Ok(Joined {
        cluster_id,
        member_id,
        members,
    })
}

/// The cluster id and member list from the first peer that answers with a
/// list naming this member (peer URLs `mine`, sorted). MemberAdd returns once
/// the member that served it has applied the change; another peer may not
/// have yet, and its list would fail the check. So a list without this
/// member is kept, and returned only if no peer names it by the deadline
/// (etcd takes the first answer, and can fail on that race).
async fn fetch(
    urls: &[String],
    mine: &[String],
    dialer: &Dialer,
    fetch_for: Duration,
) -> Result<(ClusterId, Vec<Member>)> {
    let deadline = Instant::now() + fetch_for;
    let mut without_me = None;
    loop {
        for url in urls {
            let endpoint = match dialer.endpoint(url) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(%url, error = %e, "joining: cannot dial peer");
                    continue;
                }
            };
            let endpoint = endpoint
                .connect_timeout(Duration::from_secs(1))
                .timeout(Duration::from_secs(2));
            let channel = match endpoint.connect().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(%url, error = ?e, "joining: peer unreachable");
                    continue;
                }
            };
            match MembershipPeerClient::new(channel)
                .members(MembersRequest {})
                .await
            {
                Ok(resp) => {
                    let resp = resp.into_inner();
                    if resp.members.is_empty() {
                        continue;
                    }
                    let members: Vec<Member> =
                        resp.members.into_iter().map(Member::from_proto).collect();
                    if members.iter().any(|m| has_peer_urls(m, mine)) {
                        return Ok((resp.cluster_id, members));
                    }
                    tracing::debug!(%url, "joining: the peer does not list this member yet");
                    without_me = Some((resp.cluster_id, members));
                }
                Err(e) => tracing::debug!(%url, error = %e, "joining: peer did not answer"),
            }
        }
        if Instant::now() >= deadline {
            if let Some(found) = without_me {
                return Ok(found);
            }
            return Err(Error::Config(
                "cannot fetch cluster info from peer urls: could not retrieve cluster information from the given URLs".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Whether `m` has exactly the peer URLs `sorted` (as `--initial-cluster`
/// gives them, sorted); a running member may list its own in any order.
fn has_peer_urls(m: &Member, sorted: &[String]) -> bool {
    let mut theirs = m.peer_urls.clone();
    theirs.sort();
    theirs == sorted
}

/// etcd's `ValidateClusterAndAssignIDs`: same number of members, each
/// running member's peer URLs equal to those of one in `--initial-cluster`;
/// returns the id of the one named `--name`.
fn assign_id(
    name: &str,
    initial: &[MemberConfig],
    cluster_id: ClusterId,
    members: &[Member],
) -> Result<MemberId> {
    let describe = || {
        let list: Vec<String> = members
            .iter()
            .map(|m| format!("{:x}={}", m.id, m.peer_urls.join(",")))
            .collect();
        format!("cluster {cluster_id:x} [{}]", list.join(" "))
    };
    if members.len() != initial.len() {
        return Err(Error::Config(format!(
            "error validating peerURLs {}: member count is unequal",
            describe()
        )));
    }
    let mut mine = None;
    for m in members {
        let local = initial.iter().find(|l| has_peer_urls(m, &l.peer_urls));
        match local {
            Some(l) if l.name == name => mine = Some(m.id),
            Some(_) => {}
            None => {
                return Err(Error::Config(format!(
                    "error validating peerURLs {}: PeerURLs: no match found for existing member ({:x}, {:?})",
                    describe(),
                    m.id,
                    m.peer_urls
                )))
            }
        }
    }
    mine.ok_or_else(|| {
        Error::Config(format!(
            "error validating peerURLs {}: no member has this member's peer URLs; add it with MemberAdd first",
            describe()
        ))
    })
}

#[cfg(test)]
mod tests {
    use keel_proto::etcdserverpb::{MemberPromoteRequest, MemberPromoteResponse};
    use keel_proto::peer::membership_peer_server::{MembershipPeer, MembershipPeerServer};
    use keel_proto::peer::MembersResponse;

    use super::*;
    use crate::config::parse_initial_cluster;

    /// A peer that answers Members with a fixed list.
    struct FixedList(Vec<keel_proto::peer::Member>);

    #[tonic::async_trait]
    impl MembershipPeer for FixedList {
        async fn members(
            &self,
            _: tonic::Request<MembersRequest>,
        ) -> std::result::Result<tonic::Response<MembersResponse>, tonic::Status> {
            Ok(tonic::Response::new(MembersResponse {
                cluster_id: 7,
                members: self.0.clone(),
            }))
        }
        async fn member_promote(
            &self,
            _: tonic::Request<MemberPromoteRequest>,
        ) -> std::result::Result<tonic::Response<MemberPromoteResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("not in this test"))
        }
    }

    /// Serves `list` (ids and comma-separated peer URLs) on a free loopback
    /// port; its URL.
    async fn peer_with(list: &[(u64, &str)]) -> String {
        let members = list
            .iter()
            .map(|(id, urls)| keel_proto::peer::Member {
                id: *id,
                peer_urls: urls.split(',').map(String::from).collect(),
                ..Default::default()
            })
            .collect();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(MembershipPeerServer::new(FixedList(members)))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        url
    }

    #[tokio::test]
    async fn a_peer_that_has_not_applied_the_add_yet_is_passed_over() {
        // This member has two peer URLs; the caught-up peer lists them in
        // another order than --initial-cluster's sorted one.
        let me = [
            "http://127.0.0.1:8".to_string(),
            "http://127.0.0.1:9".to_string(),
        ];
        let behind = peer_with(&[(1, "http://127.0.0.1:1"), (2, "http://127.0.0.1:2")]).await;
        let caught_up = peer_with(&[
            (1, "http://127.0.0.1:1"),
            (2, "http://127.0.0.1:2"),
            (3, "http://127.0.0.1:9,http://127.0.0.1:8"),
        ])
        .await;
        let urls = [behind.clone(), caught_up];
        let started = Instant::now();
        let (cluster, members) = fetch(&urls, &me, &Dialer::default(), FETCH_FOR)
            .await
            .unwrap();
        assert!(started.elapsed() < FETCH_FOR, "not held to the deadline");
        assert_eq!(cluster, 7);
        assert_eq!(members.len(), 3, "the list that names this member");
        // With no peer naming it, the other list comes back at the deadline
        // (and fails the check with etcd's message).
        let started = Instant::now();
        let (_, members) = fetch(
            &[behind],
            &me,
            &Dialer::default(),
            Duration::from_millis(500),
        )
        .await
        .unwrap();
        assert_eq!(members.len(), 2);
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "asked again until the deadline"
        );
    }

    fn member(id: u64, url: &str) -> Member {
        Member {
            id,
            peer_urls: vec![url.into()],
            ..Member::default()
        }
    }

    #[test]
    fn ids_come_from_the_running_cluster() {
        let c = parse_initial_cluster("a=http://h:1,b=http://h:2,new=http://h:3", "t").unwrap();
        let running = [
            member(10, "http://h:1"),
            member(11, "http://h:2"),
            member(12, "http://h:3"),
        ];
        assert_eq!(assign_id("new", &c, 7, &running).unwrap(), 12);
        let e = assign_id("new", &c, 7, &running[..2])
            .unwrap_err()
            .to_string();
        assert!(e.contains("member count is unequal"), "{e}");
        let other = [
            member(10, "http://h:1"),
            member(11, "http://h:2"),
            member(12, "http://h:9"),
        ];
        let e = assign_id("new", &c, 7, &other).unwrap_err().to_string();
        assert!(e.contains("no match found for existing member (c,"), "{e}");
    }
}
