//! etcdctl's help and usage text, rendered from clap's command tree: NAME,
//! USAGE, (VERSION, API VERSION, COMMANDS), DESCRIPTION, OPTIONS and GLOBAL
//! OPTIONS, flags written as pflag writes them (`--name=default`, bool flags
//! as `--name[=false]`, strings quoted), the whole aligned with tabs as Go's
//! `text/tabwriter` (tab width 8, padding 1, tabs as padding) aligns it.
//!
//! Shown for `--help`/`-h`, `keelctl help [command]`, a command group given
//! without its subcommand, and (on stdout) with a flag error, as etcdctl.

use clap::{Arg, ArgAction, Command};

/// etcdctl's usage line for each command path (after the program name,
/// before ` [flags]`), and the long description where etcdctl has one.
fn usage_of(path: &str) -> (&'static str, Option<&'static str>) {
    match path {
        "get" => ("get [options] <key> [range_end]", None),
        "put" => (
            "put [options] <key> <value> (<value> can also be given from stdin)",
            Some(PUT_LONG),
        ),
        "del" => ("del [options] <key> [range_end]", None),
        "txn" => ("txn [options]", None),
        "compaction" => ("compaction [options] <revision>", None),
        "watch" => (
            "watch [options] [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]",
            None,
        ),
        "lease grant" => ("lease grant <ttl>", None),
        "lease revoke" => ("lease revoke <leaseID>", None),
        "lease timetolive" => ("lease timetolive <leaseID> [options]", None),
        "lease keep-alive" => ("lease keep-alive [options] <leaseID>", None),
        "member add" => ("member add <memberName> [options]", None),
        "member remove" => ("member remove <memberID>", None),
        "member update" => ("member update <memberID> [options]", None),
        "member list" => ("member list", Some(MEMBER_LIST_LONG)),
        "member promote" => (
            "member promote <memberID>",
            Some("Promotes a non-voting learner member to a voting one in the cluster."),
        ),
        "endpoint status" => ("endpoint status", Some(ENDPOINT_STATUS_LONG)),
        "snapshot save" => ("snapshot save <filename>", None),
        "snapshot restore" => ("snapshot restore <filename> [options]", None),
        "snapshot status" => ("snapshot status <filename>", Some(SNAPSHOT_STATUS_LONG)),
        "move-leader" => ("move-leader <transferee-member-id>", None),
        "lock" => ("lock <lockname> [exec-command arg1 arg2 ...]", None),
        "elect" => ("elect <election-name> [proposal]", None),
        "make-mirror" => ("make-mirror [options] <destination>", None),
        "check perf" => ("check perf [options]", None),
        "inspect history" => ("inspect history <key> [options]", None),
        "inspect tree" => ("inspect tree [prefix] [options]", None),
        "inspect data-dir" => ("inspect data-dir <path>", None),
        _ => ("", None),
    }
}

const PUT_LONG: &str = "Puts the given key into the store.

When <value> begins with '-', <value> is interpreted as a flag.
Insert '--' for workaround:

$ put <key> -- <value>
$ put -- <key> <value>

If <value> isn't given as a command line argument and '--ignore-value' is not specified,
this command tries to read the value from standard input.

If <lease> isn't given as a command line argument and '--ignore-lease' is not specified,
this command tries to read the value from standard input.

For example,
$ cat file | put <key>
will store the content of the file to <key>.";

const MEMBER_LIST_LONG: &str = "When --write-out is set to simple, this command prints out comma-separated member lists for each endpoint.
The items in the lists are ID, Status, Name, Peer Addrs, Client Addrs, Is Learner.";

const ENDPOINT_STATUS_LONG: &str = "When --write-out is set to simple, this command prints out comma-separated status lists for each endpoint.
The items in the lists are endpoint, ID, version, db size, is leader, is learner, raft term, raft index, raft applied index, errors.";

const SNAPSHOT_STATUS_LONG: &str = "When --write-out is set to simple, this command prints out comma-separated status lists for each endpoint.
The items in the lists are hash, revision, total keys, total size.";

/// Flags whose Go type is not a string (their default is not quoted).
const NOT_STRINGS: &[&str] = &[
    "dial-timeout",
    "command-timeout",
    "keepalive-time",
    "keepalive-timeout",
    "endpoints",
    "limit",
    "rev",
    "ttl",
];

