"""Prints the markdown table of search_peers.py results (medians over the repeats).

usage: table.py RESULT.json...
"""

import json
import sys


def fmt(v, digits=3):
    if v is None or v != v:
        return "–"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.{digits}f}"


rows = []
for path in sys.argv[1:]:
    rows.extend(json.load(open(path)))
print("| engine | setting | build s | p50 ms | p99 ms | QPS, 2 workers (how) | recall@10 |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    if "error" in r:
        print(f"| {r['engine']} | failed: {r['error']} | | | | | |")
        continue
    print(
        f"| {r['engine']} | {r['config']} | {fmt(r.get('build_s'), 1)} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | "
        f"{fmt(r['qps_2t'])} ({r['qps_note']}) | {r['recall10']:.4f} |"
    )
