#!/usr/bin/env bash
# NGINX and gatehouse side by side on this machine: the project's own small comparison.
#
#   benches/compare/run.sh [--rounds 3] [--duration 8] [--conns 32] [--idle 10000] [--no-load] [--no-idle]
#
# What it starts (all on 127.0.0.1, every PID it starts is stopped on exit, nothing else):
#   - an upstream: NGINX answering "ok" on :28080 (CPU 1);
#   - NGINX as a TLS reverse proxy with no auth on :28443 (worker_processes 1, CPU 0): the job of
#     the shared harness's scenario c;
#   - gatehouse (./target/release/gatehouse or $GATEHOUSE_BIN) on :29443 (CPU 0): TLS + x-token
#     checked against the token store + a rate limit, its access log on (to a file) — the default
#     shape the performance goals name.
# --perf FILE records a perf profile of gatehouse during its first h1 run (PERF_TEST=h2: h2 run).
# Load: wrk -t1 (HTTP/1.1) and h2load -t1 (HTTP/2) on CPU 1, interleaved rounds. The figure is the
# proxy's CPU time per request (utime+stime of its processes from /proc, over the run), and the
# ratio gatehouse / NGINX per round, then the median. Then, unless --no-idle, the resident memory
# of each with N idle keep-alive TLS connections (benches/compare/idle_rss.py).
# Needs: nginx, wrk, h2load, openssl, taskset, python3 (../shared/bench/install-tools.sh has them).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=3 duration=8 conns=32 idle=10000 load=1 idle_on=1 perf_out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --conns) conns="$2"; shift 2 ;;
    --idle) idle="$2"; shift 2 ;;
    --no-load) load=0; shift ;;
    --no-idle) idle_on=0; shift ;;
    --perf) perf_out="$2"; shift 2 ;;   # perf record -g gatehouse during its first h1 run into FILE
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
bin="${GATEHOUSE_BIN:-./target/release/gatehouse}"
for tool in nginx wrk h2load openssl taskset python3 timeout; do
  command -v "$tool" >/dev/null || { echo "missing $tool (see ../shared/bench/install-tools.sh)" >&2; exit 1; }
