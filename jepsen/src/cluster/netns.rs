//! `--netns` mode: each member in its own network namespace, all joined by one
//! bridge, so that faults are real packet loss rather than a hook in the
//! member. Needs root and iproute2; partitions use iptables when it works in a
//! namespace (probed at setup), else blackhole routes (both drop a peer's
//! packets inside a namespace).
//!
//! Layout for a run with tag `T` (derived from the harness's pid, so that two
//! runs never share names): namespaces `keel-jepsen-T-m<i>`, a bridge `kjT`
//! with address 10.77.S.1/24 (S from the pid, 10.77.0.0/16 is a private range),
//! and per member a veth pair `kjT-<i>` (bridge side) / `kjT-<i>n` (member side,
//! address 10.77.S.(10+i)). Clients stay in the root namespace and reach the
//! members through the bridge. Only names this run created are ever touched;
//! [`Drop`] deletes them (deleting a namespace deletes its veth end, which
//! deletes the pair).
//!
//! Faults: [`Netns::cut`] drops both directions between a member and peers
//! (iptables `INPUT -s` / `OUTPUT -d` DROP in the member's namespace);
//! [`Netns::degrade`] sets a `tc netem` qdisc on every member's interface (delay
//! 75 ms ± 50 ms, or 50 % loss, as Jepsen's etcd tests do). Kernels without
//! `sch_netem` (probed at setup) cannot delay; they lose packets through
//! iptables' `statistic` match instead (50 % of every member's input).

use std::net::Ipv4Addr;
use std::process::Command;

use crate::error::harness;
use crate::Result;

/// The namespaces, bridge and links of one run.
pub struct Netns {
    tag: String,
    subnet: u8,
    members: usize,
    created: Vec<String>,
    bridge: Option<String>,
    iptables: bool,
    netem: bool,
}

/// A degraded network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quality {
    /// 75 ms ± 50 ms on every packet.
    Delay,
    /// Half of all packets dropped.
    Loss,
}

/// The iptables rule behind loss without netem.
const LOSS_RULE: [&str; 8] = [
    "INPUT",
    "-m",
    "statistic",
    "--mode",
    "random",
    "--probability",
    "0.5",
    "-j",
];

impl Netns {
    /// Creates a namespace per member and the bridge. Needs root.
    pub fn setup(members: usize) -> Result<Netns> {
        if !is_root() {
            return Err(harness("--netns needs root (network namespaces)"));
        }
        let pid = std::process::id();
        let mut n = Netns {
            tag: format!("{}", pid % 100_000),
            subnet: (pid % 250) as u8 + 1,
            members,
            created: Vec::new(),
            bridge: None,
            iptables: false,
            netem: false,
        };
        let br = n.bridge_name();
        run(&["ip", "link", "add", &br, "type", "bridge"])?;
        n.bridge = Some(br.clone());
        run(&["ip", "addr", "add", &format!("{}/24", n.host()), "dev", &br])?;
        run(&["ip", "link", "set", &br, "up"])?;
        for i in 0..members {
            let ns = n.ns(i);
            run(&["ip", "netns", "add", &ns])?;
            n.created.push(ns.clone());
            let (outer, inner) = (format!("kj{}-{i}", n.tag), format!("kj{}-{i}n", n.tag));
            run(&[
                "ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ])?;
            run(&["ip", "link", "set", &inner, "netns", &ns])?;
            run(&["ip", "link", "set", &outer, "master", &br])?;
            run(&["ip", "link", "set", &outer, "up"])?;
            let addr = format!("{}/24", n.addr(i));
            n.in_ns(i, &["ip", "addr", "add", &addr, "dev", &inner])?;
            n.in_ns(i, &["ip", "link", "set", &inner, "up"])?;
            n.in_ns(i, &["ip", "link", "set", "lo", "up"])?;
        }
        n.iptables = crate::db::on_path("iptables").is_some()
            && n.in_ns(0, &["iptables", "-L", "INPUT", "-n"]).is_ok();
        n.netem = n
            .in_ns(
                0,
                &[
                    "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
                ],
            )
            .is_ok();
        if n.netem {
            n.in_ns(0, &["tc", "qdisc", "del", "dev", "lo", "root"])?;
        }
        Ok(n)
    }

    fn bridge_name(&self) -> String {
        format!("kj{}", self.tag)
    }

    /// Member `i`'s namespace.
    pub fn ns(&self, i: usize) -> String {
        format!("keel-jepsen-{}-m{i}", self.tag)
    }

    /// Member `i`'s address.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, 10 + i as u8)
    }

    /// The root namespace's address on the bridge.
    pub fn host(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, 1)
    }

