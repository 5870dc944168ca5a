//! Runtime build errors carry the config key they come from (issue 10 item 3): `gatehouse
//! check`, a refused start and a refused reload name `tls.cert`, `auth.jwt.jwks_file`,
//! `audit.path`, or the token store's own entry, one `key: reason` line per fault, all of them
//! at once, and never a file's secret content.

use std::path::{Path, PathBuf};

use gatehouse::reload::ReloadOutcome;
use gatehouse::server::Gateway;
use tempfile::TempDir;

use crate::support::auth::{JwtKey, jwks};
use crate::support::gateway::compose_config;
use crate::support::{TestGateway, certs, within};

/// A route that needs no upstream, so only the faults under test can fail the build.
const ROUTE: &str = "[[routes]]\npath = \"/ping\"\nauth = [\"public\"]\n\
                     respond = { status = 200, body = \"pong\" }\n";

/// A token store every row but `BadTokenStore` uses: valid and empty.
const GOOD_STORE: &str = "";

/// The secret in a too-short HMAC file: must never appear in any message.
const SHORT_SECRET: &str = "hunter2-short";

/// One fault in an otherwise good gateway folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// `[tls] cert` names a file that does not exist (its key does).
    MissingCert,
    /// `tokens.toml` has an entry whose `sha256` is not a hash.
    BadTokenStore,
    /// `jwks.json` parses but holds no usable key.
    BadJwks,
    /// `[audit] path` is in a folder that does not exist.
    UnwritableAudit,
    /// `hmac_secret_file` holds a secret that is too short.
    ShortHmacSecret,
}

/// The gateway folder for `faults`: certificates, token store, JWKS, HMAC secret, config.
struct Folder {
    dir: TempDir,
    config: String,
}

