#!/usr/bin/env bash
# NGINX and gatehouse side by side on this machine: the project's own small comparison.
#
#   benches/compare/run.sh [--rounds 3] [--duration 8] [--conns 64] [--idle 10000] [--no-load]
#                          [--no-idle] [--bin NAME=PATH]... [--perf FILE] [--lat SECONDS]
#
# What it starts (all on 127.0.0.1; every PID it starts is stopped on exit, nothing else):
#   - an upstream: NGINX answering "ok" on :28080 (CPU 1);
#   - NGINX as a TLS reverse proxy with no auth on :28443 (worker_processes 1, CPU 0): the job of
#     the shared harness's scenario c;
#   - gatehouse on :29443 (CPU 0): TLS + x-token checked against the token store + a rate limit,
#     its access log on (to a file) — the default shape the performance goals name. The binary is
#     ./target/release/gatehouse (or $GATEHOUSE_BIN); `--bin NAME=PATH` (repeatable) compares
#     several builds instead, each on its own port (29443, 29444, …) — an A/B of one change.
# Load: wrk -t1 -c64 (HTTP/1.1) and h2load -t1 -c8 -m8 (HTTP/2) on CPU 1, the shapes of the shared
# harness's h1 and h2 tests, in interleaved rounds (several builds: their order rotates each
# round). The figure is the proxy's CPU time per request (utime+stime of its processes from
# /proc, over the run) and the ratio to NGINX per round, then
# the median; beside it the same ratio with each proxy's figure divided by the upstream's CPU per
# request in the same measurement (the machine's speed at that moment; see the comment at the
# table). Then, unless --no-idle, the resident memory of each with N idle keep-alive TLS
# connections (benches/compare/idle_rss.py).
# --lat SECONDS adds, per round and proxy, a fixed-rate latency run (the shared harness's `lat`
# shape: one HTTP/1.1 connection at 1,000 req/s, h2load --rps) of that length, and prints the
# median p50/p99/p99.9 over the rounds: 3 s at 1,000 req/s is too few samples for a p99.
# --perf FILE records `perf record -g` of the first gatehouse during its first h1 run
# (PERF_TEST=h2: its h2 run).
# Needs: nginx, wrk, h2load, openssl, curl, taskset, python3 (../shared/bench/install-tools.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=3 duration=8 conns=64 idle=10000 load=1 idle_on=1 perf_out="" lat=0
bins=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --conns) conns="$2"; shift 2 ;;
    --idle) idle="$2"; shift 2 ;;
    --no-load) load=0; shift ;;
    --no-idle) idle_on=0; shift ;;
    --bin) bins+=("$2"); shift 2 ;;
    --perf) perf_out="$2"; shift 2 ;;
    --lat) lat="$2"; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ "${#bins[@]}" -gt 0 ] || bins=("gatehouse=${GATEHOUSE_BIN:-./target/release/gatehouse}")
for tool in nginx wrk h2load openssl curl taskset python3 timeout; do
  command -v "$tool" >/dev/null || { echo "missing $tool (see ../shared/bench/install-tools.sh)" >&2; exit 1; }
done
for entry in "${bins[@]}"; do
  [ -x "${entry#*=}" ] || { echo "missing ${entry#*=}: cargo build --release first" >&2; exit 1; }
done
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

# shellcheck source=benches/compare/gateway_conf.sh
source benches/compare/gateway_conf.sh

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
wait_for http://127.0.0.1:28080/
wait_for https://127.0.0.1:28443/

declare -A port_of timeout_pid_of
names=()
i=0
for entry in "${bins[@]}"; do
  name="${entry%%=*}"; path="${entry#*=}"
  port=$((29443 + i)); admin=$((29901 + i)); i=$((i + 1))
  gatehouse_conf "$work/$name" "$port" "$admin" 127.0.0.1:28080 "$work/cert.pem" "$work/key.pem" "$token"
  # The access log goes to a file beside the certificate, in a watched folder, as the shared
  # harness's stdout does: the watcher must not pay for it.
  start 0 "$work/$name-access.log" "$path" run -c "$work/$name/gateway.toml"
  timeout_pid_of[$name]="${started[-1]}"
  port_of[$name]="$port"
  names+=("$name")
  wait_for "https://127.0.0.1:$port/"
  [ "$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/")" = 401 ] \
    || { echo "$name answered without a token" >&2; exit 1; }
