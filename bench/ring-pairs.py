#!/usr/bin/env python3
"""Paired ratios NEW/OLD from bench/ring-pairs.sh's JSON files (see that script)."""
import json
import statistics
import sys

out, pairs = sys.argv[1], int(sys.argv[2])
FAST = 250.0  # ns: a cache-line probe below this is the VM's fast mode, above it the slow one


def rows(path):
    d = json.load(open(path))
    return d["floor"], {(r["mechanism"], r["wait"], r["size"]): r for r in d["rows"] if r["impl"] == "ipckit"}


def probe(r, floor):
    """The row's own cache-line probe; a blocking row has none, so the run's floor probe."""
    p = r.get("cacheline_p50_ns")
    return p if p is not None else floor["cacheline_rtt_ns"]["p50"]


def mode(r, floor):
    return probe(r, floor) < FAST


ratios, dropped, lines = {}, {}, []
for i in range(1, pairs + 1):
    (fo, o), (fn, n) = rows(f"{out}/{i}-old.json"), rows(f"{out}/{i}-new.json")
    for key in sorted(set(o) & set(n)):
        a, b = o[key], n[key]
        pa, pb = probe(a, fo), probe(b, fn)
        if mode(a, fo) != mode(b, fn):
            dropped[key] = dropped.get(key, 0) + 1
            lines.append(f"pair {i} {key}: probes {pa} / {pb} ns: dropped")
            continue
        if key[1] != "spin":
            # A blocking row is bound by the wake-up, not the cache line: compared raw.
            pa = pb = 1.0
        r = ratios.setdefault(key, {"rtt": [], "mbps": [], "rtt_raw": [], "rtt_mean": [], "mbps_raw": [], "cpu": [], "raw": []})
        if a["rtt_ns"] and b["rtt_ns"]:
            r["rtt"].append((b["rtt_ns"]["p50"] / pb) / (a["rtt_ns"]["p50"] / pa))
            r["rtt_raw"].append(b["rtt_ns"]["p50"] / a["rtt_ns"]["p50"])
        # The batched mean round trip has no histogram steps: it resolves a few percent
        # where p50 moves by 10 ns at a time.
        if a.get("rtt_batched_ns") and b.get("rtt_batched_ns"):
            r["rtt_mean"].append(b["rtt_batched_ns"] / a["rtt_batched_ns"])
        if a.get("throughput_mbps") and b.get("throughput_mbps"):
            r["mbps"].append((b["throughput_mbps"] * pb) / (a["throughput_mbps"] * pa))
            r["mbps_raw"].append(b["throughput_mbps"] / a["throughput_mbps"])
        if a.get("cpu_ns_per_msg") and b.get("cpu_ns_per_msg"):
            r["cpu"].append(b["cpu_ns_per_msg"] / a["cpu_ns_per_msg"])
        r["raw"].append(
            f"pair {i}: probe {pa:.0f}/{pb:.0f} ns, RTT p50 {a['rtt_ns']['p50'] if a['rtt_ns'] else '-'}"
            f"/{b['rtt_ns']['p50'] if b['rtt_ns'] else '-'} ns, MB/s {a.get('throughput_mbps') or 0:.0f}"
            f"/{b.get('throughput_mbps') or 0:.0f}, CPU/msg {a.get('cpu_ns_per_msg') or 0:.0f}/{b.get('cpu_ns_per_msg') or 0:.0f} ns"
        )

print("row (mechanism, wait, size): median of paired NEW/OLD ratios (min-max) [pairs kept, dropped];")
print("spin rows scaled by their own cache-line probe (p50, 10 ns steps: about 10% at 90 ns) and raw")
print("(the probe then only sorts pairs by machine mode); blocking rows raw in both")
for key in sorted(ratios):
    r = ratios[key]
    med = lambda v: f"{statistics.median(v):.3f} ({min(v):.2f}-{max(v):.2f})" if v else "-"
    print(f"{key}: RTT p50/probe {med(r['rtt'])}, raw {med(r['rtt_raw'])}, batched mean {med(r['rtt_mean'])};"
          f" MB/s*probe {med(r['mbps'])},"
          f" raw {med(r['mbps_raw'])}; CPU/msg {med(r['cpu'])} [{len(r['raw'])} kept, {dropped.get(key, 0)} dropped]")
print()
for key in sorted(ratios):
    print(key)
    for l in ratios[key]["raw"]:
        print("  " + l)
for l in lines:
    print(l)
