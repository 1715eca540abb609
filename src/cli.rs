//! Command-line interface: argument parsing, subcommand dispatch, exit codes.
//!
//! Exit codes: `check` exits 0/1/2/3 for the worst status (OK/WARN/CRIT/UNKNOWN); every command exits 64
//! (EX_USAGE) for a usage or configuration error, and 70 (EX_SOFTWARE) if the runtime cannot start.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand};

use crate::check::runner::Runner;
use crate::check::{CheckKind, Context, Mode};
use crate::config::Config;
use crate::diag::{self, Format, RunReport};
use crate::exit;
use crate::host::HostRoot;
use crate::identity::HostInfo;

/// hvprobe: hypervisor health probe.
#[derive(Debug, Parser)]
#[command(name = "hvprobe", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log filter for stderr (tracing syntax, e.g. `info` or `hvprobe=debug`).
    #[arg(long, global = true, env = "HVPROBE_LOG", value_name = "FILTER")]
    log: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the checks once on this host and print the results (exit code = worst status).
    #[command(
        after_long_help = "Exit status (Nagios): 0 every check OK; 1 worst WARN; 2 worst CRIT; 3 worst UNKNOWN \
(order OK < UNKNOWN < WARN < CRIT); 64 usage or configuration error; 70 internal error."
    )]
    Check(CheckArgs),
    /// Check a configuration file and exit 0, or print every problem and exit 64.
    Validate {
        /// The configuration file.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run the checks every interval and stream the results to the collectors (the systemd service).
    Agent(AgentArgs),
    /// Receive reports from the agents, keep the latest state of every host, serve the query API.
    Collector(CollectorArgs),
    /// Show every AZ of a collector with its open verdicts (exit 0 OK, 1 WARN/UNKNOWN, 2 CRIT).
    Status(StatusArgs),
    /// Print a collector's timeline as a Markdown table.
    Timeline(TimelineArgs),
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// The collector's gRPC address.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:7400")]
    collector: String,
    /// Only this AZ.
    #[arg(long, value_name = "NAME")]
    az: Option<String>,
    #[command(flatten)]
    creds: Credentials,
}

/// How to reach a collector that speaks TLS (`https://` URLs) and requires authentication.
#[derive(Debug, Args, Clone)]
struct Credentials {
    /// CA certificate (PEM) that signs the collector's certificate; implies TLS.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Client certificate (PEM) from the collector's client CA.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// A file holding the API bearer token (instead of a client certificate).
    #[arg(long, value_name = "FILE", env = "HVPROBE_API_TOKEN_FILE")]
    token_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct TimelineArgs {
    /// The collector's gRPC address.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:7400")]
    collector: String,
    /// From this time: RFC 3339 (2026-11-21T10:00:00Z) or a duration ago (2h, 30m).
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Only this AZ (and region-wide events).
    #[arg(long, value_name = "NAME")]
    az: Option<String>,
    /// At most this many events.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    limit: u32,
    #[command(flatten)]
    creds: Credentials,
}

#[derive(Debug, Args)]
struct AgentArgs {
    /// Configuration file ([agent] section and [[check]] tables).
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Host identity (default: the hostname).
    #[arg(long, value_name = "ID")]
    host_id: Option<String>,
    /// Availability zone of this host.
    #[arg(long, value_name = "AZ")]
    az: Option<String>,
    /// Region of this host.
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
    /// A collector, ip:port or host:port (repeatable; replaces the configured list).
    #[arg(long = "collector", value_name = "ADDR")]
    collectors: Vec<String>,
    /// Cycle length in seconds.
    #[arg(long, value_name = "N")]
    interval_secs: Option<u64>,
    /// Directory standing for the host's `/`.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CollectorArgs {
    /// Configuration file ([collector] section).
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// gRPC address for agents and queries (default 127.0.0.1:7400).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// HTTP address for the API and /metrics (default 127.0.0.1:7401).
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// Event database (SQLite, WAL; default /var/lib/hvprobe/events.db).
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Configuration file (default: every check with its defaults).
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory standing for the host's `/` (e.g. `/host` in a container).
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// Run only this check (repeatable): memory, conntrack, md-raid, dns, wireguard, io, services, reach.
    #[arg(long = "check", value_name = "NAME")]
    checks: Vec<CheckKind>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and version asked for are successes; help shown for a missing subcommand is not.
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => exit::USAGE,
            };
        }
    };
    let default_log = match cli.command {
        Command::Agent(_) | Command::Collector(_) => "info",
        _ => "warn",
    };
    init_logging(cli.log.as_deref(), default_log);
    match cli.command {
        Command::Check(args) => check(args),
        Command::Validate { config } => validate(&config),
        Command::Agent(args) => agent(args),
        Command::Collector(args) => collector(args),
        Command::Status(args) => status(args),
        Command::Timeline(args) => timeline(args),
    }
}