done
port_of[nginx]=28443

pids_of() { # pids_of NAME: the proxy's PIDs (NGINX master + worker; a gatehouse binary)
  if [ "$1" = nginx ]; then
    local master; master="$(cat "$work/proxy/nginx.pid")"
    echo "$master $(pgrep -P "$master" | tr '\n' ' ')"
  else
    pgrep -P "${timeout_pid_of[$1]}" | tr '\n' ' '   # exec'd by taskset under timeout
  fi
}
cpu_ticks() { # cpu_ticks PIDS...: utime+stime summed
  local total=0 p
  for p in "$@"; do
    set -- $(sed 's/^.*) //' "/proc/$p/stat"); total=$((total + ${12} + ${13}))
  done
  echo "$total"
}
hz="$(getconf CLK_TCK)"

upstream_pids() { # the upstream NGINX's PIDs (master + worker)
  local master; master="$(cat "$work/upstream/nginx.pid")"
  echo "$master $(pgrep -P "$master" | tr '\n' ' ')"
}

measure() { # measure NAME TEST -> "requests cpu_us_per_request upstream_cpu_us_per_request"
  local name="$1" test="$2" url out reqs before after pids up up_before up_after
  url="https://127.0.0.1:${port_of[$name]}/"; pids="$(pids_of "$name")"; up="$(upstream_pids)"
  before="$(cpu_ticks $pids)"; up_before="$(cpu_ticks $up)"
  if [ -n "$perf_out" ] && [ "$name" != nginx ] && [ "$test" = "${PERF_TEST:-h1}" ]; then
    timeout $((duration + 30)) perf record -q -g -o "$perf_out" -p "${pids%% *}" -- sleep "$duration" >/dev/null 2>&1 &
    perf_out=""
  fi
  if [ "$test" = h1 ]; then
    out="$(taskset -c 1 timeout $((duration + 30)) wrk -t1 -c"$conns" -d"${duration}s" -H "x-token: $token" "$url")"
    reqs="$(awk '/requests in/ {print $1}' <<<"$out")"
  else
    # --log-file as the shared harness runs it: h2load then reads fewer responses per wakeup,
    # which changes what a request costs the proxy (BENCHMARKS.md, "h2load's log file").
    rm -f "$work/h2load.log"
    out="$(taskset -c 1 timeout $((duration + 30)) h2load -t1 -c8 -m8 -D"$duration" -H "x-token: $token" \
      --log-file "$work/h2load.log" "$url")"
    reqs="$(awk '/^requests:/ {print $8}' <<<"$out")"
  fi
  after="$(cpu_ticks $pids)"; up_after="$(cpu_ticks $up)"
  python3 -c "import sys; r=max(int(sys.argv[1]),1); hz=int(sys.argv[4])
print(int(sys.argv[1]), round(int(sys.argv[2])*1e6/hz/r,2), round(int(sys.argv[3])*1e6/hz/r,2))" \
    "${reqs:-0}" "$((after - before))" "$((up_after - up_before))" "$hz"
}

