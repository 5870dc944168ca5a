#!/usr/bin/env python3
"""Draws deploy/grafana/gatehouse.json as an SVG picture for the README (Python stdlib only).

The layout, titles and panel kinds come from the dashboard itself. With --samples, each panel
also shows data: the few PromQL shapes the dashboard uses (selectors, rate/increase, sum/min/max/
count by, histogram_quantile, arithmetic with scalars and time()) are evaluated over scrapes of a
real gateway's /metrics, taken with the `capture` command:

    gatehouse run -c gateway.toml &               # plus some traffic against it
    python3 deploy/grafana/render.py capture --admin 127.0.0.1:9901 --count 40 --interval 3 \\
        --out /tmp/scrapes.txt
    python3 deploy/grafana/render.py draw --samples /tmp/scrapes.txt --out deploy/grafana/gatehouse.svg

Without --samples the panels are drawn empty. Template variables ($job, $instance) match
anything; $__rate_interval and friends mean "between two scrapes".
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
import urllib.request
from pathlib import Path
from xml.sax.saxutils import escape

HERE = Path(__file__).resolve().parent
COLORS = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#fade2a"]
COL_W, ROW_H, PAD = 50, 28, 6

# ---------------------------------------------------------------- scrapes


def capture(admin: str, count: int, interval: float, out: Path) -> None:
    """Appends `count` scrapes of http://ADMIN/metrics to OUT, each headed `### <unix time>`."""
    with out.open("w") as f:
        for i in range(count):
            if i:
                time.sleep(interval)
            text = urllib.request.urlopen(f"http://{admin}/metrics", timeout=5).read().decode()
            f.write(f"### {time.time():.3f}\n{text}")


def parse_samples(path: Path) -> list[tuple[float, dict]]:
    """[(time, {(name, labels): value})] from a capture file."""
    scrapes, current = [], None
    line_re = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in path.read_text().splitlines():
        if line.startswith("### "):
            current = {}
            scrapes.append((float(line[4:]), current))
        elif line and not line.startswith("#") and current is not None:
            m = line_re.match(line)
            if m:
                labels = frozenset(label_re.findall(m.group(2) or ""))
                current[(m.group(1), labels)] = float(m.group(3).replace("+Inf", "inf"))
    return scrapes


# ---------------------------------------------------------------- a tiny PromQL subset
# A vector is {frozenset(labels): [value or None per scrape]}; a scalar is a list of floats.


class Evaluator:
    def __init__(self, scrapes):
        self.scrapes = scrapes
        self.times = [t for t, _ in scrapes]

    def eval(self, expr: str):
        expr = strip_parens(expr.strip())
        for op in (" / ", " - ", " * ", " + "):
            parts = split_top(expr, op)
            if len(parts) > 1:
                left = self.eval(op.join(parts[:-1]))
                return binary(left, self.eval(parts[-1]), op.strip())
        if re.fullmatch(r"-?[0-9.]+", expr):
            return [float(expr)] * len(self.times)
        if expr == "time()":
            return list(self.times)
        m = call(r"(sum|min|max|count)(?: by \(([^)]*)\))? ?\(", expr)
        if m:
            by = [g.strip() for g in (m.group(2) or "").split(",") if g.strip()]
            return aggregate(m.group(1), by, self.eval(expr[m.end():-1]))
        m = call(r"histogram_quantile\(([0-9.]+), ", expr)
        if m:
            return quantile(float(m.group(1)), self.eval(expr[m.end():-1]))
        m = call(r"(rate|increase)\(", expr)
        if m:
            inner = re.fullmatch(r"(.*)\[[^\]]+\]", expr[m.end():-1], re.S)
            if not inner:
                raise ValueError(f"unsupported expression: {expr}")
            return self.delta(self.select(inner.group(1)), m.group(1) == "rate")
        return self.select(expr)

    def select(self, selector: str):
        m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?", selector.strip(), re.S)
        if not m:
            raise ValueError(f"unsupported expression: {selector}")
        name, matchers = m.group(1), parse_matchers(m.group(2) or "")
        out = {}
        for i, (_, samples) in enumerate(self.scrapes):
            for (sname, labels), value in samples.items():
                if sname == name and all(match(dict(labels), *mm) for mm in matchers):
                    out.setdefault(labels, [None] * len(self.times))[i] = value
        return out

    def delta(self, vector, per_second: bool):
        out = {}
        for labels, values in vector.items():
            series = [None]
            for i in range(1, len(values)):
                a, b = values[i - 1], values[i]
                if a is None or b is None:
                    series.append(None)
                    continue
                d = b - a if b >= a else b  # a counter reset starts from zero
                series.append(d / (self.times[i] - self.times[i - 1]) if per_second else d)
            out[labels] = series
        return out


