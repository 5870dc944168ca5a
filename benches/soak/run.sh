#!/usr/bin/env bash
# Soak run: gatehouse under mixed traffic for DURATION seconds while its token store, certificate
# and gateway.toml change every 2 s. Samples RSS, fds, threads and the admin /metrics at the
# start, every SAMPLE_EVERY seconds and at the end, prints a table and a verdict, and exits 1 if
# fds or RSS grew past their bounds or any error occurred. See benches/soak/README.md.
#
#   GATEHOUSE_BIN=target/release/gatehouse DURATION=600 bash benches/soak/run.sh
#
# Everything listens on 127.0.0.1; every process started here is killed on exit; every loop ends
# at the deadline. Installs nothing: it says what is missing.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DURATION=${DURATION:-600}
SAMPLE_EVERY=${SAMPLE_EVERY:-60}
FD_BOUND=${FD_BOUND:-8}
RSS_BOUND_MIB=${RSS_BOUND_MIB:-64}
KEEP=${KEEP:-0}
GATEHOUSE_BIN=${GATEHOUSE_BIN:-$ROOT/target/release/gatehouse}
case $GATEHOUSE_BIN in /*) ;; *) GATEHOUSE_BIN=$PWD/$GATEHOUSE_BIN ;; esac
PY=(python3 "$HERE/soak.py")

say() { printf '[soak %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# ---- prerequisites ---------------------------------------------------------------------------
missing=()
[[ -x $GATEHOUSE_BIN ]] || missing+=("gatehouse binary at $GATEHOUSE_BIN (cargo build --release, or set GATEHOUSE_BIN)")
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    missing+=("python3 >= 3.11 (apt-get install python3)")
fi
if ! command -v curl >/dev/null; then
    missing+=("curl (apt-get install curl)")
elif ! curl --version | grep -q HTTP2; then
    missing+=("curl with HTTP/2 support (apt-get install curl)")
fi
if ((${#missing[@]})); then
    for m in "${missing[@]}"; do echo "soak: missing: $m" >&2; done
    exit 2
fi
if command -v h2load >/dev/null; then
    H2LOAD=1
else
    H2LOAD=0
    say "h2load not found (apt-get install nghttp2-client): HTTP/2 load comes from curl only"
fi
[[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 10 ]] || { echo "soak: DURATION must be >= 10 s" >&2; exit 2; }

# ---- cleanup ---------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-soak.XXXXXX")
# gateway.toml, tokens.toml and certs/ live in ETC; the log and the results one level up, because
# gatehouse watches the folders of its files and a write there, even to another file, is an event.
ETC=$WORK/etc
mkdir "$ETC"
PIDS=()
GW_PID=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.5
    done
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if ((rc == 0)) && [[ $KEEP != 1 ]]; then
        rm -rf "$WORK"
    else
        say "kept $WORK (gatehouse.log, samples.jsonl, *.json)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- setup -----------------------------------------------------------------------------------
read -r GW ADMIN UP < <("${PY[@]}" ports 3)
umask 077
"$GATEHOUSE_BIN" cert self-signed --host localhost --host 127.0.0.1 --out "$ETC/certs" >/dev/null
TOKEN=$("$GATEHOUSE_BIN" token create --id soak-client --role viewer --store "$ETC/tokens.toml" 2>/dev/null)
printf '%s\n' "$TOKEN" >"$WORK/token"
printf 'x-token: %s\n' "$TOKEN" >"$WORK/token.hdr"

cat >"$ETC/gateway.toml" <<EOF
# Written by benches/soak/run.sh. The churn loop flips max_body_bytes between 10MiB and 11MiB.
[server]
listen = "127.0.0.1:$GW"
admin_listen = "127.0.0.1:$ADMIN"

[limits]
max_body_bytes = "10MiB"
drain_delay = "100ms"
shutdown_grace = "2s"

[tls]
cert = "certs/tls.crt"
key = "certs/tls.key"

[auth]
tokens = "tokens.toml"
# The churn loop checks every revoked token once (one failed attempt per tick): room for that.
failure_limit = { rate = "120/min", burst = 60 }

# Small on purpose: /limited gets about 3x this, so about two in three answers are 429.
[rate_limits.tight]
key = "route"
rate = "10/s"
burst = 10

[[upstreams]]
name = "echo"
targets = ["127.0.0.1:$UP"]
scheme = "http"
max_idle_per_target = 16
# Short, so the pool is empty again a few seconds after the traffic stops (fds back to start).
pool_idle_timeout = "2s"

[[routes]]
path = "/open"
upstream = "echo"
auth = ["public"]

[[routes]]
path = "/secure"
upstream = "echo"
auth = ["token"]
roles = ["viewer"]

[[routes]]
path = "/limited"
upstream = "echo"
auth = ["public"]
rate_limit = "tight"

[[routes]]
path = "/ws"
upstream = "echo"
auth = ["public"]
websocket = true
EOF

if ! "$GATEHOUSE_BIN" check -c "$ETC/gateway.toml" >"$WORK/check.txt" 2>&1; then
    cat "$WORK/check.txt" >&2
    exit 1
fi

START=$(date +%s)
UNTIL=$((START + DURATION + 5))
timeout $((DURATION + 120)) "${PY[@]}" upstream --port "$UP" --until $((UNTIL + 60)) &
PIDS+=($!)
(cd "$ETC" && exec timeout $((DURATION + 180)) "$GATEHOUSE_BIN" run -c "$ETC/gateway.toml") >"$WORK/gatehouse.log" 2>&1 &
PIDS+=($!)
# `timeout` is the child we started; the gateway is its child: sample that one.
for _ in $(seq 50); do
    GW_PID=$(pgrep -P "${PIDS[-1]}" || true)
    [[ -n $GW_PID ]] && curl -sf "http://127.0.0.1:$ADMIN/readyz" >/dev/null 2>&1 && break
    sleep 0.2
done
if [[ -z $GW_PID ]] || ! curl -sf "http://127.0.0.1:$ADMIN/readyz" >/dev/null 2>&1; then
    echo "soak: gatehouse did not become ready; its log:" >&2
    tail -20 "$WORK/gatehouse.log" >&2
    exit 1
fi
say "gatehouse pid $GW_PID on https://127.0.0.1:$GW (admin :$ADMIN, upstream :$UP), work dir $WORK"

sample() { "${PY[@]}" sample --pid "$GW_PID" --admin "$ADMIN" --label "$1" --out "$WORK/samples.jsonl"; }
alive() { kill -0 "$GW_PID" 2>/dev/null; }

sleep 1
sample start

# ---- traffic and churn -----------------------------------------------------------------------
T0=$(date +%s)
UNTIL=$((T0 + DURATION))
DRIVERS=()
start_driver() {
    timeout $((DURATION + 60)) "$@" &
    PIDS+=($!)
    DRIVERS+=($!)
}
start_driver "${PY[@]}" traffic --port "$GW" --token-file "$WORK/token" --until "$UNTIL" --out "$WORK/traffic.json"
start_driver "${PY[@]}" h2curl --port "$GW" --header-file "$WORK/token.hdr" --until "$UNTIL" --out "$WORK/h2curl.json"
start_driver "${PY[@]}" churn --bin "$GATEHOUSE_BIN" --dir "$ETC" --port "$GW" --admin "$ADMIN" --until "$UNTIL" --out "$WORK/churn.json"
if ((H2LOAD)); then
    # 2 connections x 30 requests/s, up to 4 streams in flight each.
    start_driver sh -c 'exec h2load -c 2 -m 4 --rps 30 -D "$1" -H "x-token: $(cat "$2")" "$3/open/h2load" "$3/secure/h2load" >"$4" 2>&1' \
        h2load "$DURATION" "$WORK/token" "https://127.0.0.1:$GW" "$WORK/h2load.txt"
fi
say "traffic and churn running for ${DURATION}s (sample every ${SAMPLE_EVERY}s)"

NEXT=$((T0 + SAMPLE_EVERY))
while (($(date +%s) < UNTIL)) && alive; do
    now=$(date +%s)
    if ((now >= NEXT && NEXT < UNTIL)); then
        sample "$((NEXT - T0))s"
        say "sample at $((NEXT - T0))s: $(tail -1 "$WORK/samples.jsonl" | cut -c1-160)"
        NEXT=$((NEXT + SAMPLE_EVERY))
    fi
    sleep 1
done
if alive; then sample "${DURATION}s"; fi

say "waiting for the drivers to finish"
for pid in "${DRIVERS[@]}"; do wait "$pid" || say "driver $pid exited $?"; done

# Idle again: client connections closed; pooled upstream connections expire after 2 s.
ALIVE=1
alive || ALIVE=0
if ((ALIVE)); then
    sleep 5
    sample end
    # Nothing changes from here on: any reload now is one without a cause.
    sleep 5
    sample idle
fi
alive || ALIVE=0

"${PY[@]}" report --dir "$WORK" --fd-bound "$FD_BOUND" --rss-bound-mib "$RSS_BOUND_MIB" --alive "$ALIVE"