fn collector_url(s: &str, tls: bool) -> String {
    if s.starts_with("http://") || s.starts_with("https://") {
        s.to_owned()
    } else if tls {
        format!("https://{s}")
    } else {
        format!("http://{s}")
    }
}

/// Adds `authorization: Bearer <token>` to every call when a token is given.
#[derive(Clone)]
struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

type QueryClient = crate::pb::query_client::QueryClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>,
>;

fn client_tls(c: &Credentials) -> Result<Option<tonic::transport::ClientTlsConfig>, String> {
    let Some(ca) = &c.ca else {
        return Ok(None);
    };
    let read = |p: &PathBuf| crate::tls::read_pem(p).map_err(|e| e.to_string());
    let mut tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
    if let (Some(cert), Some(key)) = (&c.cert, &c.key) {
        tls = tls.identity(tonic::transport::Identity::from_pem(
            read(cert)?,
            read(key)?,
        ));
    }
    Ok(Some(tls))
}

async fn query_client(url: &str, creds: &Credentials) -> Result<QueryClient, String> {
    let tls = client_tls(creds)?;
    let token = match &creds.token_file {
        None => None,
        Some(p) => {
            let t = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let v = format!("Bearer {}", t.trim())
                .parse()
                .map_err(|_| format!("{}: not a usable token", p.display()))?;
            Some(v)
        }
    };
    let mut endpoint = tonic::transport::Endpoint::from_shared(collector_url(url, tls.is_some()))
        .map_err(|e| format!("--collector {url}: {e}"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15));
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| format!("--collector {url}: TLS: {e}"))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot reach the collector at {url}: {e}"))?;
    Ok(crate::pb::query_client::QueryClient::with_interceptor(
        channel,
        Bearer(token),
    ))
}