/// Go's `text/tabwriter` with minwidth 0, tabwidth 8, padding 1, padchar
/// '\t' and no flags: tab-terminated cells of adjacent lines form columns,
/// each padded with tabs to the column's width rounded up to 8.
pub fn tabwriter(text: &str) -> String {
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<Vec<usize>> = lines.iter().map(|l| vec![0; l.len()]).collect();
    format_block(&lines, &mut widths, 0, 0, lines.len());
    let mut out = String::new();
    for (i, cells) in lines.iter().enumerate() {
        for (j, c) in cells.iter().enumerate() {
            out.push_str(c);
            if j + 1 < cells.len() {
                let w = widths[i][j].div_ceil(8) * 8;
                let n = (w - c.chars().count()).div_ceil(8);
                out.push_str(&"\t".repeat(n));
            }
        }
        if i + 1 < lines.len() {
            out.push('\n');
        }
    }
    out
}

/// Sets the width of column `col` for each block of adjacent lines that
/// have a cell there, then the columns to the right within each block.
fn format_block(
    lines: &[Vec<&str>],
    widths: &mut [Vec<usize>],
    col: usize,
    from: usize,
    to: usize,
) {
    let mut i = from;
    while i < to {
        if lines[i].len() <= col + 1 {
            i += 1;
            continue;
        }
        let start = i;
        let mut w = 0;
        while i < to && lines[i].len() > col + 1 {
            w = w.max(lines[i][col].chars().count() + 1);
            i += 1;
        }
        for row in widths.iter_mut().take(i).skip(start) {
            row[col] = w;
        }
        format_block(lines, widths, col + 1, start, i);
    }
}

fn is_bool(a: &Arg) -> bool {
    a.get_num_args().is_some_and(|r| r.min_values() == 0)
}

/// One pflag usage line (before tab alignment).
fn flag_line(a: &Arg) -> String {
    let long = a.get_long().unwrap_or("");
    let mut s = match a.get_short() {
        Some(c) => format!("  -{c}, --{long}"),
        None => format!("      --{long}"),
    };
    let def: Vec<String> = a
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    let def = def.join(",");
    let value = if long == "endpoints" {
        format!("[{def}]")
    } else if NOT_STRINGS.contains(&long) || is_bool(a) {
        def
    } else {
        crate::output::go::quote(def.as_bytes())
    };
    if is_bool(a) {
        s.push_str(&format!("[={value}]"));
    } else {
        s.push_str(&format!("={value}"));
    }
    let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
    s.push('\t');
    s.push_str(help.lines().next().unwrap_or(""));
    s
}

fn flags(args: &[&Arg], help_for: Option<&str>) -> String {
    let mut lines: Vec<(String, String)> = args
        .iter()
        .filter(|a| a.get_long().is_some() && !a.is_hide_set())
        .map(|a| (a.get_long().unwrap_or("").to_string(), flag_line(a)))
        .collect();
    if let Some(name) = help_for {
        lines.push((
            "help".into(),
            format!("  -h, --help[=false]\thelp for {name}"),
        ));
    }
    lines.sort();
    lines.into_iter().map(|(_, l)| format!("{l}\n")).collect()
}

