//! End-to-end membership changes with real `keel` processes, driven through
//! the `etcd-client` crate's Cluster API: the member list on every member; a
//! learner added (with etcd's refusals around it), caught up through a
//! snapshot, refused what a learner cannot serve, and promoted; the leader
//! removed; a lost member replaced by one with an empty data dir; a fourth
//! member joining a loaded cluster after log compaction (equal HashKV
//! everywhere); a member's peer URLs updated. Then `etcdctl member ...` against keel and a real etcd
//! 3.4, compared.
//!
//! etcd's strict reconfiguration check wants every voter connected for 5 s
//! before an add (and before some removes): the tests retry "unhealthy
//! cluster" until then.

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::{require_tool, Cluster, Etcd};
use etcd_client::{Client, GetOptions, MemberAddOptions};

/// Faster elections, so a removed leader is replaced quickly.
const FAST: &[&str] = &["--heartbeat-interval", "50", "--election-timeout", "500"];

async fn client(c: &Cluster, i: usize) -> Client {
    Client::connect([c.members[i].url()], None).await.unwrap()
}

/// The gRPC code and message of a failed call.
fn status(e: etcd_client::Error) -> (tonic::Code, String) {
    match e {
        etcd_client::Error::GRpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("not a gRPC status: {other}"),
    }
}