/// `GET path` from a collector's HTTP API (the address given may be its HTTP port rather than its gRPC
/// one): plain HTTP/1.1, or TLS with the same credentials as the gRPC client. JSON back.
async fn http_get_json(
    url: &str,
    path: &str,
    creds: &Credentials,
) -> Result<serde_json::Value, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tls = creds.ca.is_some() || url.starts_with("https://");
    let hostport = url
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let host = hostport
        .rsplit_once(':')
        .map_or(hostport, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\nAccept: application/json\r\n"
    );
    if let Some(t) = &creds.token_file {
        let token = std::fs::read_to_string(t).map_err(|e| format!("{}: {e}", t.display()))?;
        req.push_str(&format!("Authorization: Bearer {}\r\n", token.trim()));
    }
    req.push_str("\r\n");
    let tcp = tokio::net::TcpStream::connect(hostport)
        .await
        .map_err(|e| format!("cannot reach the collector at {url}: {e}"))?;
    let mut raw = Vec::new();
    if tls {
        let connector =
            tokio_rustls::TlsConnector::from(std::sync::Arc::new(rustls_client(creds)?));
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| format!("--collector {url}: {e}"))?;
        let mut s = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {url}: {e}"))?;
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let _ = s.read_to_end(&mut raw).await;
    } else {
        let mut s = tcp;
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let _ = s.read_to_end(&mut raw).await;
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{url} does not answer HTTP either"))?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!("{url}{path}: HTTP {status}: {}", body.trim()));
    }
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    serde_json::from_str(&body).map_err(|e| format!("{url}{path}: not the collector's JSON: {e}"))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn rustls_client(creds: &Credentials) -> Result<rustls::ClientConfig, String> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = &creds.ca {
        for c in crate::tls::load_certs(ca).map_err(|e| e.to_string())? {
            roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match (&creds.cert, &creds.key) {
        (Some(c), Some(k)) => builder
            .with_client_auth_cert(
                crate::tls::load_certs(c).map_err(|e| e.to_string())?,
                crate::tls::load_key(k).map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string()),
        _ => Ok(builder.with_no_client_auth()),
    }
}

fn print(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

fn status(args: StatusArgs) -> i32 {
    let az = args.az.clone();
    let grpc = ask_collector_quiet(&args.collector, &args.creds, |mut c| async move {
        c.zones(crate::pb::ZonesRequest { az }).await
    });
    let view = match grpc {
        Ok(z) => crate::wire::zones_from_pb(&z),
        Err(Asked::Software) => return exit::SOFTWARE,
        Err(Asked::Grpc(grpc_err, false)) => return unreachable(&grpc_err),
        Err(Asked::Grpc(grpc_err, true)) => {
            // Perhaps the collector's HTTP address: its JSON API answers the same question.
            let path = match &args.az {
                Some(a) => format!("/api/v1/zones?az={a}"),
                None => "/api/v1/zones".to_owned(),
            };
            match http_fallback(&args.collector, &path, &args.creds, &grpc_err) {
                Ok(v) => match serde_json::from_value(v) {
                    Ok(view) => view,
                    Err(e) => {
                        return unreachable(&format!("{}: not a zones view: {e}", args.collector));
                    }
                },
                Err(code) => return code,
            }
        }
    };
    print(&diag::fleet::status_table(&view, SystemTime::now()));
    diag::fleet::status_exit_code(&view)
}

/// How a gRPC query failed.
enum Asked {
    /// The runtime could not start.
    Software,
    /// The collector could not be reached, or answered with an error: the text, and whether the address
    /// may be another protocol's (the HTTP API's) rather than a refusal to be reported as it is.
    Grpc(String, bool),
}

/// Runs one query against a collector over gRPC: connects, calls `f`.
fn ask_collector_quiet<T, F, Fut>(url: &str, creds: &Credentials, f: F) -> Result<T, Asked>
where
    F: FnOnce(QueryClient) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let rt = runtime().map_err(|_| Asked::Software)?;
    rt.block_on(async {
        // A failed connection may be an HTTP/1.1 server refusing HTTP/2: worth the HTTP attempt.
        let client = query_client(url, creds)
            .await
            .map_err(|e| Asked::Grpc(e, true))?;
        f(client)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| {
                // A refusal of our credentials is reported as it is; anything else may be another
                // protocol's server (the HTTP API) at this address.
                let other_protocol = !matches!(
                    s.code(),
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                );
                Asked::Grpc(format!("collector {url}: {}", s.message()), other_protocol)
            })
    })
}

/// The gRPC attempt failed: try the HTTP API at the same address; if that fails too, one clear error
/// naming both (never a protocol dump).
fn http_fallback(
    url: &str,
    path: &str,
    creds: &Credentials,
    grpc_err: &str,
) -> Result<serde_json::Value, i32> {
    let rt = runtime().map_err(|_| exit::SOFTWARE)?;
    rt.block_on(http_get_json(url, path, creds)).map_err(|http_err| {
        if http_err.starts_with("cannot reach") {
            // Nothing listens there at all: say that, as the gRPC attempt found it.
            unreachable(grpc_err)
        } else {
            unreachable(&format!(
                "{url} is neither the collector's gRPC address (give `listen`, default port 7400) nor its HTTP API (`http`, default port 7401): {http_err}"
            ))
        }
    })
}

fn unreachable(msg: &str) -> i32 {
    eprintln!("hvprobe: {msg}");
    exit::UNREACHABLE
}

