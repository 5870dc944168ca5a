//! Table tests of the pure config validation (`config::parse`, i.e. `config/validate.rs`): one
//! row a rule, each a small TOML change to a valid base, with the `key` and reason the operator
//! is shown; and rows that must pass. No file is read, nothing listens.

use std::path::Path;

use gatehouse::config::{self, Config};

/// A valid config: TLS files (not read by validation), one upstream, one public route.
const BASE: &str = "[tls]\ncert = \"certs/tls.crt\"\nkey = \"certs/tls.key\"\n\n\
     [[upstreams]]\nname = \"api\"\ntargets = [\"127.0.0.1:9\"]\n";

const ROUTE: &str = "[[routes]]\npath = \"/api\"\nupstream = \"api\"\nauth = [\"public\"]\n";

fn parse(extra: &str) -> Result<Config, String> {
    let text = format!("{BASE}\n{extra}\n");
    config::parse(Path::new("/etc/gatehouse/gateway.toml"), &text).map_err(|e| e.to_string())
}

/// Each row: what it breaks, the TOML added to [`BASE`], the key the error names, and words of
/// its reason.
const REFUSED: &[(&str, &str, &str, &str)] = &[
    (
        "a misspelt key",
        "[server]\nlisen = \"0.0.0.0:8443\"",
        "server.lisen",
        "unknown key",
    ),
    (
        "a listen address without a port",
        "[server]\nlisten = \"0.0.0.0\"",
        "server.listen",
        "expected IP:PORT",
    ),
    (
        "an unknown plain_mode",
        "[server]\nplain_listen = \"0.0.0.0:8080\"\nplain_mode = \"proxy\"",
        "server.plain_mode",
        "unknown mode",
    ),
    (
        "a trusted proxy that is not a CIDR",
        "[server]\ntrusted_proxies = [\"10.0.0.0/33\"]",
        "server.trusted_proxies[0]",
        "invalid CIDR or IP",
    ),
    (
        "a header limit under 1KiB",
        "[limits]\nmax_header_bytes = 512",
        "limits.max_header_bytes",
        "must be at least 1KiB",
    ),
    (
        "zero connections",
        "[limits]\nmax_connections = 0",
        "limits.max_connections",
        "must be at least 1",
    ),
    (
        "a duration without a unit",
        "[limits]\nidle_timeout = \"30\"",
        "limits.idle_timeout",
        "invalid duration \"30\": expected a number and a unit",
    ),
    (
        "a size with an unknown unit",
        "[limits]\nmax_body_bytes = \"10 parsecs\"",
        "limits.max_body_bytes",
        "invalid size \"10 parsecs\"",
    ),
    (
        "an unknown table under [tls]",
        "[tls.extra]\n",
        "tls.extra",
        "unknown key",
    ),
    (
        "a duplicate upstream",
        "[[upstreams]]\nname = \"api\"\ntargets = [\"127.0.0.1:10\"]",
        "upstreams[1].name",
        "duplicate upstream",
    ),
    (
        "an upstream without targets",
        "[[upstreams]]\nname = \"empty\"\ntargets = []",
        "upstreams[1].targets",
        "at least one host:port target is required",
    ),
    (
        "a target without a port",
        "[[upstreams]]\nname = \"bad\"\ntargets = [\"example.com\"]",
        "upstreams[1].targets[0]",
        "expected host:port",
    ),
    (
        "a route to an unknown upstream",
        "[[routes]]\npath = \"/x\"\nupstream = \"nope\"\nauth = [\"public\"]",
        "routes[0].upstream",
        "unknown upstream",
    ),
    (
        "a route path without its slash",
        "[[routes]]\npath = \"api\"\nupstream = \"api\"\nauth = [\"public\"]",
        "routes[0].path",
        "must start with '/' (got \"api\")",
    ),
    (
        "a route that neither proxies, redirects nor responds",
        "[[routes]]\npath = \"/x\"\nauth = [\"public\"]",
        "routes[0]",
        "exactly one of upstream, redirect or respond is required",
    ),
    (
        "a duplicate route",
        "[[routes]]\npath = \"/x\"\nupstream = \"api\"\nauth = [\"public\"]\n\n\
         [[routes]]\npath = \"/x\"\nupstream = \"api\"\nauth = [\"public\"]",
        "routes[1].path",
        "duplicate route \"/x\" (same as routes[0])",
    ),
    (
        "strip_prefix with rewrite",
        "[[routes]]\npath = \"/x\"\nupstream = \"api\"\nauth = [\"public\"]\n\
         strip_prefix = true\nrewrite = \"/y\"",
        "routes[0].rewrite",
        "strip_prefix and rewrite exclude each other",
    ),
    (
        "a rewrite without its slash",
        "[[routes]]\npath = \"/x\"\nupstream = \"api\"\nauth = [\"public\"]\nrewrite = \"y\"",
        "routes[0].rewrite",
        "must start with '/'",
    ),
    (
        "an empty auth list",
        "[[routes]]\npath = \"/x\"\nupstream = \"api\"\nauth = []",
        "routes[0].auth",
        "is empty",
    ),
    (
        "an unknown credential kind",
        "[[routes]]\npath = \"/x\"\nupstream = \"api\"\nauth = [\"magic\"]",
        "routes[0].auth[0]",
        "unknown credential kind \"magic\"",
    ),
    (
        "roles on a public route",
        "[[routes]]\npath = \"/x\"\nupstream = \"api\"\nauth = [\"public\"]\nroles = [\"admin\"]",
        "routes[0].roles",
        "a public route checks no roles",
    ),
    (
        "a redirect with a non-redirect status",
        "[[routes]]\npath = \"/old\"\nredirect = \"/new\"\nredirect_status = 200",
        "routes[0].redirect_status",
        "is not a redirect status",
    ),
    (
        "a rate limit on an unknown policy",
        "[[routes]]\npath = \"/x\"\nupstream = \"api\"\nauth = [\"public\"]\nrate_limit = \"nope\"",
        "routes[0].rate_limit",
        "unknown rate limit policy",
    ),
    (
        "a rate policy without a rate",
        "[rate_limits.p]\nburst = 5",
        "rate_limits.p.rate",
        "is required",
    ),
    (
        "a rate policy keyed on nothing known",
        "[rate_limits.p]\nrate = \"10/s\"\nburst = 5\nkey = \"cookie\"",
        "rate_limits.p.key",
        "unknown key kind",
    ),
    (
        "a Redis backend with a bad on_error",
        "[rate_limits.backend]\nredis = \"redis://127.0.0.1:6379\"\non_error = \"maybe\"",
        "rate_limits.backend.on_error",
        "expected local, allow or deny",
    ),
    (
        "a JWT section without a key source",
        "[auth.jwt]\nissuer = \"https://issuer.example/\"",
        "auth.jwt",
        "one of jwks_file, jwks_url or hmac_secret_file is required",
    ),
    (
        "a JWKS URL in cleartext to a remote host",
        "[auth.jwt]\nissuer = \"https://issuer.example/\"\n\
         jwks_url = \"http://issuer.example/jwks.json\"",
        "auth.jwt.jwks_url",
        "must use https",
    ),
    (
        "external auth without a URL",
        "[auth.external]\ntimeout = \"1s\"",
        "auth.external.url",
        "invalid URL",
    ),
];

