#!/usr/bin/python3
"""The headline numbers of bench result files as one Markdown table, a row per run (oldest
first): HTTP requests/s of the tunnel over the nginx hop at each connection count, TLS single
stream over ssh -R both ways, idle RSS of core and agent, and the core's KiB per idle agent
session. bench/results/SUMMARY.md keeps the rows of runs no longer in the tree.

    python3 bench/summarize.py bench/results/*.json
"""
import json
import sys
from pathlib import Path

# A run without these scenarios was a partial one (--only); the suite grew scenarios over time,
# so a run with them all is "all" of its day.
MAIN_SCENARIOS = ("memory", "http_612", "agents")
HEADER = ("| run | mode | commit | load at start | scenarios | HTTP vs nginx c=32 "
          "| HTTP vs nginx c=256 | TLS 1 stream vs ssh -R (up / down) | idle RSS core / agent "
          "| KiB per idle session (1,000 / 10,000) |")


def ratio(a, b):
    return "%.2fx" % (a / b) if a is not None and b else "-"


def http_ratio(sc, conns):
    http = sc.get("http_612", {})
    t, n = http.get("tunnel", {}).get(conns), http.get("nginx", {}).get(conns)
    return ratio(t and t.get("rps"), n and n.get("rps"))


def tls_vs_ssh(sc):
    tcp = sc.get("tcp", {})

    def gbit(path, key):
        v = tcp.get(path, {}).get(key, {})
        return None if v.get("error") else v.get("gbit_s")
    cells = [ratio(gbit("tunnel", k), gbit("ssh", k)) for k in ("up_1", "down_1")]
    return "-" if cells == ["-", "-"] else " / ".join(cells)


def idle_rss(sc):
    mem = sc.get("memory", {})
    core, agent = mem.get("core_idle_kib"), mem.get("agent_idle_kib")
    if core is None and agent is None:
        return "-"
    return "%s / %s MiB" % tuple("-" if v is None else "%.1f" % (v / 1024) for v in (core, agent))


def per_session(sc):
    ag = sc.get("agents", {})
    if "kib_per_session" in ag:  # the first runs' format: one level, on the paths' core
        return "%.1f (N=%d)" % (ag["kib_per_session"], ag["agents"])
    levels = {lv["agents"]: lv["kib_per_session"] for lv in ag.get("levels", [])}
    small = next((v for n, v in sorted(levels.items()) if n < 10000), None)
    big = next((v for n, v in sorted(levels.items()) if n >= 10000), None)
    if small is None and big is None:
        return "-"
    return " / ".join("-" if v is None else "%.1f" % v for v in (small, big))


def scenarios_run(sc):
    if all(sc.get(s) for s in MAIN_SCENARIOS):
        return "all"
    return "only " + (", ".join(k for k in sc if not k.startswith("cpu")) or "none")


def row(name, res):
    sc = res.get("scenarios", {})
    load = res.get("machine", {}).get("loadavg_at_start") or [None]
    return "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        name, res.get("mode", "-"), res.get("git") or "-",
        "-" if load[0] is None else "%.2f" % load[0], scenarios_run(sc),
        http_ratio(sc, "32"), http_ratio(sc, "256"), tls_vs_ssh(sc), idle_rss(sc),
        per_session(sc))


def table(files):
    lines = [HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
    for f in sorted(files, key=lambda p: Path(p).name):
        try:
            res = json.loads(Path(f).read_text())
        except (OSError, ValueError) as e:
            sys.exit("summarize: %s: %s" % (f, e))
        lines.append(row(Path(f).stem, res))
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    print(table(sys.argv[1:]))
