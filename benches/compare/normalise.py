#!/usr/bin/env python3
"""Ratios of a shared-harness run with the machine's state taken out.

    python3 benches/compare/normalise.py ../shared/bench/runs/RUN.json

For every round and for h1 and h2: each candidate's proxy CPU per request divided by NGINX c's
(the harness's own ratio), and the same with each proxy's figure first divided by the upstream's
CPU per request in the same measurement. The upstream is the same binary doing the same work
whichever proxy is in front, so its cost says how fast the machine ran during that measurement
(BENCHMARKS.md, "The machine's two speeds"). Scenario d is left out: its upstream also answers
the auth subrequests, so its cost is not the same yardstick.
"""
import json
import statistics
import sys


def main(path):
    with open(path) as f:
        run = json.load(f)
    rows = {}
    for r in run["results"]:
        if r["test"] in ("h1", "h2") and r.get("proxy_us_per_req") and r.get("upstream_us_per_req"):
            rows[(r["round"], r["scenario"], r["test"])] = (r["proxy_us_per_req"], r["upstream_us_per_req"])
    candidates = sorted({scenario for _, scenario, _ in rows} - {"a", "b", "c", "d", "e"})
    rounds = sorted({rnd for rnd, _, _ in rows})
    for test in ("h1", "h2"):
        for cand in candidates:
            plain, scaled = [], []
            for rnd in rounds:
                nginx, mine = rows.get((rnd, "c", test)), rows.get((rnd, cand, test))
                if nginx and mine:
                    plain.append(mine[0] / nginx[0])
                    scaled.append((mine[0] / mine[1]) / (nginx[0] / nginx[1]))
            if plain:
                fmt = lambda values: ", ".join(f"{v:.2f}" for v in values)
                print(f"{test} {cand} ÷ c: {statistics.median(plain):.2f}× ({fmt(plain)}); "
                      f"per upstream CPU {statistics.median(scaled):.2f}× ({fmt(scaled)})")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