/// Retries `f` while it fails with `retry_on` (a message), for up to 20 s.
async fn until_ok<T, F, Fut>(retry_on: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                let text = e.to_string();
                if !text.contains(retry_on) || Instant::now() > deadline {
                    panic!("{text}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn id_of(cl: &mut Client, name: &str) -> u64 {
    cl.member_list()
        .await
        .unwrap()
        .members()
        .iter()
        .find(|m| m.name() == name)
        .unwrap_or_else(|| panic!("no member {name}"))
        .id()
}

async fn put_keys(cl: &mut Client, n: usize) {
    for k in 0..n {
        cl.put(format!("k{k:03}"), format!("v{k}"), None)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_list_on_every_member() {
    let c = Cluster::start(3);
    let mut clusters = Vec::new();
    for i in 0..3 {
        let mut cl = client(&c, i).await;
        // Client URLs arrive once each member has published them.
        let deadline = Instant::now() + Duration::from_secs(10);
        let resp = loop {
            let resp = cl.member_list().await.unwrap();
            if resp.members().iter().all(|m| !m.client_urls().is_empty()) {
                break resp;
            }
            assert!(Instant::now() < deadline, "{:?}", resp.members());
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let header = resp.header().unwrap();
        assert_eq!(
            header.revision(),
            0,
            "etcd's cluster header has no revision"
        );
        clusters.push(header.cluster_id());
        let ids: Vec<u64> = resp.members().iter().map(|m| m.id()).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        assert_eq!(ids, sorted, "members are listed by id");
        assert!(ids.contains(&header.member_id()));
        for m in resp.members() {
            let k = c.members.iter().position(|h| h.name == m.name()).unwrap();
            assert_eq!(m.peer_urls(), [c.members[k].peer_url()]);
            assert_eq!(m.client_urls(), [c.members[k].url()]);
            assert!(!m.is_learner());
        }
    }
    assert!(clusters.iter().all(|id| *id == clusters[0]), "{clusters:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_joins_catches_up_and_is_promoted() {
    let mut c = Cluster::start_with(3, FAST);
    let mut cl = client(&c, 0).await;
    put_keys(&mut cl, 50).await;
    let j = c.join("m3", FAST);
    let url = c.members[j].peer_url();
    let add = until_ok("unhealthy cluster", || {
        let (mut cl, url) = (cl.clone(), url.clone());
        async move {
            cl.member_add([url], Some(MemberAddOptions::new().with_is_learner()))
                .await
        }
    })
    .await;
    let learner = add.member().unwrap().clone();
    assert!(learner.is_learner() && learner.name().is_empty());
    let learner_id = learner.id();
    assert_eq!(add.member_list().len(), 4);

    // etcd's refusals, with its codes and messages.
    use tonic::Code::{FailedPrecondition, InvalidArgument, NotFound};
    let other = format!("http://127.0.0.1:{}", common::free_port());
    let e = cl
        .member_add(
            [other.clone()],
            Some(MemberAddOptions::new().with_is_learner()),
        )
        .await
        .unwrap_err();
    assert_eq!(
        status(e),
        (
            FailedPrecondition,
            "etcdserver: too many learner members in cluster".into()
        )
    );
    let e = cl
        .member_add([c.members[1].peer_url()], None)
        .await
        .unwrap_err();
    assert_eq!(
        status(e),
        (
            FailedPrecondition,
            "etcdserver: Peer URLs already exists".into()
        )
    );
    let e = cl
        .member_add(["http://127.0.0.1:1/path"], None)
        .await
        .unwrap_err();
    assert_eq!(
        status(e),
        (
            InvalidArgument,
            "etcdserver: given member URLs are invalid".into()
        )
    );
    // Not started, so not in sync.
    let e = cl.member_promote(learner.id()).await.unwrap_err();
    assert_eq!(
        status(e),
        (
            FailedPrecondition,
            "etcdserver: can only promote a learner member which is in sync with leader".into()
        )
    );
    let voter = id_of(&mut cl, "m1").await;
    let e = cl.member_promote(voter).await.unwrap_err();
    assert_eq!(
        status(e),
        (
            FailedPrecondition,
            "etcdserver: can only promote a learner member".into()
        )
    );
    let e = cl.member_remove(0x1234).await.unwrap_err();
    assert_eq!(status(e), (NotFound, "etcdserver: member not found".into()));
    let e = cl.member_update(0x1234, [other]).await.unwrap_err();
    assert_eq!(status(e), (NotFound, "etcdserver: member not found".into()));

    // The learner starts with an empty data dir and catches up by snapshot.
    c.spawn(j);
    let mut lc = client(&c, j).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let serializable = GetOptions::new().with_prefix().with_serializable();
        if let Ok(r) = lc.get("k", Some(serializable)).await {
            if r.kvs().len() == 50 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "learner did not catch up; log:\n{}",
            c.log_tail(j)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What a learner does not serve.
    let refused = (
        tonic::Code::Unavailable,
        "etcdserver: rpc not supported for learner".to_string(),
    );
    assert_eq!(status(lc.get("k000", None).await.unwrap_err()), refused);
    assert_eq!(status(lc.put("x", "y", None).await.unwrap_err()), refused);
    assert_eq!(status(lc.member_list().await.unwrap_err()), refused);

    // In sync now: promoted (from a follower too: forwarded to the leader).
    let follower = (0..3).find(|&i| Some(i) != c.leader()).unwrap();
    let mut fc = client(&c, follower).await;
    let promoted = until_ok("in sync with leader", || {
        let mut fc = fc.clone();
        async move { fc.member_promote(learner_id).await }
    })
    .await;
    assert!(promoted.members().iter().all(|m| !m.is_learner()));
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        match lc.get("k049", None).await {
            Ok(r) => break r,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(r.kvs()[0].value(), b"v49");
    lc.put("from-m3", "yes", None).await.unwrap();
    // The new member publishes its name and client URLs through Raft.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = fc.member_list().await.unwrap();
        let m3 = list
            .members()
            .iter()
            .find(|m| m.id() == learner_id)
            .unwrap();
        if m3.name() == "m3" {
            assert_eq!(m3.client_urls(), [c.members[j].url()]);
            break;
        }
        assert!(Instant::now() < deadline, "m3 never published: {m3:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_is_removed_and_the_cluster_goes_on() {
    let mut c = Cluster::start_with(3, FAST);
    let leader = c.wait_leader(Duration::from_secs(10));
    let other = (leader + 1) % 3;
    let mut cl = client(&c, other).await;
    cl.put("before", "1", None).await.unwrap();
    let id = id_of(&mut cl, &c.members[leader].name).await;
    let resp = until_ok("unhealthy cluster", || {
        let mut cl = cl.clone();
        async move { cl.member_remove(id).await }
    })
    .await;
    assert_eq!(resp.members().len(), 2);
    // The removed leader stops by itself and says why.
    c.wait_exit(leader, Duration::from_secs(10));
    let log = std::fs::read_to_string(&c.members[leader].log).unwrap();
    assert!(
        log.contains("the member has been permanently removed from the cluster"),
        "{}",
        c.log_tail(leader)
    );
    c.forget(leader);
    let next = c.wait_leader(Duration::from_secs(10));
    assert_ne!(next, leader);
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = cl.put("after", "2", None).await {
        assert!(Instant::now() < deadline, "{e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = cl
        .get("", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(r.kvs().len(), 2);
    assert_eq!(cl.member_list().await.unwrap().members().len(), 2);
    // Its data dir is refused from now on.
    c.spawn(leader);
    let st = c.wait_exit(leader, Duration::from_secs(10));
    assert!(!st.success());
    let log = std::fs::read_to_string(&c.members[leader].log).unwrap();
    assert_eq!(
        log.matches("Error: the member has been permanently removed from the cluster")
            .count(),
        2,
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_member_is_replaced_by_one_with_an_empty_data_dir() {
    let mut c = Cluster::start_with(3, FAST);
    let leader = c.wait_leader(Duration::from_secs(10));
    let lost = (leader + 1) % 3;
    let keep = (leader + 2) % 3;
    let mut cl = client(&c, leader).await;
    put_keys(&mut cl, 100).await;
    let lost_id = id_of(&mut cl, &c.members[lost].name).await;
    c.kill(lost);
    c.forget(lost);
    until_ok("unhealthy cluster", || {
        let mut cl = cl.clone();
        async move { cl.member_remove(lost_id).await }
    })
    .await;
    let j = c.join("m3", FAST);
    let url = c.members[j].peer_url();
    let add = until_ok("unhealthy cluster", || {
        let (mut cl, url) = (cl.clone(), url.clone());
        async move { cl.member_add([url], None).await }
    })
    .await;
    assert!(!add.member().unwrap().is_learner());
    c.spawn(j);
    c.wait_healthy(j, Duration::from_secs(20));
    let mut nc = client(&c, j).await;
    nc.put("k100", "from the new member", None).await.unwrap();
    // Every member holds the same keys at the same revision.
    let all = |rev| Some(GetOptions::new().with_prefix().with_revision(rev));
    let rev = cl
        .get("k", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let mut kc = client(&c, keep).await;
    let want = cl.get("k", all(rev)).await.unwrap();
    assert_eq!(want.kvs().len(), 101);
    let pairs = |r: &etcd_client::GetResponse| -> Vec<(Vec<u8>, Vec<u8>, i64)> {
        r.kvs()
            .iter()
            .map(|kv| (kv.key().to_vec(), kv.value().to_vec(), kv.mod_revision()))
            .collect()
    };
    for other in [&mut nc, &mut kc] {
        let got = other.get("k", all(rev)).await.unwrap();
        assert_eq!(pairs(&got), pairs(&want));
    }
    let ids: Vec<u64> = cl
        .member_list()
        .await
        .unwrap()
        .members()
        .iter()
        .map(|m| m.id())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(!ids.contains(&lost_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_member_joins_a_loaded_cluster_after_log_compaction() {
    // Small numbers so that a thousand writes truncate the leader's log.
    let flags = [
        FAST,
        &[
            "--snapshot-count",
            "300",
            "--experimental-snapshot-catchup-entries",
            "100",
        ],
    ]
    .concat();
    let mut c = Cluster::start_with(3, &flags);
    let mut cl = client(&c, 0).await;
    for i in 0..1000 {
        cl.put(format!("key/{:03}", i % 200), format!("value {i}"), None)
            .await
            .unwrap();
    }
    let leader = c.wait_leader(Duration::from_secs(10));
    c.wait_log_truncated(leader, Duration::from_secs(10));
    let j = c.join("m3", &flags);
    let url = c.members[j].peer_url();
    until_ok("unhealthy cluster", || {
        let (mut cl, url) = (cl.clone(), url.clone());
        async move { cl.member_add([url], None).await }
    })
    .await;
    c.spawn(j);
    c.wait_healthy(j, Duration::from_secs(30));
    assert!(c.metric(j, "keel_snapshots_installed_total").unwrap_or(0.0) >= 1.0);
    let rev = cl
        .put("after-join", "1", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    // Every member, the new one included, hashes the same history.
    let mut hashes = Vec::new();
    for i in 0..4 {
        let mut mc = client(&c, i).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let h = loop {
            match mc.hash_kv(rev).await {
                Ok(h) => break h,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("member {i}: {e}"),
            }
        };
        hashes.push((h.hash(), h.compact_version()));
    }
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_update_moves_a_member_to_new_peer_urls() {
    let mut c = Cluster::start_with(3, FAST);
    let leader = c.wait_leader(Duration::from_secs(10));
    let moved = (leader + 1) % 3;
    let mut cl = client(&c, leader).await;
    let id = id_of(&mut cl, &c.members[moved].name).await;
    c.stop(moved);
    let url = c.change_peer_port(moved);
    let resp = cl.member_update(id, [url.clone()]).await.unwrap();
    let m = resp.members().iter().find(|m| m.id() == id).unwrap();
    assert_eq!(m.peer_urls(), std::slice::from_ref(&url));
    // Restarted on the new port, it is reached there.
    c.restart(moved);
    let mut mc = client(&c, moved).await;
    mc.put("via-moved", "1", None).await.unwrap();
    let r = cl.get("via-moved", None).await.unwrap();
    assert_eq!(r.kvs().len(), 1);
    let list = mc.member_list().await.unwrap();
    let m = list.members().iter().find(|m| m.id() == id).unwrap();
    assert_eq!(m.peer_urls(), [url]);
}

/// One etcdctl run: stdout, stderr, exit code.
fn etcdctl(bin: &std::path::Path, endpoint: &str, args: &[String]) -> (String, String, i32) {
    let out = std::process::Command::new(bin)
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(endpoint)
        .args(args)
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

/// What differs by nature between two clusters, replaced by labels: member
/// and cluster ids (hex, padded hex, decimal), the first member's URLs, raft
/// terms, etcdctl's log timestamps and targets. Tables lose their widths and
/// multi-member outputs their order (members are listed by id, and ids
/// differ); JSON is compared as sorted structure.
struct Labels(Vec<(String, String)>);

impl Labels {
    fn apply(&self, text: &str) -> String {
        let mut t = text.to_string();
        for (from, to) in &self.0 {
            t = t.replace(from, to);
        }
        let mut out = String::new();
        for line in t.lines() {
            let mut l = line.to_string();
            for key in ["\"RaftTerm\" : ", "\"raft_term\":"] {
                l = replace_digits_after(&l, key);
            }
            // Listed in member id order.
            if let Some(list) = l
                .strip_prefix("ETCD_INITIAL_CLUSTER=\"")
                .and_then(|r| r.strip_suffix('"'))
            {
                let mut parts: Vec<&str> = list.split(',').collect();
                parts.sort_unstable();
                l = format!("ETCD_INITIAL_CLUSTER=\"{}\"", parts.join(","));
            }
            for key in ["\"ts\":\"", "\"target\":\""] {
                if let Some(p) = l.find(key) {
                    let start = p + key.len();
                    if let Some(end) = l[start..].find('"') {
                        l.replace_range(start..start + end, "S");
                    }
                }
            }
            out.push_str(&l);
            out.push('\n');
        }
        out
    }
}

fn replace_digits_after(line: &str, marker: &str) -> String {
    match line.find(marker) {
        Some(p) => {
            let start = p + marker.len();
            let n = line[start..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .count();
            format!("{}N{}", &line[..start], &line[start + n..])
        }
        None => line.to_string(),
    }
}

/// A JSON member list with ids as labels, members sorted, header numbers out.
fn canonical_json(text: &str, labels: &[(u64, String)]) -> String {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(text.trim()) else {
        return text.to_string();
    };
    if let Some(h) = v.get_mut("header").and_then(|h| h.as_object_mut()) {
        for k in ["cluster_id", "member_id", "raft_term"] {
            if h.contains_key(k) {
                h.insert(k.into(), "N".into());
            }
        }
    }
    if let Some(ms) = v.get_mut("members").and_then(|m| m.as_array_mut()) {
        for m in ms.iter_mut() {
            if let Some(id) = m.get("ID").and_then(|i| i.as_u64()) {
                let label = labels
                    .iter()
                    .find(|(i, _)| *i == id)
                    .map(|(_, l)| l.clone())
                    .unwrap_or_else(|| "ID-UNKNOWN".into());
                m["ID"] = label.into();
            }
        }
        ms.sort_by_key(|m| m["ID"].to_string());
    }
    v.to_string()
}

/// One etcdctl step's raw result, normalised at the end (when every id
/// that appears in it is known).
struct Step {
    args: Vec<String>,
    out: String,
    err: String,
    code: i32,
    /// A member list of several members: compared without line order.
    unordered: bool,
}

/// Runs the member script against one endpoint; the peer URLs it adds are
/// given, so that both servers see the same ones.
fn run_member_script(bin: &std::path::Path, endpoint: &str, urls: &[String]) -> Vec<String> {
    let run = |args: &[String]| etcdctl(bin, endpoint, args);
    let a = |s: &str| -> Vec<String> { s.split_whitespace().map(String::from).collect() };
    let list = || -> serde_json::Value {
        let (out, _, _) = run(&a("member list -w json"));
        serde_json::from_str(out.trim()).unwrap()
    };
    let id_with_url = |v: &serde_json::Value, url: &str| {
        v["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["peerURLs"][0] == url)
            .and_then(|m| m["ID"].as_u64())
    };
    // Who is there: the one member's id and URLs.
    let v = list();
    let me = &v["members"][0];
    let self_id = me["ID"].as_u64().unwrap();
    let cluster_id = v["header"]["cluster_id"].as_u64().unwrap();
    let own_peer = me["peerURLs"][0].as_str().unwrap().to_string();
    let own_client = me["clientURLs"][0].as_str().unwrap().to_string();
    let mut ids: Vec<(u64, String)> = vec![(self_id, "ID-SELF".into())];

    let mut steps: Vec<Step> = Vec::new();
    let mut step = |args: Vec<String>, unordered: bool| {
        let (out, err, code) = run(&args);
        steps.push(Step {
            args,
            out,
            err,
            code,
            unordered,
        });
    };
    for format in ["simple", "table", "json", "fields"] {
        step(a(&format!("member list -w {format}")), false);
    }
    step(
        a(&format!("member add l1 --peer-urls={} --learner", urls[0])),
        false,
    );
    let l1 = id_with_url(&list(), &urls[0]).expect("learner added");
    ids.push((l1, "ID-L1".into()));
    let (l1x, selfx) = (format!("{l1:x}"), format!("{self_id:x}"));
    for format in ["simple", "table", "json", "fields"] {
        step(a(&format!("member list -w {format}")), true);
    }
    for s in [
        format!("member add l2 --peer-urls={} --learner", urls[1]),
        format!("member add x --peer-urls={own_peer}"),
        "member add x --peer-urls=127.0.0.1:1".to_string(),
        "member add x".to_string(),
        format!("member promote {l1x}"),
        format!("member promote {selfx}"),
        "member promote ffff".to_string(),
        // (Not a learner: etcd 3.4's update also resets a learner's flag in
        // its member list, while Raft keeps it a learner; keel keeps it.)
        format!("member update {selfx} --peer-urls={}", urls[2]),
        "member update ffff --peer-urls=http://127.0.0.1:1".to_string(),
        format!("member update {l1x} --peer-urls={}", urls[2]),
        "member list -w json".to_string(),
        format!("member remove {l1x}"),
        format!("member remove {l1x}"),
        "member remove ffff".to_string(),
        "member remove zz".to_string(),
    ] {
        step(a(&s), false);
    }
    // Last: a voter that never starts (quorum is then lost, but the list is
    // local).
    step(a(&format!("member add v1 --peer-urls={}", urls[3])), false);
    if let Some(v1) = id_with_url(&list(), &urls[3]) {
        ids.push((v1, "ID-V1".into()));
    }
    step(a("member list -w table"), true);
    step(a("member list"), true);

    // What differs by nature, as labels.
    let mut labels: Vec<(String, String)> = Vec::new();
    for (id, label) in ids.iter().chain([(cluster_id, "CID".to_string())].iter()) {
        // "Member %16x added to cluster %16x"
        labels.push((format!("Member {id:16x}"), format!("Member {label}")));
        labels.push((format!("cluster {id:16x}"), format!("cluster {label}")));
        labels.push((format!("{id:x}"), label.clone()));
        labels.push((format!("{id}"), label.clone()));
    }
    labels.push((own_peer.clone(), "PEER-SELF".into()));
    labels.push((own_client.clone(), "CLIENT-SELF".into()));
    let labels = Labels(labels);
    steps
        .iter()
        .map(|s| {
            let mut out = if s.args.iter().any(|a| a == "json") {
                labels.apply(&canonical_json(&s.out, &ids))
            } else {
                labels.apply(&s.out)
            };
            if s.args.iter().any(|a| a == "table") {
                out = squeeze_table(&out);
            }
            if s.unordered {
                let mut lines: Vec<&str> = out.lines().collect();
                lines.sort_unstable();
                out = lines.join("\n");
            }
            format!(
                "$ etcdctl {}\n--- stdout\n{out}\n--- stderr\n{}--- exit {}\n",
                labels.apply(&s.args.join(" ")).trim_end(),
                labels.apply(&s.err),
                s.code
            )
        })
        .collect()
}

/// Table column widths follow the lengths of ids and URLs: runs of `-` and
/// of spaces become one.
fn squeeze_table(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = '\0';
    for ch in text.chars() {
        if (ch == '-' || ch == ' ') && ch == last {
            continue;
        }
        out.push(ch);
        last = ch;
    }
    out
}

#[test]
fn etcdctl_member_commands_match_etcd() {
    let Some(bin) = require_tool("etcdctl", "etcd-client") else {
        return;
    };
    let Some(etcd_bin) = require_tool("etcd", "etcd-server") else {
        return;
    };
    let urls: Vec<String> = (0..4)
        .map(|_| format!("http://127.0.0.1:{}", common::free_port()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(&etcd_bin, dir.path());
    let expected = run_member_script(&bin, &etcd.endpoint(), &urls);
    drop(etcd);
    // The same member name as the etcd member's, so outputs line up.
    let keel = Cluster::start_named(&["etcd0"], &[]);
    // MemberList shows client URLs once the member has published them.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !etcdctl(
        &bin,
        &keel.members[0].endpoint(),
        &["member".into(), "list".into()],
    )
    .0
    .contains(&keel.members[0].url())
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = run_member_script(&bin, &keel.members[0].endpoint(), &urls);
    common::assert_same_transcripts("member steps", &expected, &got);
    assert_eq!(expected.len(), got.len());
    let all = got.join("");
    for refusal in [
        "too many learner members in cluster",
        "Peer URLs already exists",
        "can only promote a learner member which is in sync with leader",
        "desc = etcdserver: can only promote a learner member\"",
        "code = NotFound desc = etcdserver: member not found",
    ] {
        assert!(all.contains(refusal), "{refusal} not seen:\n{all}");
    }
    println!(
        "{} etcdctl member steps print the same on keel as on etcd 3.4",
        got.len()
    );
}
