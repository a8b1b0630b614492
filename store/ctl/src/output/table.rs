//! `-w table`: the bordered tables of etcdctl (olekukonko/tablewriter with
//! its defaults: upper-case centred headers, cells aligned right), and the
//! row builders the simple format shares (`a, b, c` lines).

use keel_proto::etcdserverpb::MemberListResponse;

use super::go;
use super::{DbStatus, EpHashKv, EpHealth, EpStatus};

/// Renders `hdr` and `rows` as etcdctl's tables do.
pub fn render(hdr: &[&str], rows: &[Vec<String>]) -> String {
    render_aligned(hdr, rows, false)
}

/// Like [`render`], with the cells aligned left when `left` (keelctl's own
/// tables).
pub fn render_aligned(hdr: &[&str], rows: &[Vec<String>], left: bool) -> String {
    let width = |s: &str| s.chars().count();
    let mut w: Vec<usize> = hdr.iter().map(|h| width(h)).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(width(c));
        }
    }
    let line: String = {
        let mut s = String::from("+");
        for x in &w {
            s.push_str(&"-".repeat(x + 2));
            s.push('+');
        }
        s.push('\n');
        s
    };
    let mut out = line.clone();
    out.push('|');
    for (i, h) in hdr.iter().enumerate() {
        let h = h.to_uppercase();
        let pad = w[i] - width(&h);
        let left = pad / 2;
        out.push_str(&format!(
            " {}{h}{} |",
            " ".repeat(left),
            " ".repeat(pad - left)
        ));
    }
    out.push('\n');
    out.push_str(&line);
    for r in rows {
        out.push('|');
        for (i, c) in r.iter().enumerate() {
            let pad = " ".repeat(w[i] - width(c));
            if left {
                out.push_str(&format!(" {c}{pad} |"));
            } else {
                out.push_str(&format!(" {pad}{c} |"));
            }
        }
        out.push('\n');
    }
    if !rows.is_empty() {
        out.push_str(&line);
    }
    out
}

fn print(hdr: &[&str], rows: &[Vec<String>]) {
    super::out(render(hdr, rows));
}

pub fn member_rows(r: &MemberListResponse) -> Vec<Vec<String>> {
    r.members
        .iter()
        .map(|m| {
            vec![
                format!("{:x}", m.id),
                if m.name.is_empty() {
                    "unstarted"
                } else {
                    "started"
                }
                .to_string(),
                m.name.clone(),
                m.peer_ur_ls.join(","),
                m.client_ur_ls.join(","),
                m.is_learner.to_string(),
            ]
        })
        .collect()
}

pub fn member_list(r: &MemberListResponse) {
    print(
        &[
            "ID",
            "Status",
            "Name",
            "Peer Addrs",
            "Client Addrs",
            "Is Learner",
        ],
        &member_rows(r),
    );
}

pub fn endpoint_health(hs: &[EpHealth]) {
    let rows: Vec<Vec<String>> = hs
        .iter()
        .map(|h| {
            vec![
                h.ep.clone(),
                h.health.to_string(),
                go::duration(h.took),
                h.error.clone(),
            ]
        })
        .collect();
    print(&["endpoint", "health", "took", "error"], &rows);
}

pub fn status_rows(s: &[EpStatus]) -> Vec<Vec<String>> {
    s.iter()
        .map(|e| {
            let r = &e.resp;
            let member = r.header.as_ref().map(|h| h.member_id).unwrap_or(0);
            vec![
                e.ep.clone(),
                format!("{member:x}"),
                r.version.clone(),
                go::humanize_bytes(r.db_size.max(0) as u64),
                (r.leader == member).to_string(),
                r.is_learner.to_string(),
                r.raft_term.to_string(),
                r.raft_index.to_string(),
                r.raft_applied_index.to_string(),
                r.errors.join(", "),
            ]
        })
        .collect()
}

pub fn endpoint_status(s: &[EpStatus]) {
    print(
        &[
            "endpoint",
            "ID",
            "version",
            "db size",
            "is leader",
            "is learner",
            "raft term",
            "raft index",
            "raft applied index",
            "errors",
        ],
        &status_rows(s),
    );
}

pub fn hashkv_rows(s: &[EpHashKv]) -> Vec<Vec<String>> {
    s.iter()
        .map(|e| vec![e.ep.clone(), e.resp.hash.to_string()])
        .collect()
}

pub fn endpoint_hashkv(s: &[EpHashKv]) {
    print(&["endpoint", "hash"], &hashkv_rows(s));
}

pub fn db_status_rows(s: &DbStatus) -> Vec<Vec<String>> {
    vec![vec![
        format!("{:x}", s.hash),
        s.revision.to_string(),
        s.total_key.to_string(),
        go::humanize_bytes(s.total_size),
    ]]
}

pub fn db_status(s: &DbStatus) {
    print(
        &["hash", "revision", "total keys", "total size"],
        &db_status_rows(s),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_tablewriter() {
        let t = render(
            &["ID", "Status", "Name"],
            &[vec![
                "2e1259d415f2a040".into(),
                "started".into(),
                "e0".into(),
            ]],
        );
        assert_eq!(
            t,
            "+------------------+---------+------+\n\
             |        ID        | STATUS  | NAME |\n\
             +------------------+---------+------+\n\
             | 2e1259d415f2a040 | started |   e0 |\n\
             +------------------+---------+------+\n"
        );
    }
}
