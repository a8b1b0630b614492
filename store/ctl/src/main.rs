//! keelctl: a drop-in for etcdctl 3.4 on keel and on etcd alike (the same
//! commands, flags, `ETCDCTL_*` variables, output formats, messages and exit
//! codes), plus `keelctl inspect`, which shows what etcdctl cannot (Raft
//! progress, a key's history, a data dir, the key space as a tree).
//!
//! Layout: one file per command group under [`cmd`] (as etcdctl's
//! `ctlv3/command`), the output formats under [`output`], the global flags
//! and the per-command context in [`global`], errors and exit codes in
//! [`error`]. Parsing is clap's; parse errors are reworded to cobra's
//! (`unknown flag: --x`, `invalid argument "v" for "--f" flag: ...`,
//! `unknown command "x" for "keelctl"`).
//!
//! Help and usage text are etcdctl's layout ([`help`]). Left out: etcdctl's
//! client-side retry log lines on stderr, and DNS discovery
//! (`--discovery-srv` is refused).

mod cmd;
mod error;
mod global;
mod help;
mod output;

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches, Parser};

use error::CtlError;
use global::{Ctx, GlobalFlags};

/// keelctl: a simple command line client for keel and etcd (etcdctl 3.4 compatible).
#[derive(Debug, Parser)]
#[command(
    name = "keelctl",
    version,
    about = "A simple command line client for keel and etcd3.",
    max_term_width = 120
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalFlags,
    #[command(subcommand)]
    pub cmd: cmd::Command,
}

impl Cli {
    /// The command tree, as the help renderer reads it.
    pub fn command_for_help() -> clap::Command {
        Cli::command()
    }
}

/// What to print instead of running a command, and the exit code.
#[derive(Debug)]
pub struct Stop {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

/// Parses `args` (with the `ETCDCTL_*` environment), or what to print and
/// the exit code (help, or a parse error as cobra words it).
pub fn parse(args: Vec<OsString>) -> Result<(Cli, Vec<String>), Stop> {
    let strs: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let before_sep = strs.iter().take_while(|a| a.as_str() != "--");
    let wants_help = strs.len() == 1
        || strs.get(1).map(String::as_str) == Some("help")
        || before_sep.clone().any(|a| a == "-h" || a == "--help");
    if wants_help {
        return Err(Stop {
            stdout: help::render(&help::path_of(&strs)),
            stderr: String::new(),
            code: 0,
        });
    }
    let clap_error = |e: clap::Error| clap_error(e, &strs);
    let m = match Cli::command().try_get_matches_from(args.clone()) {
        Ok(m) => m,
        Err(e) => return Err(clap_error(e)),
    };
    let (extra, conflicts) = global::from_env(&m);
    let m = if extra.is_empty() {
        m
    } else {
        let mut with_env = vec![args[0].clone()];
        with_env.extend(extra);
        with_env.extend(args[1..].iter().cloned());
        match Cli::command().try_get_matches_from(with_env) {
            Ok(m) => m,
            Err(e) => return Err(clap_error(e)),
        }
    };
    let cli = Cli::from_arg_matches(&m).map_err(clap_error)?;
    Ok((cli, conflicts))
}

/// A clap error as cobra words it.
fn clap_error(e: clap::Error, args: &[String]) -> Stop {
    let usage = || help::render(&help::path_of(args));
    let ctx = |k: ContextKind| match e.get(k) {
        Some(ContextValue::String(s)) => s.clone(),
        Some(ContextValue::Strings(v)) => v.join(" "),
        _ => String::new(),
    };
    let twice = |msg: String| Stop {
        stdout: usage(),
        stderr: format!("Error: {msg}\n\nError: {msg}\n"),
        code: 1,
    };
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        | ErrorKind::MissingSubcommand => Stop {
            stdout: usage(),
            stderr: String::new(),
            code: 0,
        },
        ErrorKind::DisplayVersion => Stop {
            stdout: e.render().to_string(),
            stderr: String::new(),
            code: 0,
        },
        ErrorKind::UnknownArgument => {
            let arg = ctx(ContextKind::InvalidArg);
            let arg = arg.split(['=', ' ']).next().unwrap_or("").to_string();
            if arg.starts_with("--") {
                twice(format!("unknown flag: {arg}"))
            } else {
                let c = arg.trim_start_matches('-').chars().next().unwrap_or('?');
                twice(format!("unknown shorthand flag: '{c}' in {arg}"))
            }
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let arg = ctx(ContextKind::InvalidArg);
            let flag = arg.split([' ', '=']).next().unwrap_or("").to_string();
            let flag = match flag.as_str() {
                "--write-out" | "-w" => "-w, --write-out".to_string(),
                "--discovery-srv" | "-d" => "-d, --discovery-srv".to_string(),
                _ => flag,
            };
            let value = ctx(ContextKind::InvalidValue);
            let why = std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_else(|| "invalid value".into());
            twice(format!(
                "invalid argument {value:?} for {flag:?} flag: {why}"
            ))
        }
        ErrorKind::InvalidSubcommand => {
            let name = ctx(ContextKind::InvalidSubcommand);
            let mut msg = format!("unknown command {name:?} for \"keelctl\"");
            let sugg = suggestions(&name);
            if !sugg.is_empty() {
                msg.push_str("\n\nDid you mean this?\n");
                for s in sugg {
                    msg.push_str(&format!("\t{s}\n"));
                }
            }
            Stop {
                stdout: String::new(),
                stderr: format!("Error: {msg}\nRun 'keelctl --help' for usage.\nError: {msg}\n"),
                code: 1,
            }
        }
        _ => Stop {
            stdout: String::new(),
            stderr: e.render().to_string(),
            code: 1,
        },
    }
}

