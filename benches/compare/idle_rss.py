#!/usr/bin/env python3
"""Open N idle keep-alive TLS connections to a server and report its resident memory.

Each connection completes the TLS handshake and one HTTP/1.1 request (so the server holds a
fully established keep-alive connection, as a browser or an API client leaves it), then stays
open and idle while the script reads VmRSS of the given PIDs from /proc/PID/status.

    idle_rss.py --host 127.0.0.1 --port 28443 --pids 123,124 --conns 10000 [--header 'x-token: T']

Prints one JSON object: rss_before_kib, rss_after_kib (sums over the PIDs), opened, alive (still
open when RSS was read: a server that closed idle connections early frees their memory), failed.
Loopback only; every socket has a timeout; every connection is closed before exit.
"""
import argparse
import json
import resource
import select
import socket
import ssl
import sys
import time


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def raise_fd_limit(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + 256
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            sys.exit(f"idle_rss: need {want} open files, hard limit is {hard} (ulimit -Hn)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def open_one(ctx, host, port, request):
    raw = socket.create_connection((host, port), timeout=10)
    tls = ctx.wrap_socket(raw, server_hostname="localhost")
    tls.sendall(request)
    # Read until the end of a small response's head and body; the servers answer "ok".
    data = b""
    deadline = time.monotonic() + 10
    while b"\r\n\r\n" not in data and time.monotonic() < deadline:
        chunk = tls.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the response")
        data += chunk
    if not data.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(f"unexpected response: {data[:40]!r}")
    return tls


def still_open(conns):
    """How many connections the server has not closed: a readable idle socket means EOF (or an
    unexpected byte), so only the silent ones count."""
    poller = select.poll()
    for conn in conns:
        if conn.pending():
            continue
        poller.register(conn.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
    closed = {fd for fd, _ in poller.poll(0)}
    return sum(1 for conn in conns if not conn.pending() and conn.fileno() not in closed)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pids", required=True, help="comma-separated PIDs whose RSS is summed")
    parser.add_argument("--conns", type=int, default=10000)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--path", default="/")
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        sys.exit("idle_rss: loopback only")
    pids = [int(p) for p in args.pids.split(",") if p]
    raise_fd_limit(args.conns)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    extra = "".join(f"{h}\r\n" for h in args.header)
    request = f"GET {args.path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n".encode()
    before = rss_kib(pids)
    conns, failed, first_error = [], 0, None
    try:
        for _ in range(args.conns):
            try:
                conns.append(open_one(ctx, args.host, args.port, request))
            except (OSError, ConnectionError) as error:
                failed += 1
                first_error = first_error or str(error)
                if failed > args.conns // 100 + 10:
                    break
        time.sleep(1.0)  # let the server settle its buffers (measurement pause, not synchronisation)
        after = rss_kib(pids)
        alive = still_open(conns)
    finally:
        for conn in conns:
            try:
                conn.close()
            except OSError:
                pass
    print(json.dumps({"rss_before_kib": before, "rss_after_kib": after, "opened": len(conns), "alive": alive,
                      "failed": failed, "first_error": first_error}))


if __name__ == "__main__":
    main()
