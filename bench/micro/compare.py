#!/usr/bin/env python3
"""Compares the counts of one tunnel_micro_counts run with bench/baselines.json.

Called by scripts/perf-regress.sh, which runs the binary under callgrind first. Inputs: the JSON
the binary printed (iterations and heap counts per region, idle-session bytes) and the callgrind
dumps of that run (one per region, named by its client request). Prints a table and exits 1 when
a checked metric is worse than its limit; with --update rewrites the baselines instead.
"""

import argparse
import glob
import json
import os
import re
import sys

# Tolerances given to metrics that are new in the baselines file (existing ones keep theirs).
DEFAULT_TOLERANCE = {
    "instructions": {"tolerance_pct": 3.0},
    "allocations": {"tolerance_abs": 0.0},
    "bytes": {"tolerance_pct": 5.0},
}

FRAME_REGIONS = ["frame_encode_v1", "frame_decode_v1", "frame_encode_v2", "frame_decode_v2"]
REQUEST_REGIONS = ["http_get", "http_post_1k", "http_get_limits", "http_get_quota",
                   "http_get_quota_set"]
DIRECT_REGIONS = ["http_get_direct", "http_post_1k_direct"]


def read_callgrind_totals(directory):
    """{region name: instructions} from callgrind.out.<n> dumps made by CALLGRIND_DUMP_STATS_AT."""
    totals = {}
    for path in glob.glob(os.path.join(directory, "callgrind.out.*")):
        name = None
        total = None
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = re.match(r"desc: Trigger: Client Request: (\S+)", line)
                if m:
                    name = m.group(1)
                elif line.startswith("totals:"):
                    total = int(line.split()[1])
                elif line.startswith("summary:") and total is None:
                    total = int(line.split()[1])
        if name is not None and total is not None:
            totals[name] = total
    return totals


def collect(counts, totals):
    """The metrics of this run: {name: (value, kind, unit, checked)}."""
    regions = {r["name"]: r for r in counts["regions"]}
    metrics = {}

    def per_iteration(name):
        r = regions[name]
        if name not in totals:
            raise SystemExit(f"compare: no callgrind dump for region {name} (not run under callgrind?)")
        return totals[name] / r["iterations"], r["allocations"] / r["iterations"]

    for name in FRAME_REGIONS:
        instructions, _ = per_iteration(name)
        metrics[f"{name}.instructions"] = (round(instructions, 2), "instructions", "per frame", True)
    metrics["frame_codec.allocations"] = (
        sum(regions[n]["allocations"] for n in FRAME_REGIONS), "allocations", "in all frame regions", True)
    for name in REQUEST_REGIONS:
        instructions, allocations = per_iteration(name)
        metrics[f"{name}.instructions"] = (round(instructions, 1), "instructions", "per request", True)
        metrics[f"{name}.allocations"] = (round(allocations, 3), "allocations", "per request", True)
    for name in DIRECT_REGIONS:
        instructions, _ = per_iteration(name)
        metrics[f"{name}.instructions"] = (round(instructions, 1), "instructions",
                                           "per request, client+app stubs only", False)
    idle = counts["idle_sessions"]
    metrics["idle_session.core_bytes"] = (round(idle["core_bytes"], 1), "bytes", "per session", True)
    metrics["idle_session.agent_bytes"] = (round(idle["agent_bytes"], 1), "bytes", "per session", True)
    return metrics


def limit_of(base):
    value = base["value"]
    if "tolerance_abs" in base:
        return value + base["tolerance_abs"], value - base["tolerance_abs"], f"+{base['tolerance_abs']:g}"
    pct = base.get("tolerance_pct", 0.0)
    return value * (1 + pct / 100), value * (1 - pct / 100), f"+{pct:g}%"


def fmt(value):
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    return f"{value:,.0f}"