done
[ -x "$bin" ] || { echo "missing $bin: cargo build --release first" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work="$(mktemp -d /tmp/gatehouse-compare.XXXXXX)"
started=()
cleanup() {
  for pid in "${started[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 0.3
  for pid in "${started[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT INT TERM

token="compare-side-by-side-token-0123456789abcdef"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

nginx_conf() { # nginx_conf NAME BODY
  mkdir -p "$work/$1"
  cat > "$work/$1/nginx.conf" <<CONF
worker_processes 1;
pid $work/$1/nginx.pid;
error_log $work/$1/error.log warn;
daemon off;
events { worker_connections 30000; }
worker_rlimit_nofile 65536;
http {
  access_log off;
  client_body_temp_path $work/$1/body; proxy_temp_path $work/$1/proxy;
  fastcgi_temp_path $work/$1/fcgi; uwsgi_temp_path $work/$1/uwsgi; scgi_temp_path $work/$1/scgi;
  keepalive_requests 1000000;
  $2
}
CONF
}
nginx_conf upstream 'server { listen 127.0.0.1:28080 backlog=4096; location / { return 200 "ok\n"; } }'
nginx_conf proxy "upstream app { server 127.0.0.1:28080; keepalive 256; }
  server { listen 127.0.0.1:28443 ssl http2 backlog=4096;
    ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"

mkdir -p "$work/gatehouse"
printf '%s' "$token" > "$work/gatehouse/token"
cat > "$work/gatehouse/tokens.toml" <<TOML
[[tokens]]
id = "compare"
file = "token"
roles = ["admin"]
TOML
cat > "$work/gatehouse/gateway.toml" <<TOML
[server]
listen = "127.0.0.1:29443"
admin_listen = "127.0.0.1:29901"
[limits]
max_connections = 30000
drain_delay = "0s"
shutdown_grace = "1s"
[tls]
cert = "$work/cert.pem"
key = "$work/key.pem"
[auth]
tokens = "tokens.toml"
token_headers = ["x-token"]
[rate_limits.compare]
key = "identity"
rate = "1000000/s"
burst = 1000000
[[upstreams]]
name = "app"
targets = ["127.0.0.1:28080"]
max_idle_per_target = 256
[[routes]]
path = "/"
upstream = "app"
auth = ["token"]
rate_limit = "compare"
TOML

start() { # start CPU LOGFILE CMD...: run in the background pinned to CPU, remember its PID
  local cpu="$1" log="$2"; shift 2
  timeout 3600 taskset -c "$cpu" "$@" >"$log" 2>&1 &
  started+=("$!")
}
wait_for() { # wait_for URL: poll until it answers (bounded)
  for _ in $(seq 1 100); do
    curl -sk -o /dev/null -H "x-token: $token" "$1" && return 0
    sleep 0.1
  done
  echo "no answer from $1" >&2; exit 1
}
start 1 "$work/upstream/out.log" nginx -p "$work/upstream" -c "$work/upstream/nginx.conf"
start 0 "$work/proxy/out.log" nginx -p "$work/proxy" -c "$work/proxy/nginx.conf"
start 0 "$work/gatehouse-access.log" "$bin" run -c "$work/gatehouse/gateway.toml"
gatehouse_timeout_pid="${started[-1]}"
wait_for http://127.0.0.1:28080/
wait_for https://127.0.0.1:28443/
wait_for https://127.0.0.1:29443/
[ "$(curl -sk -o /dev/null -w '%{http_code}' https://127.0.0.1:29443/)" = 401 ] || { echo "gatehouse answered without a token" >&2; exit 1; }

pids_of() { # pids_of NAME: the proxy's PIDs (NGINX master + workers; gatehouse itself)
  if [ "$1" = nginx ]; then
    local master; master="$(cat "$work/proxy/nginx.pid")"
    echo "$master $(pgrep -P "$master" | tr '\n' ' ')"
  else
    pgrep -P "$gatehouse_timeout_pid" | tr '\n' ' '   # the binary, exec'd by taskset under timeout
  fi
}
cpu_ticks() { # cpu_ticks PIDS...: utime+stime summed
  local total=0 p
  for p in "$@"; do
    set -- $(sed 's/^.*) //' "/proc/$p/stat"); total=$((total + ${12} + ${13}))
  done
  echo "$total"
}
url_of() { [ "$1" = nginx ] && echo https://127.0.0.1:28443/ || echo https://127.0.0.1:29443/; }
hz="$(getconf CLK_TCK)"

measure() { # measure NAME TEST -> "requests cpu_us_per_request"
  local name="$1" test="$2" url out reqs before after pids
  url="$(url_of "$name")"; pids="$(pids_of "$name")"
  before="$(cpu_ticks $pids)"
  if [ -n "$perf_out" ] && [ "$name" = gatehouse ] && [ "$test" = "${PERF_TEST:-h1}" ]; then
    timeout $((duration + 30)) perf record -q -g -o "$perf_out" -p "${pids%% *}" -- sleep "$duration" >/dev/null 2>&1 &
    perf_out=""
  fi
  if [ "$test" = h1 ]; then
    out="$(taskset -c 1 timeout $((duration + 30)) wrk -t1 -c"$conns" -d"${duration}s" -H "x-token: $token" "$url")"
    reqs="$(awk '/requests in/ {print $1}' <<<"$out")"
  else
    out="$(taskset -c 1 timeout $((duration + 30)) h2load -t1 -c"$conns" -m10 -D"$duration" -H "x-token: $token" "$url")"
    reqs="$(awk '/^requests:/ {print $8}' <<<"$out")"
  fi
  after="$(cpu_ticks $pids)"
  python3 -c "import sys; r=int(sys.argv[1]); t=int(sys.argv[2]); print(r, round(t*1e6/int(sys.argv[3])/max(r,1),2))" \
    "${reqs:-0}" "$((after - before))" "$hz"
}

if [ "$load" = 1 ]; then
  results="$work/results.txt"
  for round in $(seq 1 "$rounds"); do
    for test in h1 h2; do
      for name in nginx gatehouse; do
        read -r reqs us <<<"$(measure "$name" "$test")"
        echo "$round $test $name $reqs $us" | tee -a "$results"
      done
    done
  done
  python3 - "$results" "$duration" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
duration = float(sys.argv[2])
print("\n| test | NGINX req/s | gatehouse req/s | NGINX CPU µs/req | gatehouse CPU µs/req | ratio (median of rounds) | range |")
print("|---|--:|--:|--:|--:|--:|--:|")
for test in ("h1", "h2"):
    by = {}
    for r, t, name, reqs, us in rows:
        if t == test:
            by.setdefault(r, {})[name] = (int(reqs), float(us))
    ratios = [v["gatehouse"][1] / v["nginx"][1] for v in by.values() if v["nginx"][1] > 0]
    med = lambda name, i: statistics.median(v[name][i] for v in by.values())
    print(f"| {test} | {med('nginx',0)/duration:,.0f} | {med('gatehouse',0)/duration:,.0f} | "
          f"{med('nginx',1):.1f} | {med('gatehouse',1):.1f} | {statistics.median(ratios):.2f}× | "
          f"{min(ratios):.2f}–{max(ratios):.2f} |")
PY
fi

if [ "$idle_on" = 1 ]; then
  echo
  echo "| server | idle TLS connections | RSS before (MiB) | RSS with them open (MiB) | per connection (KiB) |"
  echo "|---|--:|--:|--:|--:|"
  for name in nginx gatehouse; do
    pids="$(pids_of "$name" | tr ' ' ',')"
    port=28443; [ "$name" = gatehouse ] && port=29443
    json="$(taskset -c 1 timeout 600 python3 benches/compare/idle_rss.py --port "$port" --pids "$pids" \
      --conns "$idle" --header "x-token: $token")"
    python3 -c "import json,sys; j=json.loads(sys.argv[2]); b=j['rss_before_kib']; a=j['rss_after_kib']; n=max(j['opened'],1)
print(f\"| {sys.argv[1]} | {j['opened']} (failed {j['failed']}) | {b/1024:.1f} | {a/1024:.1f} | {(a-b)/n:.1f} |\")" "$name" "$json"
  done
fi