/// cobra's suggestions: commands within Levenshtein distance 2, or that
/// start with what was typed.
fn suggestions(typed: &str) -> Vec<String> {
    let lower = typed.to_lowercase();
    Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .filter(|n| levenshtein(&lower, n) <= 2 || n.starts_with(&lower))
        .collect()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    let (cli, conflicts) = match parse(args) {
        Ok(x) => x,
        Err(stop) => {
            output::out(stop.stdout);
            eprint!("{}", stop.stderr);
            std::process::exit(stop.code);
        }
    };
    let ctx = Ctx {
        g: cli.global,
        conflicts,
    };
    // For debugging keelctl itself: KEELCTL_LOG=debug (a tracing filter)
    // logs the client's and its transport's events on stderr. Unset, keelctl
    // prints exactly what etcdctl prints.
    if let Ok(filter) = std::env::var("KEELCTL_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result: Result<(), CtlError> = rt.block_on(cmd::run(&ctx, cli.cmd));
    // Do not wait for background tasks (watch streams, keep-alives).
    rt.shutdown_background();
    if let Err(e) = result {
        eprint!("{}", e.text());
        std::process::exit(e.code.code());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<OsString> {
        std::iter::once("keelctl")
            .chain(s.split_whitespace())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn cobra_style_errors() {
        let s = parse(args("get a --foo")).unwrap_err();
        assert_eq!(
            s.stderr,
            "Error: unknown flag: --foo\n\nError: unknown flag: --foo\n"
        );
        assert_eq!(s.code, 1);
        assert!(s.stdout.starts_with("NAME:\n\tget - "), "{}", s.stdout);
        let t = parse(args("get a --rev=x")).unwrap_err().stderr;
        assert!(
            t.starts_with("Error: invalid argument \"x\" for \"--rev\" flag: strconv.ParseInt: parsing \"x\": invalid syntax\n"),
            "{t}"
        );
        let t = parse(args("bogus")).unwrap_err().stderr;
        assert_eq!(
            t,
            "Error: unknown command \"bogus\" for \"keelctl\"\nRun 'keelctl --help' for usage.\nError: unknown command \"bogus\" for \"keelctl\"\n"
        );
        let t = parse(args("a")).unwrap_err().stderr;
        assert!(t.contains("Did you mean this?\n\talarm\n\tauth\n"), "{t}");
    }

    #[test]
    fn global_flags_anywhere() {
        let (cli, _) = parse(args("get a --endpoints=x:1,y:2 -w json --hex")).unwrap();
        assert_eq!(cli.global.endpoints, vec!["x:1", "y:2"]);
        assert_eq!(cli.global.write_out, "json");
        assert!(cli.global.hex);
        let (cli, _) = parse(args("--endpoints x:1 --endpoints y:2 get a --hex=false")).unwrap();
        assert_eq!(cli.global.endpoints, vec!["x:1", "y:2"]);
        assert!(!cli.global.hex);
    }
}