#[test]
fn each_rule_names_its_key_and_reason() {
    let mut failures = Vec::new();
    for &(what, extra, key, reason) in REFUSED {
        match parse(extra) {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(text) => {
                let named = text
                    .lines()
                    .find(|line| line.contains(&format!(" {key}: ")));
                match named {
                    Some(line) if line.contains(reason) => {}
                    Some(line) => failures.push(format!("{what}: {line:?} lacks {reason:?}")),
                    None => failures.push(format!("{what}: no line names {key}:\n{text}")),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_error_is_reported_at_once() {
    let all: String = REFUSED
        .iter()
        .filter(|(_, extra, ..)| !extra.contains("[server]") && !extra.contains("[limits]"))
        .take(3)
        .map(|(_, extra, ..)| format!("{extra}\n\n"))
        .collect();
    let text = parse(&format!(
        "[server]\nlisen = 1\n\n[limits]\nmax_connections = 0\n\n{all}"
    ))
    .expect_err("several errors");
    assert!(text.contains("server.lisen: unknown key"), "{text}");
    assert!(text.contains("limits.max_connections"), "{text}");
    assert!(text.lines().count() >= 4, "one line per problem:\n{text}");
    assert!(
        text.lines()
            .all(|line| line.starts_with("/etc/gatehouse/gateway.toml: ")),
        "every line names the file:\n{text}"
    );
}

/// What must pass: each row is valid, and nothing in it is mistaken for an error.
const ACCEPTED: &[(&str, &str)] = &[
    ("the base alone", ""),
    ("a public proxy route", ROUTE),
    (
        "a redirect route",
        "[[routes]]\npath = \"/old\"\nredirect = \"/new\"\nredirect_status = 308",
    ),
    (
        "a rate-limited route",
        "[rate_limits.p]\nrate = \"10/s\"\nburst = 5\nkey = \"ip\"\n\n\
         [[routes]]\npath = \"/x\"\nupstream = \"api\"\nauth = [\"public\"]\nrate_limit = \"p\"",
    ),
    (
        "a JWKS URL in cleartext to loopback",
        "[auth.jwt]\nissuer = \"https://issuer.example/\"\n\
         jwks_url = \"http://127.0.0.1:9/jwks.json\"",
    ),
    (
        "sizes and durations with units",
        "[limits]\nmax_body_bytes = \"10MiB\"\nidle_timeout = \"90s\"\nmax_header_bytes = \"16KiB\"",
    ),
    (
        "strip_prefix alone",
        "[[routes]]\npath = \"/x\"\nupstream = \"api\"\nauth = [\"public\"]\nstrip_prefix = true",
    ),
];

#[test]
fn valid_configs_pass_with_their_values() {
    for &(what, extra) in ACCEPTED {
        if let Err(text) = parse(extra) {
            panic!("{what} was refused:\n{text}");
        }
    }
    let config = parse(
        "[limits]\nmax_body_bytes = \"10MiB\"\nidle_timeout = \"90s\"\n\n\
         [[routes]]\npath = \"/api\"\nupstream = \"api\"\nauth = [\"public\"]",
    )
    .unwrap();
    assert_eq!(config.limits.max_body_bytes, 10 * 1024 * 1024);
    assert_eq!(
        config.limits.idle_timeout,
        std::time::Duration::from_secs(90)
    );
    assert_eq!(
        config.tls.cert,
        Path::new("/etc/gatehouse/certs/tls.crt"),
        "paths resolve against the config's folder"
    );
    assert_eq!(config.routes.len(), 1);
}
