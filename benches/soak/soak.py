#!/usr/bin/env python3
"""Helpers for benches/soak/run.sh (Python 3.11, standard library only).

Subcommands:
  ports N            print N free loopback TCP ports
  upstream           HTTP/1.1 echo server that also echoes WebSocket frames
  traffic            HTTP/1.1 keep-alive requests and WebSocket round trips through gatehouse
  h2curl             HTTP/2 requests with `curl --http2` (401s and 429s over h2 too)
  churn              every 2 s: create and revoke a token, rewrite the certificate, edit or
                     touch gateway.toml, and check that each change is live
  sample             one line of JSON: RSS, fds, threads, CPU of a pid plus admin /metrics
  report             the table, the client-side totals and the verdict (exit 1 on failure)

Every loop runs until a deadline (`--until`, seconds since the epoch) and every socket has a
timeout, so nothing here can outlive the run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import http.client
import json
import os
import random
import re
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SOCKET_TIMEOUT = 10.0
# Statuses the soak expects from gatehouse; anything else is an error.
EXPECTED = {"200", "101", "401", "429"}


# ---------------------------------------------------------------------------------------------
# shared bits


def free_ports(count: int) -> list[int]:
    socks, ports = [], []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
        ports.append(sock.getsockname()[1])
    for sock in socks:
        sock.close()
    return ports


def client_context(alpn: str = "http/1.1") -> ssl.SSLContext:
    """TLS client context that accepts the self-signed certificate (it changes every 2 s)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols([alpn])
    return ctx


class Stats:
    """Thread-safe counters: outcomes by kind and status, errors by kind, first error texts."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ok: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.examples: list[str] = []
        self.info: Counter[str] = Counter()

    def outcome(self, kind: str, status: str, allowed: set[str]) -> bool:
        with self.lock:
            if status in allowed:
                self.ok[f"{kind} {status}"] += 1
                return True
            self.errors[f"{kind}: unexpected status {status}"] += 1
            self._example(f"{kind}: unexpected status {status}")
            return False

    def error(self, kind: str, what: str, detail: str = "") -> None:
        with self.lock:
            self.errors[f"{kind}: {what}"] += 1
            self._example(f"{time.strftime('%H:%M:%S')} {kind}: {what} {detail}".strip())

    def note(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.info[what] += n

    def _example(self, text: str) -> None:
        if len(self.examples) < 20:
            self.examples.append(text[:300])

    def dump(self, path: str, extra: dict | None = None) -> None:
        data = {
            "ok": dict(self.ok),
            "errors": dict(self.errors),
            "examples": self.examples,
            "info": dict(self.info),
        }
        data.update(extra or {})
        Path(path).write_text(json.dumps(data, indent=1, sort_keys=True))


def pace(started: float, done: int, rate: float) -> None:
    """Sleeps so that `done` actions since `started` keep to `rate` per second."""
    ahead = started + done / rate - time.monotonic()
    if ahead > 0:
        time.sleep(min(ahead, 1.0))


def error_name(exc: BaseException) -> str:
    return type(exc).__name__


# ---------------------------------------------------------------------------------------------
# upstream: HTTP/1.1 echo + WebSocket echo


async def read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                # trailers, if any, until the empty line
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return body
            body += (await reader.readexactly(size + 2))[:-2]
    length = int(headers.get("content-length", "0") or 0)
    return await reader.readexactly(length) if length else b""


async def ws_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echoes every data frame back unmasked; answers a close with a close."""
    while True:
        first = await reader.readexactly(2)
        opcode, masked, length = first[0] & 0x0F, first[1] & 0x80, first[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", await reader.readexactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", await reader.readexactly(8))[0]
        mask = await reader.readexactly(4) if masked else b"\0\0\0\0"
        data = bytearray(await reader.readexactly(length))
        for i in range(length):
            data[i] ^= mask[i % 4]
        if opcode == 0x9:  # ping -> pong
            opcode = 0xA
        writer.write(ws_frame(opcode, bytes(data), masked=False))
        await writer.drain()
        if opcode == 0x8:
            return