rotated() { # rotated ROUND: the gatehouse builds, starting one further along each round
  local shift=$(( ($1 - 1) % ${#names[@]} ))
  echo "${names[@]:$shift}" "${names[@]:0:$shift}"
}

if [ "$load" = 1 ]; then
  results="$work/results.txt"
  for round in $(seq 1 "$rounds"); do
    for test in h1 h2; do
      # The order rotates: a build run right after another one is measured a little dearer
      # (about 1 µs a request on h1 here), and an A/B must not favour the first-listed.
      for name in nginx $(rotated "$round"); do
        read -r reqs us up_us <<<"$(measure "$name" "$test")"
        echo "$round $test $name $reqs $us $up_us" | tee -a "$results"
      done
    done
  done
  python3 - "$results" "$duration" "${names[@]}" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
duration, names = float(sys.argv[2]), sys.argv[3:]
# "per upstream CPU": each proxy's CPU per request divided by the upstream's in the same
# measurement. The upstream does the same work for every proxy, so its cost is a yardstick of how
# fast the machine ran just then; these VMs switch between a fast and a slow state for seconds at
# a time (both cores, every process ~40 % dearer), which the plain ratio of two measurements
# taken a few seconds apart mistakes for a difference between the proxies.
print("\n| test | proxy | req/s | CPU µs/req | upstream µs/req | vs NGINX (median of rounds) | range "
      "| vs NGINX per upstream CPU | range |")
print("|---|---|--:|--:|--:|--:|--:|--:|--:|")
for test in ("h1", "h2"):
    by = {}
    for r, t, name, reqs, us, up in rows:
        if t == test:
            by.setdefault(r, {})[name] = (int(reqs), float(us), float(up))
    med = lambda name, i: statistics.median(v[name][i] for v in by.values())
    print(f"| {test} | nginx | {med('nginx', 0) / duration:,.0f} | {med('nginx', 1):.1f} | "
          f"{med('nginx', 2):.1f} | 1.00× | | 1.00× | |")
    for name in names:
        rounds = [v for v in by.values() if v["nginx"][1] > 0 and v["nginx"][2] > 0 and v[name][2] > 0]
        ratios = [v[name][1] / v["nginx"][1] for v in rounds]
        scaled = [(v[name][1] / v[name][2]) / (v["nginx"][1] / v["nginx"][2]) for v in rounds]
        print(f"| {test} | {name} | {med(name, 0) / duration:,.0f} | {med(name, 1):.1f} | "
              f"{med(name, 2):.1f} | {statistics.median(ratios):.2f}× | {min(ratios):.2f}–{max(ratios):.2f} "
              f"| {statistics.median(scaled):.2f}× | {min(scaled):.2f}–{max(scaled):.2f} |")
PY
fi

latency() { # latency NAME -> "p50 p99 p99.9" in µs, one fixed-rate run of $lat seconds
  local log="$work/lat-$1.log"
  rm -f "$log"   # h2load appends to its log file
  taskset -c 1 timeout $((lat + 30)) h2load -t1 -c1 -m1 --h1 --rps=1000 -D"$lat" \
    -H "x-token: $token" --log-file "$log" "https://127.0.0.1:${port_of[$1]}/" >/dev/null
  python3 -c "import sys
v = sorted(int(line.split()[2]) for line in open(sys.argv[1]) if line.strip())
q = lambda f: v[min(len(v) - 1, int(f * len(v)))] if v else 0
print(q(.5), q(.99), q(.999))" "$log"
}

if [ "$lat" != 0 ]; then
  lat_results="$work/lat.txt"
  for round in $(seq 1 "$rounds"); do
    for name in nginx $(rotated "$round"); do
      echo "$round lat $name $(latency "$name")" | tee -a "$lat_results"
    done
  done
  python3 - "$lat_results" nginx "${names[@]}" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
print("\n| proxy | lat p50 µs | p99 µs | p99.9 µs | p99 per round |")
print("|---|--:|--:|--:|---|")
for name in sys.argv[2:]:
    mine = [[int(x) for x in r[3:6]] for r in rows if r[2] == name]
    med = [statistics.median(r[i] for r in mine) for i in range(3)]
    print(f"| {name} | {med[0]:.0f} | {med[1]:.0f} | {med[2]:.0f} | {', '.join(str(r[1]) for r in mine)} |")
PY
fi

if [ "$idle_on" = 1 ]; then
  echo
  echo "| proxy | idle TLS connections | RSS before (MiB) | RSS with them open (MiB) | per connection (KiB) |"
  echo "|---|--:|--:|--:|--:|"
  for name in nginx "${names[@]}"; do
    pids="$(pids_of "$name" | tr ' ' ',')"
    json="$(taskset -c 1 timeout 600 python3 benches/compare/idle_rss.py --port "${port_of[$name]}" \
      --pids "$pids" --conns "$idle" --header "x-token: $token")"
    python3 -c "import json,sys; j=json.loads(sys.argv[2]); b=j['rss_before_kib']; a=j['rss_after_kib']; n=max(j['opened'],1)
print(f\"| {sys.argv[1]} | {j['opened']} (failed {j['failed']}, still open {j['alive']}) | {b/1024:.1f} | {a/1024:.1f} | {(a-b)/n:.1f} |\")" "$name" "$json"
  done
fi
