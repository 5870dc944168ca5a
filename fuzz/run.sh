#!/usr/bin/env bash
# Builds the cargo-fuzz targets and fuzzes each one for a bounded time.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET…]      (default: 60 s, every target)
#
# Prints executions, exec/s, coverage and findings per target; exits non-zero when any target
# crashed (the input is in fuzz/artifacts/TARGET/). Logs go to $FUZZ_LOG_DIR (default
# ./fuzz-logs at the repository root). Seeds come from the repository's own files each run;
# corpora grow in fuzz/corpus/TARGET (git-ignored).
#
# cargo-fuzz needs nightly-only rustc flags; on a stable toolchain RUSTC_BOOTSTRAP=1 allows
# them (set below). Targets are built without a sanitizer (gatehouse forbids `unsafe`) and
# with debug assertions, so integer overflow panics. Each target runs as one libFuzzer process
# on one core; wrap the script in `nice -n 19` on a shared machine.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
cd "$here"

seconds="${1:-60}"
[ $# -gt 0 ] && shift
export RUSTC_BOOTSTRAP=1
build_flags=(--sanitizer none --debug-assertions)
log_dir="${FUZZ_LOG_DIR:-$root/fuzz-logs}"
mkdir -p "$log_dir"

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build "${build_flags[@]}" >"$log_dir/build.log" 2>&1 || {
    echo "build failed, see $log_dir/build.log" >&2
    exit 2
}

# --- seeds: written from the repository's own files, never committed -----------------------
seed() { # seed TARGET NAME < bytes
    mkdir -p "corpus/$1"
    cat >"corpus/$1/seed-$2"
}

seed_all() {
    local f
    for f in "$root"/gateway.toml "$root"/examples/*.toml; do
        [ -f "$f" ] && seed config_parse "$(basename "$f")" <"$f"
    done
    # A dictionary of every key and table name gateway.toml documents.
    grep -oE '^#? ?\[{1,2}[a-z_.]+\]{1,2}|^#? ?[a-z_]+ =' "$root/gateway.toml" |
        sed -E 's/^# ?//; s/ =$//' | sort -u | sed 's/.*/"&"/' >"$log_dir/config.dict"

    printf '[[tokens]]\nid = "ci"\nsha256 = "%s"\nroles = ["viewer", "operator"]\ncreated = "2024-01-01T00:00:00Z"\nexpires = "2030-01-01T00:00:00Z"\nhint = "gh_…abcd"\ndisabled = false\n\n[[tokens]]\nid = "k8s"\nfile = "secrets/token"\nroles = []\n' \
        "$(printf 'x' | sha256sum | cut -d' ' -f1)" | seed token_store entries
    printf 'id\nsha256\nfile\nroles\ncreated\nexpires\nhint\ndisabled\n[[tokens]]\n' |
        sed 's/.*/"&"/' >"$log_dir/tokens.dict"

    local i=0 p
    for p in / /api /api/x /api/configuration-service/v1/p/helm%2Fcarts.tgz /public/../private \
        /public/%2e%2e/private /public/.%2E/private //api///x /a/./b/. /a/b/.. /../../etc/passwd \
        /%61pi /a%20b /a%7Eb /x/%2e /api/secrets/v1 /admin/x /write /%41b/c /caf%C3%A9/x; do
        printf '%s' "$p" | seed normalize_route "$((i++))"
    done

    printf '\x03\x07\x11\x02POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloPOST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /c HTTP/1.1\r\nHost: h\r\n\r\n' |
        seed head_scan keep-alive
    printf '\x00POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n' |
        seed head_scan cl-te
    printf '\x02\x01\x00POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc' |
        seed head_scan cl-cl
    printf '\x00PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' | seed head_scan h2
    printf '"Content-Length:"\n"Transfer-Encoding:"\n"chunked"\n"\\x0d\\x0a"\n" HTTP/1.1\\x0d\\x0a"\n"PRI * HTTP/2.0"\n";ext=1"\n' \
        >"$log_dir/http.dict"

    printf '\x01{"alg":"HS256","typ":"JWT"}\x00{"sub":"alice","iss":"https://issuer.example","aud":["gatehouse"],"exp":1893459600,"nbf":1893450000,"realm_access":{"roles":["viewer","operator"]}}' |
        seed jwt_verify hs256
    printf '\x01{"alg":"HS256","kid":"rsa-1","crit":["b64"]}\x00{"sub":"bob","iss":"https://issuer.example","aud":"gatehouse","exp":1.8934596e9}' |
        seed jwt_verify crit
    printf '\x00eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYS0xIn0.eyJzdWIiOiJhIn0.c2lnbmF0dXJl' |
        seed jwt_verify rs256
    printf '\x00eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.' | seed jwt_verify none
}
seed_all

dict_for() {
    case "$1" in
    config_parse) echo "-dict=$log_dir/config.dict" ;;
    token_store) echo "-dict=$log_dir/tokens.dict" ;;
    head_scan) echo "-dict=$log_dir/http.dict" ;;
    esac
}

# --- fuzz -------------------------------------------------------------------------------------
status=0
summary=()
for target in "${targets[@]}"; do
    log="$log_dir/$target.log"
    mkdir -p "corpus/$target" "artifacts/$target"
    before=$(find "artifacts/$target" -type f | wc -l)
    echo "== $target: ${seconds}s, log $log"
    rc=0
    # shellcheck disable=SC2046 # dict_for prints zero or one word
    cargo fuzz run "${build_flags[@]}" "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        $(dict_for "$target") >"$log" 2>&1 || rc=$?
    runs=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1 || true)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' <<<"$last" || true)
    execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
    rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
    after=$(find "artifacts/$target" -type f | wc -l)
    findings=$((after - before))
    line="$target: rc=$rc execs=${execs:-?} exec/s=${rate:-?} ${cov:-cov: ?} findings=$findings ${runs:+($runs)}"
    echo "$line"
    summary+=("$line")
    if [ "$rc" -ne 0 ] || [ "$findings" -ne 0 ]; then
        status=1
        find "artifacts/$target" -type f -newer "$log_dir/build.log" -printf '   finding: %p\n'
        grep -m1 -A3 -E "panicked at|ERROR: libFuzzer" "$log" | sed 's/^/   /' || true
    fi
done

echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$status"