async def upstream_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await read_head(reader)
            if head is None:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            if headers.get("upgrade", "").lower() == "websocket":
                accept = base64.b64encode(
                    hashlib.sha1((headers.get("sec-websocket-key", "") + WS_GUID).encode()).digest()
                ).decode()
                writer.write(
                    (
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                    ).encode()
                )
                await writer.drain()
                await ws_echo(reader, writer)
                return
            body = await read_body(reader, headers)
            reply = f"echo {method} {target} {len(body)}\n".encode()
            close = headers.get("connection", "").lower() == "close"
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                + f"Content-Length: {len(reply)}\r\n".encode()
                + (b"Connection: close\r\n" if close else b"")
                + b"\r\n"
                + reply
            )
            await writer.drain()
            if close:
                return
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        return
    finally:
        writer.close()


async def upstream_main(port: int, until: float) -> None:
    server = await asyncio.start_server(upstream_conn, "127.0.0.1", port, limit=1 << 16)
    async with server:
        while time.time() < until:
            await asyncio.sleep(1)


# ---------------------------------------------------------------------------------------------
# WebSocket client


def ws_frame(opcode: int, payload: bytes, masked: bool = True) -> bytes:
    head = bytes([0x80 | opcode])
    mask_bit = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed mid-frame")
        buf += chunk
    return buf


def ws_read(sock: socket.socket) -> tuple[int, bytes]:
    first = recv_exact(sock, 2)
    opcode, length = first[0] & 0x0F, first[1] & 0x7F
    if first[1] & 0x80:
        raise ValueError("server frame is masked")
    if length == 126:
        length = struct.unpack("!H", recv_exact(sock, 2))[0]
    elif length == 127:
        length = struct.unpack("!Q", recv_exact(sock, 8))[0]
    return opcode, recv_exact(sock, length)