    /// The command prefix that runs a program in member `i`'s namespace.
    pub fn exec_prefix(&self, i: usize) -> Vec<String> {
        ["ip", "netns", "exec"]
            .iter()
            .map(|s| s.to_string())
            .chain([self.ns(i)])
            .collect()
    }

    fn in_ns(&self, i: usize, args: &[&str]) -> Result<()> {
        let ns = self.ns(i);
        let mut all = vec!["ip", "netns", "exec", ns.as_str()];
        all.extend_from_slice(args);
        run(&all)
    }

    /// Drops all packets between member `i` and each of `peers`, both ways.
    pub fn cut(&self, i: usize, peers: &[usize]) -> Result<()> {
        for &p in peers {
            let a = self.addr(p).to_string();
            if self.iptables {
                self.in_ns(i, &["iptables", "-A", "INPUT", "-s", &a, "-j", "DROP"])?;
                self.in_ns(i, &["iptables", "-A", "OUTPUT", "-d", &a, "-j", "DROP"])?;
            } else {
                self.in_ns(i, &["ip", "route", "add", "blackhole", &format!("{a}/32")])?;
            }
        }
        Ok(())
    }

    /// Removes every cut of member `i`.
    pub fn heal(&self, i: usize) -> Result<()> {
        if self.iptables {
            self.in_ns(i, &["iptables", "-F", "INPUT"])?;
            self.in_ns(i, &["iptables", "-F", "OUTPUT"])
        } else {
            for p in 0..self.members {
                let a = format!("{}/32", self.addr(p));
                // Absent routes are fine: only cut peers have one.
                let ns = self.ns(i);
                let _ = Command::new("ip")
                    .args(["netns", "exec", &ns, "ip", "route", "del", "blackhole", &a])
                    .output();
            }
            Ok(())
        }
    }

    /// Whether the kernel has netem (probed at setup).
    pub fn has_netem(&self) -> bool {
        self.netem
    }

    /// Whether `q` can be made here.
    pub fn can(&self, q: Quality) -> bool {
        self.netem || (q == Quality::Loss && self.iptables)
    }

    /// Degrades (`Some`) or restores (`None`) every member's network.
    pub fn degrade(&self, q: Option<Quality>) -> Result<()> {
        for i in 0..self.members {
            let dev = format!("kj{}-{i}n", self.tag);
            let ns = self.ns(i);
            match q {
                Some(q) if self.netem => {
                    let spec: &[&str] = match q {
                        Quality::Delay => &["delay", "75ms", "50ms"],
                        Quality::Loss => &["loss", "50%"],
                    };
                    let mut args = vec!["tc", "qdisc", "replace", "dev", &dev, "root", "netem"];
                    args.extend_from_slice(spec);
                    self.in_ns(i, &args)?;
                }
                Some(Quality::Loss) if self.iptables => {
                    let mut args = vec!["iptables", "-A"];
                    args.extend_from_slice(&LOSS_RULE);
                    args.push("DROP");
                    self.in_ns(i, &args)?;
                }
                Some(q) => return Err(harness(format!("{q:?} needs the kernel's sch_netem"))),
                None => {
                    // Absent qdiscs and rules are fine: remove whatever is there.
                    let _ = Command::new("ip")
                        .args([
                            "netns", "exec", &ns, "tc", "qdisc", "del", "dev", &dev, "root",
                        ])
                        .output();
                    if self.iptables {
                        let mut args = vec!["netns", "exec", &ns, "iptables", "-D"];
                        args.extend_from_slice(&LOSS_RULE);
                        args.push("DROP");
                        while Command::new("ip")
                            .args(&args)
                            .output()
                            .is_ok_and(|o| o.status.success())
                        {}
                    }
                }
            }
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in self.created.drain(..) {
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        }
        if let Some(br) = self.bridge.take() {
            let _ = Command::new("ip").args(["link", "del", &br]).output();
        }
    }
}

/// Runs a command; a non-zero exit is a harness error with its stderr.
fn run(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| harness(format!("{}: {e}", args.join(" "))))?;
    if !out.status.success() {
        return Err(harness(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Effective uid 0, read from /proc (no libc).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
