//! etcdctl's global flags, their `ETCDCTL_*` environment variables, Go-style
//! value parsers (so a bad value gets Go's message), and the per-command
//! context: the client, the printer and the command deadline.
//!
//! Environment: a global flag `--foo-bar` can be given as `ETCDCTL_FOO_BAR`;
//! setting both is refused as etcdctl refuses it (a fatal "conflicting
//! environment variable" line, exit 1), when the command first needs its
//! client (as etcdctl, after the command's own argument checks).

use std::ffi::OsString;
use std::future::Future;
use std::time::Duration;

use clap::{ArgAction, ArgMatches, Args};
use keel_client::tls::TlsOptions;
use keel_client::{Client, Options};

use crate::error::{CtlError, ExitCode, Result};
use crate::output::{Format, Printer};

/// The flags every command takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalFlags {
    /// gRPC endpoints
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// dial timeout for client connections
    #[arg(long, global = true, default_value = "2s", value_parser = go_duration)]
    pub dial_timeout: Duration,
    /// timeout for short running command (excluding dial timeout)
    #[arg(long, global = true, default_value = "5s", value_parser = go_duration)]
    pub command_timeout: Duration,
    /// keepalive time for client connections
    #[arg(long, global = true, default_value = "2s", value_parser = go_duration)]
    pub keepalive_time: Duration,
    /// keepalive timeout for client connections
    #[arg(long, global = true, default_value = "6s", value_parser = go_duration)]
    pub keepalive_timeout: Duration,
    /// set the output format (fields, json, protobuf, simple, table)
    #[arg(short = 'w', long, global = true, default_value = "simple")]
    pub write_out: String,
    /// print byte strings as hex encoded strings
    #[arg(long, global = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub hex: bool,
    /// enable client-side debug logging
    #[arg(long, global = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub debug: bool,
    /// verify certificates of TLS-enabled secure servers using this CA bundle
    #[arg(long, global = true, default_value = "")]
    pub cacert: String,
    /// identify secure client using this TLS certificate file
    #[arg(long, global = true, default_value = "")]
    pub cert: String,
    /// identify secure client using this TLS key file
    #[arg(long, global = true, default_value = "")]
    pub key: String,
    /// disable transport security for client connections
    #[arg(long, global = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "true", value_parser = go_bool)]
    pub insecure_transport: bool,
    /// skip server certificate verification (CAUTION: this option should be enabled only for testing purposes)
    #[arg(long, global = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false", value_parser = go_bool)]
    pub insecure_skip_tls_verify: bool,
    /// accept insecure SRV records describing cluster endpoints
    #[arg(long, global = true, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "true", value_parser = go_bool)]
    pub insecure_discovery: bool,
    /// domain name to query for SRV records describing cluster endpoints
    #[arg(short = 'd', long, global = true, default_value = "")]
    pub discovery_srv: String,
    /// service name to query when using DNS discovery
    #[arg(long, global = true, default_value = "")]
    pub discovery_srv_name: String,
    /// username[:password] for authentication (prompt if password is not supplied)
    #[arg(long, global = true, default_value = "")]
    pub user: String,
    /// password for authentication (if this option is used, --user option shouldn't include password)
    #[arg(long, global = true, default_value = "")]
    pub password: String,
}

/// The global flags' long names (for the environment variables).
pub const GLOBAL_FLAGS: &[&str] = &[
    "endpoints",
    "dial-timeout",
    "command-timeout",
    "keepalive-time",
    "keepalive-timeout",
    "write-out",
    "hex",
    "debug",
    "cacert",
    "cert",
    "key",
    "insecure-transport",
    "insecure-skip-tls-verify",
    "insecure-discovery",
    "discovery-srv",
    "discovery-srv-name",
    "user",
    "password",
];

/// `ETCDCTL_FOO_BAR` for `foo-bar`.
pub fn env_name(flag: &str) -> String {
    format!("ETCDCTL_{}", flag.to_uppercase().replace('-', "_"))
}

/// Arguments to add for global flags set only in the environment, and the
/// environment variables that a command-line flag shadows (an error).
pub fn from_env(matches: &ArgMatches) -> (Vec<OsString>, Vec<String>) {
    let mut extra = Vec::new();
    let mut conflicts = Vec::new();
    for flag in GLOBAL_FLAGS {
        let var = env_name(flag);
        let Some(val) = std::env::var_os(&var) else {
            continue;
        };
        let id = flag.replace('-', "_");
        let on_cli = matches!(
            find_source(matches, &id),
            Some(clap::parser::ValueSource::CommandLine)
        );
        if on_cli {
            conflicts.push(var);
        } else {
            let mut a = OsString::from(format!("--{flag}="));
            a.push(val);
            extra.push(a);
        }
    }
    (extra, conflicts)
}