def ws_open(port: int, ctx: ssl.SSLContext) -> tuple[socket.socket, str]:
    """TLS connection + WebSocket handshake on /ws. Returns (socket, status code)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
    try:
        sock = ctx.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            sock.close()
            raise ConnectionError("closed during WebSocket handshake")
        head += chunk
        if len(head) > 65536:
            sock.close()
            raise ValueError("handshake response too long")
    status = head.split(b" ", 2)[1].decode()
    expected = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
    if status == "101" and expected.encode() not in head:
        sock.close()
        raise ValueError("bad Sec-WebSocket-Accept")
    return sock, status


def ws_roundtrip(sock: socket.socket, stats: Stats, kind: str) -> bool:
    size = random.randint(1, 2048)
    if random.random() < 0.5:
        opcode, payload = 0x1, "".join(random.choices("abcdefghij XYZ", k=size)).encode()
    else:
        opcode, payload = 0x2, os.urandom(size)
    sock.sendall(ws_frame(opcode, payload))
    got_opcode, got = ws_read(sock)
    if (got_opcode, got) != (opcode, payload):
        stats.error(kind, "echo mismatch", f"sent {len(payload)} B got {len(got)} B")
        return False
    stats.note(f"{kind} frames echoed")
    return True


def ws_close(sock: socket.socket) -> None:
    try:
        sock.sendall(ws_frame(0x8, struct.pack("!H", 1000)))
        ws_read(sock)
    finally:
        sock.close()


# ---------------------------------------------------------------------------------------------
# traffic: HTTP/1.1 keep-alive + WebSocket


def h1_requests(token: str) -> list[tuple[str, str, bytes | None, dict[str, str], set[str], str]]:
    """(method, path, body, headers, allowed statuses, label) cycled by every HTTP/1.1 worker."""
    with_token = {"x-token": token}
    return [
        ("GET", "/open/a?x=1", None, {}, {"200"}, "h1 GET /open"),
        ("GET", "/secure/b", None, with_token, {"200"}, "h1 GET /secure+token"),
        ("POST", "/open/c", os.urandom(3000), {"content-type": "application/octet-stream"},
         {"200"}, "h1 POST /open"),
        ("GET", "/secure/d", None, {}, {"401"}, "h1 GET /secure no token"),
        ("GET", "/limited/e", None, {}, {"200", "429"}, "h1 GET /limited"),
        ("POST", "/secure/f", b"x" * 500, {"content-type": "text/plain"}, {"401"},
         "h1 POST /secure no token"),
    ]


def h1_worker(port: int, token: str, until: float, rate: float, per_conn: int, stats: Stats) -> None:
    ctx = client_context()
    requests = h1_requests(token)
    conn: http.client.HTTPSConnection | None = None
    on_conn = 0
    started, done = time.monotonic(), 0
    while time.time() < until:
        if conn is None:
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=SOCKET_TIMEOUT)
            on_conn = 0
            stats.note("h1 connections opened")
        method, path, body, headers, allowed, label = requests[done % len(requests)]
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            status = str(response.status)
            if stats.outcome(label, status, allowed) and status == "200":
                if not data.startswith(f"echo {method} {path} ".encode()):
                    stats.error(label, "bad body", repr(data[:80]))
            if response.will_close:
                stats.note(f"h1 server announced close after {status}")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            stats.error(label, error_name(exc), str(exc))
            conn.close()
            conn = None
        on_conn += 1
        done += 1
        if conn is not None and on_conn >= per_conn:
            conn.close()
            conn = None
        pace(started, done, rate)
    if conn is not None:
        conn.close()


def ws_short_worker(port: int, until: float, rate: float, stats: Stats) -> None:
    """New connection per handshake, a few echo round trips, a clean close."""
    ctx = client_context()
    started, done = time.monotonic(), 0
    while time.time() < until:
        try:
            sock, status = ws_open(port, ctx)
            if stats.outcome("ws handshake", status, {"101"}):
                for _ in range(5):
                    if not ws_roundtrip(sock, stats, "ws short"):
                        break
                ws_close(sock)
            else:
                sock.close()
        except (OSError, ValueError) as exc:
            stats.error("ws short", error_name(exc), str(exc))
        done += 1
        pace(started, done, rate)


def ws_long_worker(port: int, until: float, stats: Stats) -> None:
    """One tunnel for the whole run (across every reload), one round trip a second."""
    ctx = client_context()
    sock = None
    while time.time() < until:
        try:
            if sock is None:
                sock, status = ws_open(port, ctx)
                stats.note("ws long connections opened")
                if not stats.outcome("ws long handshake", status, {"101"}):
                    sock.close()
                    sock = None
                    time.sleep(1)
                    continue
            if not ws_roundtrip(sock, stats, "ws long"):
                sock.close()
                sock = None
        except (OSError, ValueError) as exc:
            stats.error("ws long", error_name(exc), str(exc))
            if sock is not None:
                sock.close()
            sock = None
        time.sleep(1)
    if sock is not None:
        try:
            ws_close(sock)
        except (OSError, ValueError) as exc:
            stats.error("ws long", f"close: {error_name(exc)}", str(exc))


def traffic_main(args: argparse.Namespace) -> None:
    token = Path(args.token_file).read_text().strip()
    stats = Stats()
    threads = [
        threading.Thread(
            target=h1_worker,
            args=(args.port, token, args.until, args.h1_rate, args.per_conn, stats),
        )
        for _ in range(args.h1_workers)
    ]
    threads += [
        threading.Thread(target=ws_short_worker, args=(args.port, args.until, args.ws_rate, stats))
        for _ in range(args.ws_workers)
    ]
    threads.append(threading.Thread(target=ws_long_worker, args=(args.port, args.until, stats)))
    for thread in threads:
        thread.daemon = True
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, args.until - time.time()) + 30)
    stats.dump(args.out)


# ---------------------------------------------------------------------------------------------
# HTTP/2 with curl


def h2curl_main(args: argparse.Namespace) -> None:
    """One curl per tick, several requests multiplexed over one HTTP/2 connection."""
    base = f"https://127.0.0.1:{args.port}"
    requests = [
        ("/open/h2", [], {"200"}, "h2 GET /open"),
        ("/secure/h2", ["-H", f"@{args.header_file}"], {"200"}, "h2 GET /secure+token"),
        ("/secure/h2", [], {"401"}, "h2 GET /secure no token"),
        ("/limited/h2", [], {"200", "429"}, "h2 GET /limited"),
    ]
    stats = Stats()
    started, done = time.monotonic(), 0
    while time.time() < args.until:
        cmd = ["curl"]
        labels = []
        for i, (path, extra, allowed, label) in enumerate(requests * args.repeat):
            if i:
                cmd.append("--next")
            cmd += ["-sk", "--http2", "--max-time", "10", "-o", "/dev/null",
                    "-w", "%{http_code} %{http_version}\\n", *extra, base + path]
            labels.append((label, allowed))
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            lines = result.stdout.split()
            pairs = list(zip(lines[0::2], lines[1::2]))
            for (label, allowed), (code, version) in zip(labels, pairs):
                if code == "000":
                    stats.error(label, "no response (curl failed)", f"exit {result.returncode}")
                elif version != "2":
                    stats.error(label, f"HTTP/{version} instead of HTTP/2")
                else:
                    stats.outcome(label, code, allowed)
            if len(pairs) < len(labels):
                stats.error("h2 curl", "missing results", f"exit {result.returncode}")
        except subprocess.TimeoutExpired:
            stats.error("h2 curl", "curl timed out")
        done += 1
        pace(started, done, args.rate)
    stats.dump(args.out)


# ---------------------------------------------------------------------------------------------
# churn: live changes every 2 s, each checked


def run_bin(binary: str, *argv: str) -> str:
    result = subprocess.run([binary, *argv], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:2])} exited {result.returncode}: {result.stderr.strip()[:200]}")
    return result.stdout


def secure_status(port: int, token: str) -> str:
    ctx = client_context()
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=SOCKET_TIMEOUT)
    try:
        conn.request("GET", "/secure/churn", headers={"x-token": token})
        response = conn.getresponse()
        response.read()
        return str(response.status)
    finally:
        conn.close()


def served_fingerprint(port: int) -> str:
    ctx = client_context()
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as sock:
            der = sock.getpeercert(binary_form=True) or b""
    return hashlib.sha256(der).hexdigest()


def config_hash(admin: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/config", timeout=SOCKET_TIMEOUT) as r:
        return json.load(r).get("content_hash", "")


def wait_for(check, want, bound: float) -> float | None:
    """Polls `check()` until it returns `want`; the time it took, or None past `bound` seconds."""
    start = time.monotonic()
    while True:
        try:
            if check() == want:
                return time.monotonic() - start
        except (OSError, http.client.HTTPException, ValueError):
            pass
        if time.monotonic() - start > bound:
            return None
        time.sleep(0.02)


def churn_main(args: argparse.Namespace) -> None:
    work = Path(args.dir)
    store, config = work / "tokens.toml", work / "gateway.toml"
    stats = Stats()
    latency: dict[str, float] = {}
    previous: tuple[str, str] | None = None
    tick = 0

    def live(what: str, took: float | None) -> None:
        if took is None:
            stats.error("churn", f"{what} not live within {args.bound} s")
        else:
            latency[what] = max(latency.get(what, 0.0), took)
            stats.note(f"{what} checked")

    while time.time() < args.until:
        started = time.monotonic()
        tick += 1
        try:
            token_id = f"churn-{tick}"
            token = run_bin(args.bin, "token", "create", "--id", token_id, "--role", "viewer",
                            "--store", str(store)).strip()
            stats.note("token creates")
            live("token create", wait_for(lambda: secure_status(args.port, token), "200", args.bound))
            if previous is not None:
                run_bin(args.bin, "token", "revoke", previous[0], "--store", str(store))
                stats.note("token revokes")
                old = previous[1]
                live("token revoke", wait_for(lambda: secure_status(args.port, old), "401", args.bound))
            previous = (token_id, token)

            out = run_bin(args.bin, "cert", "self-signed", "--host", "localhost", "--host",
                          "127.0.0.1", "--out", str(work / "certs"))
            stats.note("cert rewrites")
            match = re.search(r"fingerprint:\s*([0-9A-Fa-f:]+)", out)
            if match:
                fingerprint = match.group(1).replace(":", "").lower()
                live("cert", wait_for(lambda: served_fingerprint(args.port), fingerprint, args.bound))
            else:
                stats.error("churn", "no fingerprint in `cert self-signed` output", out[:100])

            text = config.read_text()
            if tick % 2:
                # Flip a harmless value, written the way an editor or a ConfigMap update does.
                flipped = text.replace('max_body_bytes = "10MiB"', 'max_body_bytes = "11MiB"')
                if flipped == text:
                    flipped = text.replace('max_body_bytes = "11MiB"', 'max_body_bytes = "10MiB"')
                before = config_hash(args.admin)
                tmp = config.with_suffix(".toml.tmp")
                tmp.write_text(flipped)
                os.replace(tmp, config)
                stats.note("config edits")
                live("config edit", wait_for(lambda: config_hash(args.admin) != before, True, args.bound))
            else:
                os.utime(config)  # touch: no content change
                stats.note("config touches")
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            stats.error("churn", error_name(exc), str(exc))
        spare = args.interval - (time.monotonic() - started)
        if spare > 0:
            time.sleep(min(spare, max(0.0, args.until - time.time())))
        else:
            stats.note("ticks longer than the interval")
    stats.dump(args.out, {"max_live_seconds": latency, "ticks": tick})


# ---------------------------------------------------------------------------------------------
# sampling


def metrics(admin: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=SOCKET_TIMEOUT) as r:
        text = r.read().decode()
    out: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        try:
            number = float(value)
        except ValueError:
            continue
        if name.startswith("gatehouse_reloads_total"):
            out["reloads_" + ("ok" if 'result="ok"' in name else "error")] += number
        elif name.startswith("gatehouse_requests_total"):
            status = re.search(r'status="(\d+)"', name)
            code = status.group(1) if status else "?"
            out["requests"] += number
            out["status_" + code] += number
            if code not in EXPECTED:
                out["unexpected_status"] += number
        elif name.startswith("gatehouse_upstream_errors_total"):
            out["upstream_errors"] += number
        elif name.startswith("gatehouse_rate_limited_total"):
            out["rate_limited"] += number
        elif name.startswith("gatehouse_auth_failures_total"):
            out["auth_failures"] += number
        elif name == "gatehouse_active_connections":
            out["active_connections"] = number
    return dict(out)


def proc_sample(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return {
        "rss_kb": int(fields["VmRSS"].split()[0]),
        "hwm_kb": int(fields["VmHWM"].split()[0]),
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "cpu_s": (int(stat[11]) + int(stat[12])) / ticks,
    }


def sample_main(args: argparse.Namespace) -> None:
    row: dict = {"label": args.label, "time": time.time()}
    try:
        row.update(proc_sample(args.pid))
    except OSError as exc:
        row["error"] = f"process gone: {exc}"
    try:
        row.update(metrics(args.admin))
    except OSError as exc:
        row["metrics_error"] = str(exc)
    with open(args.out, "a") as out:
        out.write(json.dumps(row) + "\n")


# ---------------------------------------------------------------------------------------------
# report


def load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def h2load_summary(path: Path) -> dict:
    """Parses h2load's summary: requests and status-code lines."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    out: dict[str, int] = {}
    match = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout", text)
    if match:
        for key, value in zip(["total", "started", "done", "succeeded", "failed", "errored",
                               "timeout"], match.groups()):
            out[key] = int(value)
    match = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if match:
        for key, value in zip(["2xx", "3xx", "4xx", "5xx"], match.groups()):
            out[key] = int(value)
    return out