def call(prefix: str, expr: str):
    """Matches `prefix` (ending in an opening parenthesis) whose parenthesis closes at the end."""
    m = re.match(prefix, expr)
    if m and closing(expr, m.end() - 1 if expr[m.end() - 1] == "(" else expr.index("(")) == len(expr) - 1:
        return m
    return None


def strip_parens(expr: str) -> str:
    while expr.startswith("(") and expr.endswith(")") and closing(expr, 0) == len(expr) - 1:
        expr = expr[1:-1].strip()
    return expr


def closing(expr: str, start: int) -> int:
    depth = 0
    for i in range(start, len(expr)):
        depth += {"(": 1, ")": -1}.get(expr[i], 0)
        if depth == 0:
            return i
    return -1


def split_top(expr: str, op: str) -> list[str]:
    """Splits on `op` outside parentheses, braces, brackets and quotes."""
    parts, depth, quote, last, i = [], 0, False, 0, 0
    while i < len(expr):
        c = expr[i]
        if c == '"':
            quote = not quote
        elif not quote and c in "({[":
            depth += 1
        elif not quote and c in ")}]":
            depth -= 1
        elif not quote and depth == 0 and expr.startswith(op, i):
            parts.append(expr[last:i])
            last = i + len(op)
            i = last
            continue
        i += 1
    parts.append(expr[last:])
    return [p.strip() for p in parts]


def parse_matchers(text: str):
    return [(k, op, v) for k, op, v in re.findall(r'([a-zA-Z_]+)\s*(=~|!=|=)\s*"([^"]*)"', text)]


def match(labels: dict, key: str, op: str, value: str) -> bool:
    if "$" in value:  # a template variable: all
        return True
    actual = labels.get(key, "")
    if op == "=":
        return actual == value
    if op == "!=":
        return actual != value
    return re.fullmatch(value, actual) is not None


def aggregate(kind: str, by: list[str], vector):
    groups = {}
    for labels, values in vector.items():
        key = frozenset((k, v) for k, v in labels if k in by)
        groups.setdefault(key, []).append(values)
    out = {}
    for key, members in groups.items():
        series = []
        for column in zip(*members):
            present = [v for v in column if v is not None and not math.isnan(v)]
            if not present:
                series.append(None)
            elif kind == "count":
                series.append(float(len(present)))
            else:
                series.append({"sum": sum, "min": min, "max": max}[kind](present))
        out[key] = series
    return out


def quantile(q: float, buckets):
    """histogram_quantile over a vector whose series carry `le`."""
    groups = {}
    for labels, values in buckets.items():
        le = dict(labels).get("le")
        rest = frozenset((k, v) for k, v in labels if k != "le")
        groups.setdefault(rest, []).append((float(le.replace("+Inf", "inf")), values))
    out = {}
    for key, bs in groups.items():
        bs.sort()
        series = []
        for i in range(len(bs[0][1])):
            counts = [(le, vals[i]) for le, vals in bs]
            if any(c is None for _, c in counts) or counts[-1][1] <= 0:
                series.append(None)
                continue
            rank, prev_le, prev_c = q * counts[-1][1], 0.0, 0.0
            value = None
            for le, c in counts:
                if c >= rank:
                    if math.isinf(le):
                        value = prev_le
                    else:
                        value = prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1e-12)
                    break
                prev_le, prev_c = le, c
            series.append(value)
        out[key] = series
    return out