def change(now, base):
    if base == 0:
        return "+0" if now == 0 else f"+{fmt(now)}"
    return f"{(now - base) / base * 100:+.2f}%"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baselines", required=True)
    parser.add_argument("--counts", required=True, help="JSON printed by tunnel_micro_counts")
    parser.add_argument("--callgrind-dir", required=True)
    parser.add_argument("--toolchain", default="", help="recorded with --update, compared otherwise")
    parser.add_argument("--commit", default="")
    parser.add_argument("--update", action="store_true")
    args = parser.parse_args()

    with open(args.counts, encoding="utf-8") as f:
        counts = json.load(f)
    if not counts.get("under_valgrind"):
        raise SystemExit("compare: the counts were not taken under valgrind")
    if not counts.get("heap_hook"):
        raise SystemExit("compare: the allocation hook was not active (sanitizer build?)")
    metrics = collect(counts, read_callgrind_totals(args.callgrind_dir))

    baselines = {"metrics": {}}
    if os.path.exists(args.baselines):
        with open(args.baselines, encoding="utf-8") as f:
            baselines = json.load(f)
    old = baselines.get("metrics", {})

    if args.update:
        new = {}
        for name, (value, kind, unit, checked) in metrics.items():
            entry = {"value": value, "unit": f"{kind} {unit}"}
            tolerance = {k: v for k, v in old.get(name, {}).items()
                         if k in ("tolerance_pct", "tolerance_abs")}
            entry.update(tolerance or DEFAULT_TOLERANCE[kind])
            if not checked:
                entry["checked"] = False
            new[name] = entry
        out = {
            "about": "Deterministic counts of bench/micro (tunnel_micro_counts under callgrind). "
                     "Written by scripts/perf-regress.sh --update; see docs/performance.md, "
                     "'Regression checks', before changing.",
            "toolchain": args.toolchain,
            "commit": args.commit,
            "metrics": new,
        }
        with open(args.baselines, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)
            f.write("\n")
        for name, entry in new.items():
            before = old.get(name, {}).get("value")
            was = "new" if before is None else f"was {fmt(before)}"
            print(f"  {name:<32} {fmt(entry['value']):>14}  ({was})")
        print(f"perf-regress: wrote {args.baselines}")
        return 0

    if baselines.get("toolchain") and args.toolchain and baselines["toolchain"] != args.toolchain:
        print("perf-regress: warning: the baselines were measured with\n"
              f"  {baselines['toolchain']}\nthis build uses\n  {args.toolchain}\n"
              "differences may come from the toolchain, not the code")

    rows = []
    failures = []
    better = []
    for name, (value, kind, unit, checked) in metrics.items():
        base = old.get(name)
        if base is None:
            rows.append((name, "-", fmt(value), "-", "-", "new (not in baselines)"))
            continue
        upper, lower, limit = limit_of(base)
        if not checked or base.get("checked") is False:
            rows.append((name, fmt(base["value"]), fmt(value), change(value, base["value"]), "-", "info"))
            continue
        if value > upper + 1e-9:
            status = "FAIL"
            failures.append(f"{name}: {fmt(base['value'])} -> {fmt(value)} "
                            f"({change(value, base['value'])}, limit {limit}, {kind} {unit})")
        elif value < lower - 1e-9:
            status = "better: update?"
            better.append(name)
        else:
            status = "ok"
        rows.append((name, fmt(base["value"]), fmt(value), change(value, base["value"]), limit, status))
    for name in old:
        if name not in metrics:
            rows.append((name, fmt(old[name]["value"]), "-", "-", "-", "FAIL: not measured"))
            failures.append(f"{name}: no longer measured")

    header = ("metric", "baseline", "now", "change", "limit", "status")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    for i, row in enumerate([header] + rows):
        cells = [str(c).ljust(widths[j]) if j in (0, 5) else str(c).rjust(widths[j])
                 for j, c in enumerate(row)]
        print("  ".join(cells).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))

    if better:
        print(f"\nperf-regress: {len(better)} metric(s) better than their baseline by more than the "
              f"tolerance: {', '.join(better)}.\nIf the change is intended, record it: "
              "scripts/perf-regress.sh --update, and commit bench/baselines.json with it.")
    if failures:
        print("\nperf-regress: FAILED, worse than the baseline allows:")
        for f in failures:
            print(f"  {f}")
        return 1
    print("\nperf-regress: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