def log_summary(path: Path) -> tuple[Counter[str], Counter[str]]:
    """Counts gatehouse's JSON log lines by level, and its WARN/ERROR messages."""
    levels: Counter[str] = Counter()
    messages: Counter[str] = Counter()
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return levels, messages
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            levels["non-JSON"] += 1
            messages[f"(non-JSON) {line[:160]}"] += 1
            continue
        level = str(event.get("level", "?"))
        levels[level] += 1
        if level in ("WARN", "ERROR"):
            text = str(event.get("message", ""))
            detail = event.get("error") or event.get("reason") or ""
            messages[f"{level} {text} {detail}".strip()[:200]] += 1
    return levels, messages


def mib(kb: float) -> str:
    return f"{kb / 1024:.1f}"


def report_main(args: argparse.Namespace) -> int:
    work = Path(args.dir)
    rows = [json.loads(line) for line in (work / "samples.jsonl").read_text().splitlines() if line]
    failures: list[str] = []

    print()
    print("| sample | t (s) | RSS MiB | HWM MiB | fds | threads | conns | CPU % | reloads ok/err | requests | 5xx+odd | upstream err |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    t0 = rows[0]["time"]
    prev = rows[0]
    for row in rows:
        dt = row["time"] - prev["time"]
        cpu = (row.get("cpu_s", 0) - prev.get("cpu_s", 0)) / dt * 100 if dt > 0 else 0.0
        print(
            f"| {row['label']} | {row['time'] - t0:.0f} | {mib(row.get('rss_kb', 0))} | "
            f"{mib(row.get('hwm_kb', 0))} | {row.get('fds', '?')} | {row.get('threads', '?')} | "
            f"{row.get('active_connections', 0):.0f} | {cpu:.0f} | "
            f"{row.get('reloads_ok', 0):.0f}/{row.get('reloads_error', 0):.0f} | "
            f"{row.get('requests', 0):.0f} | {row.get('unexpected_status', 0):.0f} | "
            f"{row.get('upstream_errors', 0):.0f} |"
        )
        prev = row
        if "error" in row or "metrics_error" in row:
            failures.append(f"sample {row['label']}: {row.get('error') or row.get('metrics_error')}")

    start = rows[0]
    end = next((r for r in rows if r["label"] == "end"), rows[-1])
    idle = next((r for r in rows if r["label"] == "idle"), None)
    statuses = {k[7:]: int(v) for k, v in end.items() if k.startswith("status_")}
    print(f"\ngatehouse answered (requests_total by status): {statuses}")

    # Client side.
    client_errors = 0
    print("\nclient side:")
    for name in ("traffic", "h2curl", "churn"):
        data = load_json(work / f"{name}.json")
        if not data:
            failures.append(f"{name}: no results (driver crashed?)")
            continue
        total = sum(data.get("ok", {}).values())
        errors = sum(data.get("errors", {}).values())
        client_errors += errors
        print(f"  {name}: {total} expected answers, {errors} errors" if total
              else f"  {name}: {errors} errors")
        for key, value in sorted(data.get("ok", {}).items()):
            print(f"    ok    {key}: {value}")
        for key, value in sorted(data.get("info", {}).items()):
            print(f"    info  {key}: {value}")
        for key, value in sorted(data.get("errors", {}).items()):
            print(f"    ERROR {key}: {value}")
        for example in data.get("examples", [])[:8]:
            print(f"      e.g. {example}")
        if "max_live_seconds" in data:
            live = {k: round(v, 3) for k, v in data["max_live_seconds"].items()}
            print(f"    slowest change to go live (s): {live}")
    h2load = h2load_summary(work / "h2load.txt")
    if h2load:
        bad = h2load.get("failed", 0) + h2load.get("errored", 0) + h2load.get("timeout", 0)
        odd = h2load.get("3xx", 0) + h2load.get("4xx", 0) + h2load.get("5xx", 0)
        print(f"  h2load: {h2load}")
        client_errors += bad + odd
        if bad or odd:
            failures.append(f"h2load: {bad} failed/errored/timed out, {odd} non-2xx")
    elif (work / "h2load.txt").exists():
        failures.append("h2load: no summary in its output")

    churn = load_json(work / "churn.json")
    changes = sum(churn.get("info", {}).get(k, 0) for k in
                  ("token creates", "token revokes", "cert rewrites", "config edits"))
    touches = churn.get("info", {}).get("config touches", 0)
    reloads = end.get("reloads_ok", 0) - start.get("reloads_ok", 0)
    reload_errors = end.get("reloads_error", 0) - start.get("reloads_error", 0)
    print(f"\nlive changes: {changes} writes (+{touches} touches of gateway.toml); reloads during "
          f"the run: {reloads:.0f} ok, {reload_errors:.0f} failed")

    levels, messages = log_summary(work / "gatehouse.log")
    print(f"gatehouse log lines by level: {dict(levels)}")
    for message, count in messages.most_common(12):
        print(f"  {count:6d}  {message}")

    # Verdict.
    fd_growth = end.get("fds", 0) - start.get("fds", 0)
    rss_growth = end.get("rss_kb", 0) - start.get("rss_kb", 0)
    if fd_growth > args.fd_bound:
        failures.append(f"fds grew by {fd_growth} (> {args.fd_bound})")
    if rss_growth > args.rss_bound_mib * 1024:
        failures.append(f"RSS grew by {mib(rss_growth)} MiB (> {args.rss_bound_mib} MiB)")
    if client_errors:
        failures.append(f"{client_errors} client-side errors")
    unexpected = end.get("unexpected_status", 0)
    if unexpected:
        failures.append(f"gatehouse answered {unexpected:.0f} requests with a status other than 200/101/401/429")
    if end.get("upstream_errors", 0):
        failures.append(f"{end['upstream_errors']:.0f} upstream errors")
    if reload_errors:
        failures.append(f"{reload_errors:.0f} failed reloads")
    if levels.get("ERROR", 0):
        failures.append(f"{levels['ERROR']} ERROR lines in gatehouse's log")
    if changes and reloads < changes * 0.5:
        failures.append(f"only {reloads:.0f} reloads for {changes} changes")
    # A write can arrive as two events (the cert and its key, a temp file and its rename) that the
    # debounce does not always merge: allow 2 reloads per change; more is reloading without cause.
    if reloads > 2 * (changes + touches) + 5:
        failures.append(f"{reloads:.0f} reloads for {changes + touches} changes: reloads without a cause")
    idle_reloads = 0.0
    if idle is not None:
        idle_reloads = (idle.get("reloads_ok", 0) + idle.get("reloads_error", 0)
                        - end.get("reloads_ok", 0) - end.get("reloads_error", 0))
        if idle_reloads:
            failures.append(f"{idle_reloads:.0f} reloads while idle ({idle['time'] - end['time']:.0f} s, nothing changed)")
    if not args.alive:
        failures.append("gatehouse exited before the end of the run")

    summary = (
        f"RSS {mib(start.get('rss_kb', 0))} -> {mib(end.get('rss_kb', 0))} MiB "
        f"({'+' if rss_growth >= 0 else ''}{mib(rss_growth)}, bound {args.rss_bound_mib}, "
        f"peak HWM {mib(end.get('hwm_kb', 0))}); "
        f"fds {start.get('fds', '?')} -> {end.get('fds', '?')} ({fd_growth:+d}, bound {args.fd_bound}); "
        f"reloads {reloads:.0f} ok/{reload_errors:.0f} failed for {changes} changes, "
        f"{idle_reloads:.0f} while idle; client errors {client_errors}"
    )
    print()
    if failures:
        print(f"VERDICT: FAIL: {summary}")
        for failure in failures:
            print(f"  - {failure}")
        return 1
    print(f"VERDICT: PASS: {summary}")
    return 0


# ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ports")
    p.add_argument("count", type=int)

    p = sub.add_parser("upstream")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--until", type=float, required=True)

    p = sub.add_parser("traffic")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--until", type=float, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--h1-workers", type=int, default=3)
    p.add_argument("--h1-rate", type=float, default=40.0, help="requests/s per worker")
    p.add_argument("--per-conn", type=int, default=500, help="requests per keep-alive connection")
    p.add_argument("--ws-workers", type=int, default=1)
    p.add_argument("--ws-rate", type=float, default=4.0, help="handshakes/s per worker")

    p = sub.add_parser("h2curl")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--header-file", required=True)
    p.add_argument("--until", type=float, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--rate", type=float, default=2.0, help="curl runs/s")
    p.add_argument("--repeat", type=int, default=3, help="rounds of the 4 requests per curl run")

    p = sub.add_parser("churn")
    p.add_argument("--bin", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--admin", type=int, required=True)
    p.add_argument("--until", type=float, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--interval", type=float, default=2.0)
    p.add_argument("--bound", type=float, default=1.0, help="seconds a change may take to go live")

    p = sub.add_parser("sample")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--admin", type=int, required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--out", required=True)

    p = sub.add_parser("report")
    p.add_argument("--dir", required=True)
    p.add_argument("--fd-bound", type=int, required=True)
    p.add_argument("--rss-bound-mib", type=int, required=True)
    p.add_argument("--alive", type=int, default=1)

    args = parser.parse_args()
    if args.command == "ports":
        print(" ".join(map(str, free_ports(args.count))))
    elif args.command == "upstream":
        asyncio.run(upstream_main(args.port, args.until))
    elif args.command == "traffic":
        traffic_main(args)
    elif args.command == "h2curl":
        h2curl_main(args)
    elif args.command == "churn":
        churn_main(args)
    elif args.command == "sample":
        sample_main(args)
    elif args.command == "report":
        return report_main(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