impl Folder {
    fn new(faults: &[Fault]) -> Folder {
        let dir = tempfile::tempdir().unwrap();
        certs().write_into(dir.path());
        let has = |fault| faults.contains(&fault);
        let store = if has(Fault::BadTokenStore) {
            "[[tokens]]\nid = \"ci\"\nsha256 = \"abc\"\nroles = []\n"
        } else {
            GOOD_STORE
        };
        std::fs::write(dir.path().join("tokens.toml"), store).unwrap();
        let jwks = if has(Fault::BadJwks) {
            r#"{"keys":[]}"#.to_owned()
        } else {
            // One usable key, as every row but `BadJwks` has.
            jwks(&[&JwtKey::es256("k1")])
        };
        std::fs::write(dir.path().join("jwks.json"), jwks).unwrap();
        let secret = if has(Fault::ShortHmacSecret) {
            SHORT_SECRET.to_owned()
        } else {
            "a-long-enough-hmac-secret-for-hs256-0123456789".to_owned()
        };
        std::fs::write(dir.path().join("hmac.key"), secret).unwrap();
        let cert = if has(Fault::MissingCert) {
            "certs/missing.crt"
        } else {
            "certs/tls.crt"
        };
        let audit = if has(Fault::UnwritableAudit) {
            "no-such-folder/audit.log"
        } else {
            "audit.log"
        };
        let body = format!(
            "[tls]\ncert = \"{cert}\"\nkey = \"certs/tls.key\"\n\n\
             [auth]\ntokens = \"tokens.toml\"\n\n\
             [auth.jwt]\nalgorithms = [\"ES256\", \"HS256\"]\njwks_file = \"jwks.json\"\n\
             hmac_secret_file = \"hmac.key\"\n\n\
             [audit]\npath = \"{audit}\"\n\n{ROUTE}"
        );
        Folder {
            dir,
            config: compose_config(&body),
        }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn config_path(&self) -> PathBuf {
        self.path("gateway.toml")
    }

    fn write_config(&self) -> PathBuf {
        let path = self.config_path();
        std::fs::write(&path, &self.config).unwrap();
        path
    }

    /// 1-based line of the first line starting with `prefix` (where `check` locates a key).
    fn line_of(&self, prefix: &str) -> usize {
        self.config
            .lines()
            .position(|line| line.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?} in\n{}", self.config))
            + 1
    }

    /// The `key: reason` for `fault` as the build reports it: `file: key: reason`.
    fn unlocated(&self, fault: Fault) -> String {
        const NOT_FOUND: &str = "No such file or directory (os error 2)";
        let short = format!(
            "secret is {} bytes, at least 32 required",
            SHORT_SECRET.len()
        );
        let (file, key, path, reason) = match fault {
            Fault::MissingCert => (
                "gateway.toml",
                "tls.cert",
                "certs/missing.crt",
                format!("cannot read: {NOT_FOUND}"),
            ),
            Fault::BadTokenStore => (
                "tokens.toml",
                "tokens[0].sha256",
                "",
                "malformed sha256: expected 64 hex characters".to_owned(),
            ),
            Fault::BadJwks => (
                "gateway.toml",
                "auth.jwt.jwks_file",
                "jwks.json",
                "no usable key".to_owned(),
            ),
            Fault::UnwritableAudit => (
                "gateway.toml",
                "audit.path",
                "no-such-folder/audit.log",
                format!("cannot append: {NOT_FOUND}"),
            ),
            Fault::ShortHmacSecret => (
                "gateway.toml",
                "auth.jwt.hmac_secret_file",
                "hmac.key",
                short,
            ),
        };
        let file = self.path(file);
        // The token store's problems are about its own content: no further path to name.
        match path {
            "" => format!("{}: {key}: {reason}", file.display()),
            path => format!(
                "{}: {key}: {}: {reason}",
                file.display(),
                self.path(path).display()
            ),
        }
    }

    /// The line `gatehouse check` prints for `fault`: located at the key's line when the key
    /// is in gateway.toml, as the build reports it otherwise (the token store's own file).
    fn checked(&self, fault: Fault) -> String {
        let config = self.config_path();
        let prefix = format!("{}: ", config.display());
        let unlocated = self.unlocated(fault);
        let Some(rest) = unlocated.strip_prefix(&prefix) else {
            return unlocated;
        };
        let line = match fault {
            Fault::MissingCert => self.line_of("cert = "),
            Fault::BadJwks => self.line_of("jwks_file = "),
            Fault::UnwritableAudit => self.line_of("path = "),
            Fault::ShortHmacSecret => self.line_of("hmac_secret_file = "),
            Fault::BadTokenStore => unreachable!("the token store's errors are in its own file"),
        };
        format!("{}:{line}:1: {rest}", config.display())
    }
}

/// Runs `gatehouse check` on `config`: exit code and stderr lines.
async fn check(config: &Path) -> (i32, Vec<String>) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["check", "-c", config.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = within("gatehouse check", output).await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines = stderr
        .lines()
        .filter(|line| !line.starts_with("warning: "))
        .map(str::to_owned)
        .collect();
    (output.status.code().unwrap_or(-1), lines)
}

/// Every row: the faults, and the order `check` prints them in (file order, then other files).
const ROWS: &[&[Fault]] = &[
    &[Fault::MissingCert],
    &[Fault::BadTokenStore],
    &[Fault::BadJwks],
    &[Fault::UnwritableAudit],
    &[Fault::ShortHmacSecret],
    &[Fault::MissingCert, Fault::BadTokenStore],
    &[Fault::BadJwks, Fault::UnwritableAudit],
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_one_key_reason_line_per_build_fault_all_at_once() {
    for faults in ROWS {
        let folder = Folder::new(faults);
        let config = folder.write_config();
        let (code, lines) = check(&config).await;
        let want: Vec<String> = faults.iter().map(|f| folder.checked(*f)).collect();
        assert_eq!(code, 1, "{faults:?}: {lines:#?}");
        assert_eq!(lines, want, "{faults:?}");
        assert!(
            lines.iter().all(|line| !line.contains(SHORT_SECRET)),
            "a secret file's content is never printed: {lines:#?}"
        );
        assert!(
            !folder.path("audit.log").exists(),
            "check leaves no audit file behind ({faults:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_of_a_good_folder_passes_and_creates_nothing() {
    let folder = Folder::new(&[]);
    let config = folder.write_config();
    let (code, lines) = check(&config).await;
    assert_eq!(code, 0, "{lines:#?}");
    assert!(lines.is_empty(), "{lines:#?}");
    assert!(
        !folder.path("audit.log").exists(),
        "check proves the audit path writable without leaving a file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_with_build_faults_names_every_key() {
    for faults in ROWS {
        let folder = Folder::new(faults);
        let config = folder.write_config();
        let error = match within("Gateway::start", Gateway::start(&config)).await {
            Ok(_) => panic!("{faults:?}: the gateway started"),
            Err(error) => format!("{error:#}"),
        };
        // Start generates no certificate over half a pair: the missing file is named as such.
        let want: Vec<String> = faults
            .iter()
            .map(|fault| match fault {
                Fault::MissingCert => format!(
                    "{}: tls.cert: {}: certificate file missing (key {} exists)",
                    config.display(),
                    folder.path("certs/missing.crt").display(),
                    folder.path("certs/tls.key").display()
                ),
                other => folder.unlocated(*other),
            })
            .collect();
        let mut got: Vec<&str> = error.lines().collect();
        let mut sorted = want.clone();
        // The build reports in build order (tls, auth, audit); the set is what matters here.
        got.sort_unstable();
        sorted.sort_unstable();
        assert_eq!(got, sorted, "{faults:?}");
        assert!(!error.contains(SHORT_SECRET), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_build_faults_keeps_the_old_runtime_and_reports_the_keys() {
    let folder = Folder::new(&[]);
    let config = folder.write_config();
    let gw = TestGateway::start_in(folder.dir, &config).await;
    assert_eq!(gw.get("/ping").await.text(), "pong");
    let before = gw.gateway().shared().runtime.load_full().generation;

    // The same faults in the running folder: a broken JWKS and an audit path that cannot be.
    std::fs::write(gw.file("jwks.json"), r#"{"keys":[]}"#).unwrap();
    let broken = std::fs::read_to_string(&config).unwrap().replace(
        "path = \"audit.log\"",
        "path = \"no-such-folder/audit.log\"",
    );
    std::fs::write(&config, broken).unwrap();
    let want = format!(
        "{config}: auth.jwt.jwks_file: {jwks}: no usable key\n\
         {config}: audit.path: {audit}: cannot append: No such file or directory (os error 2)",
        config = config.display(),
        jwks = gw.file("jwks.json").display(),
        audit = gw.file("no-such-folder/audit.log").display(),
    );
    match gw.gateway().reload().await {
        ReloadOutcome::Failed { error } => assert_eq!(error, want),
        other => panic!("a reload with two faults applied: {other:?}"),
    }
    let runtime = gw.gateway().shared().runtime.load_full();
    assert_eq!(runtime.generation, before, "the old runtime is kept");
    assert_eq!(gw.get("/ping").await.text(), "pong");
    let status = gw.admin_get("/config").await.json();
    assert_eq!(status["last_reload"]["ok"], false, "{status}");
    assert_eq!(status["last_reload"]["error"], want.as_str());
    assert!(
        !gw.file("no-such-folder").exists(),
        "a refused reload creates nothing"
    );
}
