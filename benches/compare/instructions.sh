#!/usr/bin/env bash
# Instructions per request, counted by valgrind (callgrind): a figure that does not move with
# the machine's load, for comparing two builds where CPU time on a shared 2-core VM swings by
# more than the change (BENCHMARKS.md, "Instruction counts").
#
#   benches/compare/instructions.sh [--requests 20000] [--test h1|h2] [--keep DIR] [--plain] BIN...
#
# A BIN of `nginx` counts NGINX instead, in the shared harness's scenario c shape (TLS proxy with
# the Keptn proxy headers, no auth, no access log): the reference the goals are set against.
# --plain measures gatehouse without its features (a public route, no rate limit, the access
# log off): what hyper, h2, rustls and tokio cost under them, the floor no pipeline work lowers.
#
# For each BIN: an NGINX upstream answering "ok" on 127.0.0.1:28180 (CPU 1), the gateway under
# callgrind on 127.0.0.1:29643 (CPU 0) in the `token` shape of benches/compare/run.sh (TLS,
# x-token against the token store, a rate limit, the access log on), 2,000 warm-up requests,
# then the counters zeroed and N requests by h2load (h1: 64 connections; h2: 8 x 8 streams).
# Prints instructions per request for the measured requests, all threads together.
# Caveats: valgrind's CPU has no SHA extensions, so the token hash runs in software (about
# 3,500 instructions a request that the real CPU does not spend); memcpy's `rep movsb` counts
# once per instruction, not per byte; kernel time is not counted at all.
# Needs: valgrind, nginx, h2load, openssl, curl, taskset. Every process it starts is stopped.
set -euo pipefail
cd "$(dirname "$0")/../.."
requests=20000 test=h1 keep="" shape=token
bins=()
while [ $# -gt 0 ]; do
  case "$1" in
    --requests) requests="$2"; shift 2 ;;
    --test) test="$2"; shift 2 ;;
    --keep) keep="$2"; shift 2 ;;
    --plain) shape=plain; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) bins+=("$1"); shift ;;
  esac
done
[ "${#bins[@]}" -gt 0 ] || bins=(./target/release/gatehouse)
for tool in valgrind callgrind_control nginx h2load openssl curl taskset; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install valgrind nginx nghttp2-client)" >&2; exit 1; }
done

work="$(mktemp -d /tmp/gatehouse-instructions.XXXXXX)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$work/up/nginx.pid" ] && kill "$(cat "$work/up/nginx.pid")" 2>/dev/null || true
  [ -n "$keep" ] || rm -rf "$work"
}
trap cleanup EXIT INT TERM

token="instructions-per-request-token-0123456789abcdef"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
mkdir -p "$work/up"
cat > "$work/up/nginx.conf" <<CONF
worker_processes 1;
pid $work/up/nginx.pid;
error_log $work/up/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/up/body; proxy_temp_path $work/up/proxy;
  fastcgi_temp_path $work/up/fcgi; uwsgi_temp_path $work/up/uwsgi; scgi_temp_path $work/up/scgi;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:28180; location / { return 200 "ok\n"; } }
}
CONF
taskset -c 1 nginx -p "$work/up" -c "$work/up/nginx.conf"
# shellcheck source=benches/compare/gateway_conf.sh
source benches/compare/gateway_conf.sh
gatehouse_conf "$work/gw" 29643 29951 127.0.0.1:28180 "$work/cert.pem" "$work/key.pem" "$token"
log_level=info
if [ "$shape" = plain ]; then
  # The floor under the features: a public route, no rate limit, the access log off.
  sed -i -e 's/^auth = \["token"\]/auth = ["public"]/' -e '/^rate_limit = /d' "$work/gw/gateway.toml"
  log_level=warn
fi

load() { # load N: N requests of the chosen test, all expected 2xx
  local shape=(-c8 -m8)
  [ "$test" = h1 ] && shape=(--h1 -c64 -m1)
  local report
  report="$(taskset -c 1 timeout 600 h2load -t1 "${shape[@]}" -n "$1" -H "x-token: $token" \
    https://127.0.0.1:29643/)"
  grep -q "status codes: $1 2xx" <<<"$report" \
    || { echo "not every request answered 2xx: $report" >&2; exit 1; }
}

# NGINX as the shared harness's scenario c (TLS termination, the Keptn proxy headers, no auth,
# no access log), one process (no master) so callgrind counts its worker.
mkdir -p "$work/px"
cat > "$work/px/nginx.conf" <<CONF
worker_processes 1;
master_process off;
daemon off;
pid $work/px/nginx.pid;
error_log $work/px/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  server_tokens off;
  client_body_temp_path $work/px/body; proxy_temp_path $work/px/proxy;
  fastcgi_temp_path $work/px/fcgi; uwsgi_temp_path $work/px/uwsgi; scgi_temp_path $work/px/scgi;
  keepalive_requests 1000000;
  upstream app { server 127.0.0.1:28180; keepalive 128; }
  server {
    listen 127.0.0.1:29643 ssl http2;
    ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;
    location / {
      proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host \$host; proxy_set_header X-Real-IP \$remote_addr;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
    }
  }
}
CONF

for bin in "${bins[@]}"; do
  out="$work/callgrind.$(basename "$bin").out"
  if [ "$bin" = nginx ]; then
    command=(nginx -p "$work/px" -c "$work/px/nginx.conf")
  else
    command=("$bin" run -c "$work/gw/gateway.toml")
  fi
  RUST_LOG="$log_level" taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out" \
    "${command[@]}" >"$work/gw/run.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 1 300); do
    curl -sk -o /dev/null -H "x-token: $token" https://127.0.0.1:29643/ && break
    sleep 0.2
  done
  load 2000
  callgrind_control -z "$pid" >/dev/null 2>&1 || { echo "callgrind did not answer" >&2; exit 1; }
  load "$requests"
  callgrind_control -d "$pid" >/dev/null 2>&1 || { echo "callgrind did not answer" >&2; exit 1; }
  kill "$pid"; wait "$pid" 2>/dev/null || true
  total="$(awk '/^totals:|^summary:/ {print $2; exit}' "$out.1")"
  python3 -c "import sys; print(f'{sys.argv[1]}: {int(sys.argv[2]) / int(sys.argv[3]):,.0f} instructions per request ({sys.argv[4]}, {int(sys.argv[3]):,} requests)')" \
    "$bin" "$total" "$requests" "$test"
done
