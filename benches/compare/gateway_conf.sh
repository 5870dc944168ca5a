# Sourced by benches/compare/*.sh: the gatehouse config they measure, the shape the performance
# goals name (TLS, x-token checked against the token store, a rate limit, the access log on).
#
# gatehouse_conf DIR PORT ADMIN_PORT UPSTREAM CERT KEY TOKEN: writes DIR/gateway.toml, its token
# store and the token file; the gateway listens on 127.0.0.1:PORT and proxies to UPSTREAM.
gatehouse_conf() {
  mkdir -p "$1"
  printf '%s' "$7" > "$1/token"
  printf '[[tokens]]\nid = "compare"\nfile = "token"\nroles = ["admin"]\n' > "$1/tokens.toml"
  cat > "$1/gateway.toml" <<TOML
[server]
listen = "127.0.0.1:$2"
admin_listen = "127.0.0.1:$3"
[limits]
max_connections = 30000
drain_delay = "0s"
shutdown_grace = "1s"
[tls]
cert = "$5"
key = "$6"
[auth]
tokens = "tokens.toml"
token_headers = ["x-token"]
[rate_limits.compare]
key = "identity"
rate = "1000000/s"
burst = 1000000
[[upstreams]]
name = "app"
targets = ["$4"]
max_idle_per_target = 256
[[routes]]
path = "/"
upstream = "app"
auth = ["token"]
rate_limit = "compare"
TOML
}