fn short(c: &Command) -> String {
    c.get_about()
        .map(|a| a.to_string().lines().next().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// Every leaf command under `c` with its path (`lease grant`), sorted.
fn leaves(c: &Command, prefix: &str, out: &mut Vec<(String, String)>) {
    for s in c.get_subcommands() {
        let path = format!("{prefix}{}", s.get_name());
        if s.has_subcommands() {
            leaves(s, &format!("{path} "), out);
        } else {
            out.push((path, short(s)));
        }
    }
}

/// The help text of the command at `path` (empty: the root).
pub fn render(path: &[String]) -> String {
    let root = crate::Cli::command_for_help();
    let mut chain = vec![&root];
    for p in path {
        let Some(next) = chain.last().and_then(|c| c.find_subcommand(p)) else {
            break;
        };
        chain.push(next);
    }
    let cmd = *chain.last().expect("root");
    let names: Vec<&str> = chain[1..].iter().map(|c| c.get_name()).collect();
    let joined = names.join(" ");
    let is_root = names.is_empty();
    // Global flags: the root's, plus every ancestor's own global flags.
    let mut inherited: Vec<&Arg> = Vec::new();
    for c in &chain[..chain.len() - 1] {
        inherited.extend(c.get_arguments().filter(|a| a.is_global_set()));
    }
    let local: Vec<&Arg> = cmd
        .get_arguments()
        .filter(|a| a.get_long().is_some() && a.get_long() != Some("help"))
        .filter(|a| !matches!(a.get_action(), ArgAction::Help | ArgAction::Version))
        .collect();

    let mut t = String::new();
    t.push_str("NAME:\n");
    if is_root {
        t.push_str(&format!("\tkeelctl - {}\n\n", short(cmd)));
    } else {
        t.push_str(&format!("\t{joined} - {}\n\n", short(cmd)));
    }
    let (use_line, long) = usage_of(&joined);
    let use_line = if use_line.is_empty() {
        if cmd.has_subcommands() {
            format!("{joined} <subcommand>")
        } else {
            joined.clone()
        }
    } else {
        use_line.to_string()
    };
    t.push_str("USAGE:\n");
    if is_root {
        t.push_str("\tkeelctl [flags]\n\n");
        t.push_str(&format!("VERSION:\n\t{}\n\n", env!("CARGO_PKG_VERSION")));
    } else {
        t.push_str(&format!("\tkeelctl {use_line} [flags]\n\n"));
    }
    if cmd.has_subcommands() {
        t.push_str("API VERSION:\n\t3.4\n\n\nCOMMANDS:\n");
        if is_root {
            let mut all = Vec::new();
            leaves(cmd, "", &mut all);
            all.push(("help".into(), "Help about any command".into()));
            all.sort();
            for (p, s) in all {
                t.push_str(&format!("\t{p}\t{s}\n"));
            }
        } else {
            let mut subs: Vec<(String, String)> = cmd
                .get_subcommands()
                .map(|s| (s.get_name().to_string(), short(s)))
                .collect();
            subs.sort();
            for (n, s) in subs {
                t.push_str(&format!("\t{n}\t{s}\n"));
            }
        }
        t.push('\n');
    }
    if let Some(long) = long {
        t.push_str("DESCRIPTION:\n");
        for l in long.lines() {
            t.push_str(&format!("\t{l}\n"));
        }
        t.push('\n');
    }
    let own_name = if is_root { "keelctl" } else { cmd.get_name() };
    t.push_str("OPTIONS:\n");
    t.push_str(&flags(&local, Some(own_name)));
    if !inherited.is_empty() {
        t.push_str("\nGLOBAL OPTIONS:\n");
        t.push_str(&flags(&inherited, None));
    }
    t.push('\n');
    tabwriter(&t)
}

/// Global flags that take their value as the next argument.
const VALUE_FLAGS: &[&str] = &[
    "-w",
    "--write-out",
    "--endpoints",
    "--dial-timeout",
    "--command-timeout",
    "--keepalive-time",
    "--keepalive-timeout",
    "--cacert",
    "--cert",
    "--key",
    "--user",
    "--password",
    "-d",
    "--discovery-srv",
    "--discovery-srv-name",
];

/// The command path named by `args` (subcommand names, flags skipped).
pub fn path_of(args: &[String]) -> Vec<String> {
    let root = crate::Cli::command_for_help();
    let mut cur = &root;
    let mut path = Vec::new();
    let mut skip_value = false;
    for a in args.iter().skip(1) {
        if a == "--" {
            break;
        }
        if skip_value {
            skip_value = false;
            continue;
        }
        if a.starts_with('-') {
            skip_value = !a.contains('=') && VALUE_FLAGS.contains(&a.as_str());
            continue;
        }
        match cur.find_subcommand(a) {
            Some(next) => {
                path.push(a.clone());
                cur = next;
            }
            None if a == "help" && path.is_empty() => {}
            None => break,
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabwriter_as_go() {
        assert_eq!(
            tabwriter("\tgrant\tCreates\n\tkeep-alive\tKeeps\n"),
            "\tgrant\t\tCreates\n\tkeep-alive\tKeeps\n"
        );
        assert_eq!(
            tabwriter("a\tb\n\nccccccccc\td\n"),
            "a\tb\n\nccccccccc\td\n"
        );
    }

    #[test]
    fn flags_as_pflag() {
        let h = render(&["get".to_string()]);
        assert!(h.starts_with("NAME:\n\tget - Gets the key or a range of keys\n\nUSAGE:\n\tkeelctl get [options] <key> [range_end] [flags]\n\nOPTIONS:\n"), "{h}");
        assert!(
            h.contains("      --consistency=\"l\"\t\t\tLinearizable(l) or Serializable(s)\n"),
            "{h}"
        );
        assert!(
            h.contains("      --limit=0\t\t\t\tMaximum number of results\n"),
            "{h}"
        );
        assert!(
            h.contains("      --endpoints=[127.0.0.1:2379]\t\tgRPC endpoints\n"),
            "{h}"
        );
        assert!(
            h.contains("  -w, --write-out=\"simple\"\t\t\tset the output format"),
            "{h}"
        );
        assert!(h.ends_with("\n\n"));
        let args: Vec<String> = ["keelctl", "-w", "json", "lease", "grant", "--help"]
            .map(String::from)
            .into();
        assert_eq!(path_of(&args), vec!["lease", "grant"]);
    }
}
