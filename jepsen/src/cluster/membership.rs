//! Membership changes through etcd's Cluster API (keel and etcd alike):
//!
//! - [`Cluster::remove_member`]: MemberRemove of member `i` through another
//!   member that is up (its id found with MemberList, by peer URL), then
//!   SIGKILL it and wipe its data dir. From then on it is *removed*: no
//!   restart brings it back ([`Cluster::spawn`] skips it).
//! - [`Cluster::rejoin_member`]: MemberAdd of its peer URL through a member
//!   that is up, then start it with an empty data dir, `--initial-cluster-state
//!   existing` and the initial cluster the add produced (as etcd's docs say
//!   to); wait until it is healthy. Every later start of it keeps those flags.
//!
//! Both retry on every member that is up until a deadline. A call whose
//! outcome is unknown is resolved by listing again: a remove whose member is
//! gone from the list, or an add whose peer URL is listed, took effect. The
//! calls run on a small tokio runtime of their own, since the nemesis and
//! `heal_all` are blocking code.

use std::time::{Duration, Instant};

use keel_client::cluster::Member as ApiMember;

use super::Cluster;
use crate::error::harness;
use crate::Result;

/// How long a removal may take (including retries on other members).
const REMOVE_FOR: Duration = Duration::from_secs(20);
/// How long an add may take; then the new member has as long to be healthy.
const ADD_FOR: Duration = Duration::from_secs(30);

impl Cluster {
    /// Whether member `i` was removed and not yet added back.
    pub fn is_removed(&self, i: usize) -> bool {
        self.procs()[i].removed
    }

    fn peer_url(&self, i: usize) -> String {
        format!("http://{}", self.members[i].peer)
    }

    /// Members other than `i` that are running, not paused and not removed.
    fn survivors(&self, i: usize) -> Vec<usize> {
        (0..self.len())
            .filter(|&j| j != i && self.is_up(j) && !self.is_removed(j))
            .collect()
    }

