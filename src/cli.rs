//! The command line (SPEC §1): one small function per subcommand. Exit codes: 0 ok, 1 invalid
//! input or failed check, 2 usage error (clap's own).

mod check;
mod store_args;

pub use store_args::StoreArgs;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{self, Config};
use crate::server::Gateway;

/// gatehouse: an authenticating TLS edge gateway.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about)]
pub struct Cli {
    /// What to do; bare `gatehouse` serves `gateway.toml`.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve with a config file.
    Run {
        /// Config file.
        #[arg(short, long, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Validate a config file and everything it points to; exit 1 listing every problem.
    Check {
        /// Config file.
        #[arg(short, long, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Start the gateway with mock api-service and configuration-service and print curl lines.
    Demo {
        /// Folder for the demo's config and certificate (default: a temporary folder).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Manage API tokens in the token store.
    Token {
        /// What to do.
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Certificate helpers.
    Cert {
        /// What to do.
        #[command(subcommand)]
        command: CertCommand,
    },
    /// Audit log tools.
    Audit {
        /// What to do.
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// GET the admin /healthz; exit 0 if healthy (for container HEALTHCHECKs).
    Health {
        /// Admin listener address.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: String,
    },
}

/// `gatehouse token …`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Generate a token, print it once, store only its hash.
    Create {
        /// Unique id; appears in logs, audit and x-auth-subject.
        #[arg(long)]
        id: String,
        /// Role (repeatable): viewer, operator, admin or a custom role.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Lifetime ("90d", "12h") or an RFC 3339 time.
        #[arg(long)]
        expires: Option<String>,
        /// Store location.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Table of tokens: id, roles, created, expires, state, hint.
    List {
        /// A JSON array instead: one object per token, with its source and rotation overlap.
        #[arg(long)]
        json: bool,
        /// Store location.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Remove a token; a running gateway stops accepting it within a second.
    Revoke {
        /// The token's id.
        id: String,
        /// Store location.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Give a token a new secret (same id and roles), printed once; the old secret is still
    /// accepted until the overlap ends.
    Rotate {
        /// The token's id.
        id: String,
        /// How long the old secret stays valid ("24h", "30m"; "0s" refuses it at the next
        /// reload).
        #[arg(long, default_value = "24h")]
        overlap: String,
        /// Store location.
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Read a token on stdin and print its store hash (for hand-edited stores).
    Hash,
}

/// `gatehouse audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain over FILEs, oldest first, as one chain; exit 1 naming the first
    /// broken record as FILE:LINE: reason.
    Verify {
        /// Audit files in chain order (e.g. audit.log.1 audit.log).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Fail unless the first record starts a fresh chain (prev = 64 zeros).
        #[arg(long)]
        require_genesis: bool,
    },
}

/// `gatehouse cert …`
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Write DIR/tls.crt and DIR/tls.key for the given hosts and print the SHA-256 fingerprint.
    SelfSigned {
        /// DNS name or IP address (repeatable).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        /// Output folder.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
    },
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> ExitCode {
    let command = cli.command.unwrap_or(Command::Run {
        config: PathBuf::from("gateway.toml"),
    });
    let result = match command {
        Command::Run { config } => serve(&config).await,
        Command::Check { config } => return check(&config),
        Command::Demo { dir } => crate::demo::run(dir, wait_for_stop_signal()).await,
        Command::Token { command } => token(command),
        Command::Cert {
            command: CertCommand::SelfSigned { hosts, out },
        } => self_signed(&hosts, &out),
        Command::Health { admin } => return health(&admin).await,
        Command::Audit {
            command:
                AuditCommand::Verify {
                    files,
                    require_genesis,
                },
        } => return crate::observe::audit::verify::command(&files, require_genesis),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            errln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}

async fn serve(config: &Path) -> anyhow::Result<()> {
    let hangups = listen_for_sighup();
    let gateway = Gateway::start(config).await?;
    reload_on_sighup(gateway.reload_handle(), hangups);
    wait_for_stop_signal().await;
    tracing::info!("stop signal received; draining");
    gateway.shutdown();
    gateway.wait().await
}

/// Each SIGHUP triggers a reload.
fn reload_on_sighup(handle: crate::reload::ReloadHandle, hangups: Option<Hangups>) {
    let Some(mut hangups) = hangups else { return };
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading");
            handle.trigger();
        }
    });
}

#[cfg(unix)]
type Hangups = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangups = std::convert::Infallible;

/// Installs the SIGHUP handler (before start, so a SIGHUP during startup cannot kill the
/// process; it is delivered once the reload task runs).
fn listen_for_sighup() -> Option<Hangups> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(hangups) => return Some(hangups),
            Err(error) => tracing::warn!(%error, "cannot listen for SIGHUP"),
        }
    }
    None
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn check(path: &Path) -> ExitCode {
    let config = match config::load_quiet(path) {
        Ok(config) => config,
        Err(errors) => {
            print_located(&errors, path);
            return ExitCode::from(1);
        }
    };
    // Warnings first: they do not fail the check, but an operator must see them.
    for warning in &config.warnings {
        errln!("warning: {warning}");
    }
    if let Err(errors) = crate::runtime::check_files(&config) {
        print_located(&errors, path);
        return ExitCode::from(1);
    }
    outln!("{}", summary(&config));
    ExitCode::SUCCESS
}

/// Prints each error as `file:line:column: key: reason` (config::load's and the runtime
/// build's alike), located in the file at `path` where the key is written there.
fn print_located(errors: &config::ConfigErrors, path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    for line in check::located_all(errors.errors(), path, &text) {
        errln!("{line}");
    }
}

/// The kinds a route accepts as the operator would write them; shows what an absent `auth`
/// turned into.
fn auth_kinds(route: &config::RouteConfig) -> String {
    if route.auth.is_empty() {
        return "public".to_owned();
    }
    let names: Vec<&str> = route.auth.iter().map(|kind| kind.as_str()).collect();
    names.join(", ")
}

fn summary(config: &Config) -> String {
    let tls = &config.tls;
    let cert = if tls.cert.exists() {
        tls.cert.display().to_string()
    } else {
        format!(
            "self-signed for {:?}, generated on first start",
            tls.self_signed_hosts
        )
    };
    let mut lines = vec![
        format!("{}: ok", config.path.display()),
        format!(
            "  listen        {} (TLS, cert {cert})",
            config.server.listen
        ),
    ];
    if let Some(plain) = config.server.plain_listen {
        lines.push(format!(
            "  plain_listen  {plain} ({:?})",
            config.server.plain_mode
        ));
    }
    lines.push(format!("  admin         {}", config.server.admin_listen));
    if let Some(ca) = &tls.client_ca {
        // check_files loaded it already; the count is of CA certificates (public, never secret).
        let count = crate::tls::client_auth::load_bundle(ca).map_or(0, |roots| roots.len());
        let rules = config.auth.mtls.as_ref().map_or(0, |m| m.roles.len());
        lines.push(format!(
            "  client_ca     {} ({count} CA certificate(s); {rules} [[auth.mtls.roles]] rule(s))",
            ca.display()
        ));
    }
    lines.push(format!(
        "  upstreams     {}",
        config
            .upstreams
            .iter()
            .map(|u| u.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    if let Some(session) = &config.auth.session {
        // The key file's path only: its content is the secret.
        lines.push(format!(
            "  session       cookie {}, ttl {}s, {}/login|session|logout, key file {}",
            session.cookie,
            session.ttl.as_secs(),
            session.path_prefix,
            session.secret_file.display()
        ));
    }
    lines.push(format!("  routes        {}", config.routes.len()));
    for route in &config.routes {
        let kind = if route.exact { "exact " } else { "prefix" };
        lines.push(format!(
            "    {kind} {}  auth {}  {}",
            route.path,
            auth_kinds(route),
            check::action(route, &config.upstreams)
        ));
    }
    lines.extend(check::cert_and_tokens(
        config,
        time::OffsetDateTime::now_utc(),
    ));
    lines.join("\n")
}

fn token(command: TokenCommand) -> anyhow::Result<()> {
    use crate::token_cmd;
    let now = time::OffsetDateTime::now_utc();
    match command {
        TokenCommand::Create {
            id,
            roles,
            expires,
            store,
        } => {
            match store.config() {
                Some(Ok(config)) => token_cmd::unused_role_warnings(&roles, &config)
                    .iter()
                    .for_each(|warning| errln!("warning: {warning}")),
                Some(Err(error)) => errln!("warning: roles not checked: {error}"),
                None => {}
            }
            let store = store.path();
            let token = token_cmd::create(&store, &id, &roles, expires.as_deref(), now)?;
            errln!(
                "created token {id:?} in {}; it is shown once, store it now:",
                store.display()
            );
            outln!("{}", token.expose());
        }
        TokenCommand::List { json: false, store } => {
            out!("{}", token_cmd::list(&store.path(), now)?);
        }
        TokenCommand::List { json: true, store } => {
            out!("{}", token_cmd::list_json(&store.path(), now)?);
        }
        TokenCommand::Rotate { id, overlap, store } => check::rotate(&id, &overlap, &store, now)?,
        TokenCommand::Revoke { id, store } => {
            let store = store.path();
            token_cmd::revoke(&store, &id)?;
            errln!("revoked token {id:?} in {}", store.display());
        }
        TokenCommand::Hash => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let hashed = token_cmd::hash_checked(&line)?;
            if let Some(warning) = hashed.warning {
                errln!("warning: {warning}");
            }
            outln!("{}", hashed.hash);
        }
    }
    Ok(())
}

fn self_signed(hosts: &[String], out: &Path) -> anyhow::Result<()> {
    let cert = out.join("tls.crt");
    let key = out.join("tls.key");
    let generated =
        crate::tls::self_signed::generate(hosts, &cert, &key).map_err(anyhow::Error::msg)?;
    outln!("wrote {} and {}", cert.display(), key.display());
    outln!("SHA-256 fingerprint: {}", generated.fingerprint);
    Ok(())
}

async fn health(admin: &str) -> ExitCode {
    match tokio::time::timeout(Duration::from_secs(3), get_healthz(admin)).await {
        Ok(Ok(200)) => ExitCode::SUCCESS,
        Ok(Ok(status)) => {
            errln!("unhealthy: /healthz answered {status}");
            ExitCode::from(1)
        }
        Ok(Err(error)) => {
            errln!("unhealthy: {error}");
            ExitCode::from(1)
        }
        Err(_) => {
            errln!("unhealthy: /healthz did not answer within 3s");
            ExitCode::from(1)
        }
    }
}

async fn get_healthz(admin: &str) -> anyhow::Result<u16> {
    use http_body_util::Empty;
    let stream = tokio::net::TcpStream::connect(admin).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake::<_, Empty<bytes::Bytes>>(
        hyper_util::rt::TokioIo::new(stream),
    )
    .await?;
    tokio::spawn(connection);
    let request = http::Request::get("/healthz")
        .header(http::header::HOST, admin)
        .body(Empty::new())?;
    Ok(sender.send_request(request).await?.status().as_u16())
}