fn timeline(args: TimelineArgs) -> i32 {
    let since = match args
        .since
        .as_deref()
        .map(|s| crate::util::parse_since(s, SystemTime::now()))
    {
        None => None,
        Some(Ok(t)) => Some(crate::wire::unix_ms(t)),
        Some(Err(e)) => return usage_error(format!("--since: {e}")),
    };
    let request = crate::pb::EventsRequest {
        since_unix_ms: since,
        az: args.az.clone(),
        limit: args.limit,
    };
    let events = match ask_collector_quiet(&args.collector, &args.creds, |mut c| async move {
        c.events(request).await
    }) {
        Ok(r) => r.events.iter().map(crate::wire::event_from_pb).collect(),
        Err(Asked::Software) => return exit::SOFTWARE,
        Err(Asked::Grpc(grpc_err, false)) => return unreachable(&grpc_err),
        Err(Asked::Grpc(grpc_err, true)) => {
            let mut path = format!("/api/v1/events?limit={}", args.limit);
            if let Some(ms) = since {
                let t = SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
                path.push_str(&format!("&since={}", crate::util::rfc3339(t)));
            }
            if let Some(az) = &args.az {
                path.push_str(&format!("&az={az}"));
            }
            match http_fallback(&args.collector, &path, &args.creds, &grpc_err) {
                Ok(v) => events_from_json(&v),
                Err(code) => return code,
            }
        }
    };
    print(&diag::fleet::timeline_markdown(&events));
    0
}

/// The events of `GET /api/v1/events`.
fn events_from_json(v: &serde_json::Value) -> Vec<crate::fleet::Event> {
    let text = |e: &serde_json::Value, k: &str| e[k].as_str().map(str::to_owned);
    v["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| crate::fleet::Event {
                    id: e["id"].as_i64().unwrap_or(0),
                    at: e["time"]
                        .as_str()
                        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
                        .unwrap_or(SystemTime::UNIX_EPOCH),
                    kind: e["kind"]
                        .as_str()
                        .and_then(crate::fleet::EventKind::parse)
                        .unwrap_or(crate::fleet::EventKind::VerdictChanged),
                    scope: e["scope"]
                        .as_str()
                        .and_then(crate::fleet::Scope::parse)
                        .unwrap_or(crate::fleet::Scope::Host),
                    region: text(e, "region"),
                    az: text(e, "az"),
                    host: text(e, "host"),
                    check: text(e, "check"),
                    old_status: text(e, "old_status"),
                    new_status: text(e, "new_status"),
                    summary: text(e, "summary").unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn agent(args: AgentArgs) -> i32 {
    let config = match load_config(args.config.as_ref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let overrides = crate::agent::Overrides {
        host_id: args.host_id,
        az: args.az,
        region: args.region,
        collectors: args.collectors,
        interval_secs: args.interval_secs,
        root: args.root,
    };
    let settings = match crate::agent::settings(config.agent.as_ref(), &overrides) {
        Ok(s) => s,
        Err(p) => return usage_error(format!("invalid agent settings:\n{p}")),
    };
    if !settings.root.dir().is_dir() {
        return usage_error(format!(
            "root {}: not a directory",
            settings.root.dir().display()
        ));
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hvprobe: cannot start the runtime: {e}");
            return exit::SOFTWARE;
        }
    };
    let code = rt.block_on(crate::agent::run(settings, &config.checks));
    rt.shutdown_timeout(Duration::from_millis(200));
    code
}

fn collector(args: CollectorArgs) -> i32 {
    let config = match load_config(args.config.as_ref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let overrides = crate::collector::Overrides {
        listen: args.listen,
        http: args.http,
        db: args.db,
    };
    let correlation = config.correlation.clone().unwrap_or_default();
    let settings = match crate::collector::settings(config.collector.as_ref(), &overrides) {
        Ok(s) => s,
        Err(p) => return usage_error(format!("invalid collector settings:\n{p}")),
    };
    crate::collector::raise_nofile();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hvprobe: cannot start the runtime: {e}");
            return exit::SOFTWARE;
        }
    };
    let code = rt.block_on(crate::collector::run(settings, correlation));
    rt.shutdown_timeout(Duration::from_millis(500));
    code
}

/// Logs go to stderr, never stdout (stdout carries results).
pub fn init_logging(filter: Option<&str>, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter.unwrap_or(default))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn usage_error(msg: impl std::fmt::Display) -> i32 {
    eprintln!("hvprobe: {msg}");
    exit::USAGE
}

fn load_config(path: Option<&PathBuf>) -> Result<Config, i32> {
    match path {
        None => Ok(Config::default()),
        Some(p) => Config::load(p).map_err(usage_error),
    }
}

fn validate(path: &std::path::Path) -> i32 {
    match Config::load(path) {
        Ok(config) => {
            let enabled: Vec<&str> = config
                .checks
                .iter()
                .filter(|c| c.enabled())
                .map(|c| c.kind().as_str())
                .collect();
            let mut parts = Vec::new();
            if let Some(a) = &config.agent {
                parts.push(format!(
                    "agent az={} interval={}s collectors={}",
                    a.az.as_deref().unwrap_or("?"),
                    a.interval_secs,
                    a.collectors.len()
                ));
            }
            if let Some(c) = &config.collector {
                parts.push(format!("collector grpc={} http={}", c.listen, c.http));
            }
            parts.push(format!("checks: {}", enabled.join(", ")));
            println!("{}: ok ({})", path.display(), parts.join("; "));
            0
        }
        Err(e) => usage_error(e),
    }
}

/// A current-thread runtime: the probe is I/O-light, and one thread keeps its footprint small. File reads
/// go to a small blocking pool so a wedged read cannot stall the others.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(8)
        .thread_keep_alive(Duration::from_secs(30))
        .build()
}