/// Where a (global) argument's value came from, looking into the
/// subcommands that were used (clap records a global flag on the deepest).
fn find_source(m: &ArgMatches, id: &str) -> Option<clap::parser::ValueSource> {
    let mut best = m.value_source(id);
    let mut cur = m;
    while let Some((_, sub)) = cur.subcommand() {
        if let Some(s) = sub.value_source(id) {
            if s == clap::parser::ValueSource::CommandLine {
                best = Some(s);
            }
        }
        cur = sub;
    }
    best
}

/// Go's `strconv.ParseBool`.
pub fn go_bool(s: &str) -> std::result::Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("strconv.ParseBool: parsing {s:?}: invalid syntax")),
    }
}

/// Go's `strconv.ParseInt(s, 10, 64)`.
pub fn go_i64(s: &str) -> std::result::Result<i64, String> {
    parse_int(s, 10)
}

/// Go's `strconv.ParseInt(s, base, 64)` with Go's messages.
pub fn parse_int(s: &str, base: u32) -> std::result::Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(base)) {
        return Err(format!(
            "strconv.ParseInt: parsing {}: invalid syntax",
            crate::output::go::quote(s.as_bytes())
        ));
    }
    i64::from_str_radix(s, base).map_err(|_| {
        format!(
            "strconv.ParseInt: parsing {}: value out of range",
            crate::output::go::quote(s.as_bytes())
        )
    })
}

/// Go's `strconv.ParseUint(s, base, 64)` with Go's messages.
pub fn parse_uint(s: &str, base: u32) -> std::result::Result<u64, String> {
    if s.is_empty() || !s.chars().all(|c| c.is_digit(base)) {
        return Err(format!(
            "strconv.ParseUint: parsing {}: invalid syntax",
            crate::output::go::quote(s.as_bytes())
        ));
    }
    u64::from_str_radix(s, base).map_err(|_| {
        format!(
            "strconv.ParseUint: parsing {}: value out of range",
            crate::output::go::quote(s.as_bytes())
        )
    })
}

/// Go's `time.ParseDuration` ("300ms", "1m30s", "2h", "1.5s").
pub fn go_duration(s: &str) -> std::result::Result<Duration, String> {
    let quoted = crate::output::go::quote(s.as_bytes());
    let invalid = || format!("time: invalid duration {quoted}");
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if let Some(r) = rest.strip_prefix('-') {
        if r == "0" {
            return Ok(Duration::ZERO);
        }
        return Err(invalid());
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..n_end];
        if num.is_empty() || num == "." {
            return Err(invalid());
        }
        let v: f64 = num.parse().map_err(|_| invalid())?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..u_end];
        rest = &rest[u_end..];
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("time: missing unit in duration {quoted}")),
            u => {
                return Err(format!(
                    "time: unknown unit {} in duration {quoted}",
                    crate::output::go::quote(u.as_bytes())
                ))
            }
        };
        total += v * scale;
    }
    Ok(Duration::from_secs_f64(total))
}

/// TLS options from etcdctl's flags (see [`Ctx::tls`]); also used by
/// `make-mirror`'s `--dest-*` flags. A file that cannot be read is etcdctl's
/// bad-arguments error.
pub fn tls_options(
    cacert: &str,
    cert: &str,
    key: &str,
    insecure_transport: bool,
    insecure_skip_verify: bool,
) -> Result<Option<TlsOptions>> {
    if cacert.is_empty() && cert.is_empty() && key.is_empty() && insecure_transport {
        return Ok(None);
    }
    let path = |s: &str| (!s.is_empty()).then(|| std::path::PathBuf::from(s));
    let (ca, cert, key) = (path(cacert), path(cert), path(key));
    let tls = TlsOptions::from_files(ca.as_deref(), cert.as_deref(), key.as_deref())
        .map_err(|e| CtlError::bad_args(tls_error_text(&e)))?;
    Ok(Some(tls.with_insecure_skip_verify(insecure_skip_verify)))
}

/// keel-client's TLS error without its prefix.
fn tls_error_text(e: &keel_client::Error) -> String {
    match e {
        keel_client::Error::Tls(m) => m.clone(),
        other => other.to_string(),
    }
}

/// What a command needs: the global flags and the conflicts found in the
/// environment.
pub struct Ctx {
    pub g: GlobalFlags,
    pub conflicts: Vec<String>,
}

impl Ctx {
    /// The printer for `-w` and `--hex` (etcdctl checks `-w` when it makes
    /// the client; commands without a client never check it).
    pub fn printer(&self) -> Result<Printer> {
        Ok(Printer::new(Format::parse(&self.g.write_out)?, self.g.hex))
    }