def binary(left, right, op: str):
    fn = {"/": lambda a, b: a / b if b else None, "-": lambda a, b: a - b,
          "*": lambda a, b: a * b, "+": lambda a, b: a + b}[op]

    def combine(a, b):
        return [None if x is None or y is None else fn(x, y) for x, y in zip(a, b)]

    if isinstance(left, list) and isinstance(right, list):
        return combine(left, right)
    if isinstance(right, list):
        return {k: combine(v, right) for k, v in left.items()}
    if isinstance(left, list):
        return {k: combine(left, v) for k, v in right.items()}
    if len(left) == 1 and len(right) == 1:  # one series each: match regardless of labels
        (lk, lv), (_, rv) = next(iter(left.items())), next(iter(right.items()))
        return {lk: combine(lv, rv)}
    return {k: combine(v, right[k]) for k, v in left.items() if k in right}


# ---------------------------------------------------------------- drawing


def legend(fmt: str, labels) -> str:
    labels = dict(labels)
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt or "").strip()


def fmt_value(v, unit: str) -> str:
    if v is None:
        return "–"
    if unit == "s":
        return f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s"
    if unit == "percentunit":
        return f"{v * 100:.1f}%"
    if unit == "reqps":
        return f"{v:.1f} req/s"
    if unit == "d":
        return f"{v:.0f} days"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.1f}M"
    return f"{v:.3g}" if v != int(v) else f"{int(v)}"


def panel_series(panel, evaluator):
    series = []
    if evaluator is None:
        return series
    for target in panel.get("targets", []):
        try:
            result = evaluator.eval(target["expr"])
        except (ValueError, KeyError, ZeroDivisionError):
            continue
        if isinstance(result, list):
            result = {frozenset(): result}
        for labels, values in sorted(result.items(), key=lambda kv: sorted(kv[0])):
            name = legend(target.get("legendFormat", ""), labels) or panel["title"]
            series.append((name, values))
    return series


def last(values):
    present = [v for v in values if v is not None]
    return present[-1] if present else None