fn check(args: CheckArgs) -> i32 {
    let config = match load_config(args.config.as_ref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if !args.root.is_dir() {
        return usage_error(format!("--root {}: not a directory", args.root.display()));
    }
    let selected: Vec<_> = config
        .checks
        .iter()
        .filter(|c| {
            if args.checks.is_empty() {
                c.enabled()
            } else {
                args.checks.contains(&c.kind())
            }
        })
        .map(|c| c.build())
        .collect();
    let root = HostRoot::new(&args.root);
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hvprobe: cannot start the runtime: {e}");
            return exit::SOFTWARE;
        }
    };
    let ctx = Context::new(root.clone(), Mode::OneShot);
    let mut runner = Runner::new(selected);
    let checks = rt.block_on(runner.run_once(&ctx));
    // A check that overran its deadline may still hold a blocking thread: do not wait for it.
    rt.shutdown_timeout(Duration::from_millis(50));
    let report = RunReport {
        host: HostInfo::gather(&root),
        checks,
        finished: SystemTime::now(),
    };
    let color = args.format == Format::Human
        && std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none();
    let text = diag::render(&report, args.format, color);
    let mut stdout = std::io::stdout().lock();
    // A closed stdout (`| head`) is not a reason to change the verdict.
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
    report.exit_code()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in tests a panic is a failed test
    use super::*;
    use clap::CommandFactory;

    /// `hvprobe.1` and one `hvprobe-<subcommand>.1` per subcommand, as clap describes the CLI.
    fn man_pages() -> Vec<(String, Vec<u8>)> {
        let cli = Cli::command();
        let mut pages = Vec::new();
        let mut render = |cmd: clap::Command| {
            let name = cmd.get_name().to_owned();
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page).unwrap();
            pages.push((format!("{name}.1"), page));
        };
        for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
            // clap names take `&'static str` (without its `string` feature): a test may leak a few bytes.
            let name: &'static str =
                Box::leak(format!("hvprobe-{}", sub.get_name()).into_boxed_str());
            let bin: &'static str =
                Box::leak(format!("hvprobe {}", sub.get_name()).into_boxed_str());
            render(
                sub.clone()
                    .name(name)
                    .bin_name(bin)
                    .version(env!("CARGO_PKG_VERSION")),
            );
        }
        render(cli);
        pages
    }

    /// The man pages the package ships (packaging/man/) are the CLI's own: a flag added, renamed or
    /// documented differently makes this fail until they are regenerated with
    /// `HVPROBE_BLESS=1 cargo test --lib the_shipped_man_pages`.
    #[test]
    fn the_shipped_man_pages_are_the_cli() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/man");
        let pages = man_pages();
        if std::env::var_os("HVPROBE_BLESS").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            for (name, page) in &pages {
                std::fs::write(dir.join(name), page).unwrap();
            }
        }
        for (name, page) in &pages {
            let shipped = std::fs::read(dir.join(name)).unwrap_or_default();
            assert!(
                shipped == *page,
                "packaging/man/{name} is not the CLI's page: HVPROBE_BLESS=1 cargo test --lib the_shipped_man_pages"
            );
        }
        let mut shipped: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".1"))
            .collect();
        shipped.sort();
        let mut expected: Vec<String> = pages.into_iter().map(|(n, _)| n).collect();
        expected.sort();
        assert_eq!(shipped, expected, "a page for a subcommand that is gone");
    }
}