    /// The client for `--endpoints`, after the environment checks, as
    /// etcdctl's `mustClientFromCmd`.
    pub fn client(&self) -> Result<Client> {
        self.client_for(&self.g.endpoints)
    }

    /// A client of some endpoints (e.g. one member for `endpoint status`),
    /// with the TLS settings and the user of the global flags.
    pub fn client_for(&self, endpoints: &[String]) -> Result<Client> {
        self.check_config()?;
        let opts = self.options()?;
        let client = Client::new(endpoints.iter().cloned(), opts)?;
        Ok(match self.credentials()? {
            Some((user, password)) => client.with_user(user, password),
            None => client,
        })
    }

    /// The TLS settings, as etcdctl's `newClientCfg`: any of `--cacert`,
    /// `--cert`, `--key` or `--insecure-transport=false` asks for TLS (bare
    /// endpoints are then dialled with `https`); no CA means the system's
    /// roots; `--insecure-skip-tls-verify` accepts any server certificate.
    pub fn tls(&self) -> Result<Option<TlsOptions>> {
        tls_options(
            &self.g.cacert,
            &self.g.cert,
            &self.g.key,
            self.g.insecure_transport,
            self.g.insecure_skip_tls_verify,
        )
    }

    /// `--user` and `--password` as etcdctl's `authCfgFromCmd`: `--user
    /// name:password`, or `--user name --password pw`, or `--user name` and
    /// the password asked for ("Password: ", a line of standard input).
    fn credentials(&self) -> Result<Option<(String, String)>> {
        if self.g.user.is_empty() {
            return Ok(None);
        }
        if !self.g.password.is_empty() {
            return Ok(Some((self.g.user.clone(), self.g.password.clone())));
        }
        if let Some((user, password)) = self.g.user.split_once(':') {
            return Ok(Some((user.to_string(), password.to_string())));
        }
        print!("Password: ");
        let _ = std::io::Write::flush(&mut std::io::stdout());
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| CtlError::error(e.to_string()))?;
        // etcdctl's prompt (speakeasy) ends the line after the answer, which
        // it does not echo.
        println!();
        Ok(Some((
            self.g.user.clone(),
            line.trim_end_matches(['\r', '\n']).to_string(),
        )))
    }

    /// etcdctl's checks when it reads the client configuration: the
    /// environment, `-w`, the flags keelctl cannot honour yet.
    pub fn check_config(&self) -> Result<()> {
        if let Some(var) = self.conflicts.first() {
            return Err(CtlError::raw(
                ExitCode::Error,
                format!(
                    "{} C | pkg/flags: conflicting environment variable {var:?} is shadowed by corresponding command-line flag (either unset environment variable or disable flag)",
                    capnslog_time()
                ),
            ));
        }
        self.printer()?;
        if !self.g.discovery_srv.is_empty() {
            return Err(CtlError::error(
                "--discovery-srv: DNS discovery is not supported by keelctl; give --endpoints",
            ));
        }
        Ok(())
    }

    fn options(&self) -> Result<Options> {
        Ok(Options {
            dial_timeout: self.g.dial_timeout,
            request_timeout: self.g.command_timeout,
            // Keep trying other endpoints until the command's deadline.
            max_attempts: 1_000_000,
            tls: self.tls()?,
        })
    }

    /// Runs `fut` under `--command-timeout` ("context deadline exceeded").
    pub async fn timed<T, F>(&self, fut: F) -> Result<T>
    where
        F: Future<Output = std::result::Result<T, keel_client::Error>>,
    {
        match tokio::time::timeout(self.g.command_timeout, fut).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(CtlError::deadline()),
        }
    }
}

/// capnslog's timestamp ("2006-01-02 15:04:05.000000", UTC here).
pub fn capnslog_time() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:06}",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60,
        now.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_parsers() {
        assert_eq!(go_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(go_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(
            go_duration("xx"),
            Err("time: invalid duration \"xx\"".to_string())
        );
        assert_eq!(
            go_duration("5"),
            Err("time: missing unit in duration \"5\"".to_string())
        );
        assert_eq!(go_i64("12"), Ok(12));
        assert_eq!(
            go_i64("x"),
            Err("strconv.ParseInt: parsing \"x\": invalid syntax".to_string())
        );
        assert_eq!(parse_int("ff", 16), Ok(255));
        assert_eq!(go_bool("t"), Ok(true));
        assert!(go_bool("yes").is_err());
        assert_eq!(env_name("dial-timeout"), "ETCDCTL_DIAL_TIMEOUT");
    }
}