def draw_panel(out, panel, x, y, w, h, evaluator):
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
    out.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="3" fill="#181b1f" stroke="#2c3235"/>')
    out.append(f'<text x="{x + 8}" y="{y + 17}" class="title">{escape(panel["title"])}</text>')
    series = panel_series(panel, evaluator)
    top, bottom = y + 26, y + h - 8
    if panel["type"] == "stat":
        value = last(series[0][1]) if series else None
        if panel["title"] == "Version" and series:
            text = ", ".join(name for name, _ in series)
        else:
            text = fmt_value(value, unit)
        out.append(f'<text x="{x + w / 2}" y="{(top + bottom) / 2 + 9}" class="stat">{escape(text)}</text>')
        return
    if panel["type"] == "bargauge":
        rows = [(n, last(v)) for n, v in series][:6]
        bar_h = min(22, (bottom - top) / max(len(rows), 1) - 4)
        peak = max([v for _, v in rows if v] + [1])
        for i, (name, value) in enumerate(rows):
            by = top + i * (bar_h + 4)
            bw = (w * 0.62 - 90) * (value or 0) / peak
            color = "#73bf69" if (value or 0) >= 21 else "#ff780a" if (value or 0) >= 7 else "#f2495c"
            out.append(f'<text x="{x + 8}" y="{by + bar_h * 0.7}" class="small">{escape(name)}</text>')
            out.append(f'<rect x="{x + w * 0.38}" y="{by}" width="{max(bw, 2):.1f}" height="{bar_h}" fill="{color}"/>')
            out.append(f'<text x="{x + w - 8}" y="{by + bar_h * 0.7}" class="small" text-anchor="end">{fmt_value(value, unit)}</text>')
        return
    # time series: one polyline per series (at most six), legend underneath
    series = [(n, v) for n, v in series if any(p is not None for p in v)][:6]
    plot_bottom = bottom - 14 * math.ceil(len(series) / 3) if series else bottom
    out.append(f'<line x1="{x + 8}" y1="{plot_bottom}" x2="{x + w - 8}" y2="{plot_bottom}" stroke="#2c3235"/>')
    values = [p for _, v in series for p in v if p is not None]
    if not values:
        out.append(f'<text x="{x + w / 2}" y="{(top + plot_bottom) / 2}" class="small" text-anchor="middle">no data</text>')
        return
    lo, hi = min(0.0, min(values)), max(values) or 1.0
    out.append(f'<text x="{x + w - 8}" y="{top + 8}" class="small" text-anchor="end">{fmt_value(hi, unit)}</text>')
    for i, (name, vals) in enumerate(series):
        n = len(vals)
        pts = [f"{x + 8 + (w - 16) * j / max(n - 1, 1):.1f},{plot_bottom - (plot_bottom - top - 10) * (v - lo) / (hi - lo or 1):.1f}"
               for j, v in enumerate(vals) if v is not None]
        color = COLORS[i % len(COLORS)]
        out.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        lx = x + 8 + (i % 3) * (w - 16) / 3
        ly = plot_bottom + 12 + 14 * (i // 3)
        out.append(f'<rect x="{lx}" y="{ly - 7}" width="8" height="3" fill="{color}"/>')
        out.append(f'<text x="{lx + 11}" y="{ly - 2}" class="small">{escape(name[:28])}</text>')


def draw(dashboard: dict, evaluator) -> str:
    panels = dashboard["panels"]
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels) * ROW_H + 40
    width = 24 * COL_W
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
           "<style>text{font-family:Inter,Helvetica,Arial,sans-serif;fill:#ccccdc}"
           ".title{font-size:12px;font-weight:600}.small{font-size:10px;fill:#9fa7b3}"
           ".stat{font-size:24px;font-weight:600;text-anchor:middle;fill:#73bf69}"
           ".row{font-size:14px;font-weight:600}.head{font-size:16px;font-weight:700}</style>",
           f'<rect width="{width}" height="{height}" fill="#111217"/>',
           f'<text x="{PAD}" y="24" class="head">{escape(dashboard["title"])} — Grafana dashboard (deploy/grafana/gatehouse.json)</text>']
    for panel in panels:
        g = panel["gridPos"]
        x, y = g["x"] * COL_W + PAD, g["y"] * ROW_H + 36
        w, h = g["w"] * COL_W - 2 * PAD, g["h"] * ROW_H - PAD
        if panel["type"] == "row":
            out.append(f'<text x="{x}" y="{y + 18}" class="row">▾ {escape(panel["title"])}</text>')
        else:
            draw_panel(out, panel, x, y, w, h, evaluator)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    cap = sub.add_parser("capture", help="scrape a running gateway's /metrics repeatedly")
    cap.add_argument("--admin", default="127.0.0.1:9901")
    cap.add_argument("--count", type=int, default=40)
    cap.add_argument("--interval", type=float, default=3.0)
    cap.add_argument("--out", type=Path, required=True)
    drw = sub.add_parser("draw", help="write the SVG")
    drw.add_argument("--dashboard", type=Path, default=HERE / "gatehouse.json")
    drw.add_argument("--samples", type=Path, help="a capture file (optional)")
    drw.add_argument("--out", type=Path, default=HERE / "gatehouse.svg")
    args = parser.parse_args()
    if args.command == "capture":
        capture(args.admin, args.count, args.interval, args.out)
        return
    evaluator = Evaluator(parse_samples(args.samples)) if args.samples else None
    args.out.write_text(draw(json.loads(args.dashboard.read_text()), evaluator))


if __name__ == "__main__":
    main()