    /// Runs `f` with a client pinned to member `j`, on a runtime of its own.
    fn with_client<T>(
        &self,
        j: usize,
        f: impl AsyncFnOnce(keel_client::Client) -> keel_client::Result<T>,
    ) -> Result<T> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(harness)?;
        let endpoint = self.members[j].endpoint();
        rt.block_on(async move {
            let opts = keel_client::Options {
                dial_timeout: Duration::from_secs(1),
                request_timeout: Duration::from_secs(5),
                max_attempts: 1,
                ..Default::default()
            };
            let c = keel_client::Client::new([endpoint], opts).map_err(harness)?;
            f(c).await.map_err(harness)
        })
    }

    /// Removes member `i` from the cluster, then kills it and wipes its data.
    pub fn remove_member(&self, i: usize) -> Result<String> {
        let url = self.peer_url(i);
        let deadline = Instant::now() + REMOVE_FOR;
        let mut errors: Vec<String> = Vec::new();
        let (id, via) = 'done: loop {
            for j in self.survivors(i) {
                let url = url.clone();
                let r = self.with_client(j, async move |c| {
                    let list = c.member_list().await?;
                    let Some(id) = find(&list.members, &url) else {
                        return Ok(None);
                    };
                    c.member_remove(id).await?;
                    Ok(Some(id))
                });
                match r {
                    Ok(id) => break 'done (id, j),
                    Err(e) => errors.push(format!("{}: {e}", self.members[j].name)),
                }
            }
            if Instant::now() > deadline {
                return Err(harness(format!(
                    "cannot remove {}: {}",
                    self.members[i].name,
                    last(&errors)
                )));
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        self.procs()[i].removed = true;
        self.stop(i, false);
        wipe(&self.members[i].data_dir)?;
        let id = id.map_or("not listed".to_string(), |id| format!("id {id:x}"));
        Ok(format!(
            "removed {} ({id}) through {}, killed it and wiped its data{}",
            self.members[i].name,
            self.members[via].name,
            retried(&errors)
        ))
    }

    /// Adds removed member `i` back and starts it empty; waits until healthy.
    pub fn rejoin_member(&self, i: usize) -> Result<String> {
        if !self.is_removed(i) {
            return Ok(format!("{} was not removed", self.members[i].name));
        }
        let started = Instant::now();
        let url = self.peer_url(i);
        let deadline = started + ADD_FOR;
        let mut errors: Vec<String> = Vec::new();
        let (members, via) = 'done: loop {
            for j in self.survivors(i) {
                let add = url.clone();
                let r = self.with_client(j, async move |c| {
                    let list = c.member_list().await?.members;
                    if find(&list, &add).is_some() {
                        return Ok(list);
                    }
                    let added = c.member_add(vec![add], false).await?;
                    if !added.members.is_empty() {
                        return Ok(added.members);
                    }
                    Ok(c.member_list().await?.members)
                });
                match r {
                    Ok(list) if find(&list, &url).is_some() => break 'done (list, j),
                    Ok(_) => errors.push(format!(
                        "{}: not listed after the add",
                        self.members[j].name
                    )),
                    Err(e) => errors.push(format!("{}: {e}", self.members[j].name)),
                }
            }
            if Instant::now() > deadline {
                return Err(harness(format!(
                    "cannot add {} back: {}",
                    self.members[i].name,
                    last(&errors)
                )));
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        let initial = self.initial_cluster_of(&members);
        wipe(&self.members[i].data_dir)?;
        {
            let mut procs = self.procs();
            procs[i].removed = false;
            procs[i].joined = Some(initial);
        }
        self.spawn(i)?;
        self.wait_healthy(i, ADD_FOR)?;
        let id = find(&members, &url).map_or(String::new(), |id| format!(" (new id {id:x})"));
        Ok(format!(
            "added {}{id} back through {}, started it empty, healthy after {:.1} s{}",
            self.members[i].name,
            self.members[via].name,
            started.elapsed().as_secs_f64(),
            retried(&errors)
        ))
    }

    /// `name=peer_url,...` for a member list, with this cluster's names
    /// (a member added but not started has no name in the list yet).
    fn initial_cluster_of(&self, list: &[ApiMember]) -> String {
        list.iter()
            .flat_map(|m| {
                m.peer_ur_ls.iter().map(move |u| {
                    let name = (0..self.len())
                        .find(|&k| &self.peer_url(k) == u)
                        .map_or(m.name.clone(), |k| self.members[k].name.clone());
                    format!("{name}={u}")
                })
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The id of the member with peer URL `url`.
fn find(list: &[ApiMember], url: &str) -> Option<u64> {
    list.iter()
        .find(|m| m.peer_ur_ls.iter().any(|u| u == url))
        .map(|m| m.id)
}

fn wipe(dir: &std::path::Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(harness(format!("cannot wipe {}: {e}", dir.display())))
        }
        _ => Ok(()),
    }
}

fn last(errors: &[String]) -> String {
    errors
        .last()
        .cloned()
        .unwrap_or_else(|| "no other member is up".into())
}

fn retried(errors: &[String]) -> String {
    match errors.len() {
        0 => String::new(),
        n => format!(" ({n} failed attempt(s) first, last: {})", last(errors)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, name: &str, url: &str) -> ApiMember {
        ApiMember {
            id,
            name: name.into(),
            peer_ur_ls: vec![url.into()],
            ..Default::default()
        }
    }

    #[test]
    fn members_are_found_by_peer_url() {
        let list = [
            member(7, "m0", "http://127.0.0.1:1"),
            member(9, "", "http://127.0.0.1:2"),
        ];
        assert_eq!(find(&list, "http://127.0.0.1:2"), Some(9));
        assert_eq!(find(&list, "http://127.0.0.1:1"), Some(7));
        assert_eq!(find(&list, "http://127.0.0.1:3"), None);
    }
}
