#!/usr/bin/python3
"""The benchmark suite (issue #4): starts every process it needs on 127.0.0.1, runs each
scenario against several paths in the same run, and writes bench/results/<date>.json and
.md. Standard library only; the tools it drives (nginx, wrk, sshd/ssh, curl, iperf3, perf)
come from scripts/install-deps.sh, and our own load tools (bench/tools: openloop,
agentflood) from `make build` (build/release/bench/tools, or --tools-dir).

Paths:   direct (client -> origin), nginx (one reverse-proxy hop), ssh -R (OpenSSH remote
         forwarding), tunnel (core + agent, TLS between them), tunnel-plain (core + agent
         over plain TCP: used when `tunnel-core --help` shows --agent-plain-addr, reported as
         not available otherwise).
Origin:  its own nginx instance serving a fixed 612-byte body, a sparse file for downloads
         and WebDAV PUT into /dev/shm for uploads; an iperf3 server for the TCP scenario.

    python3 bench/run.py --quick          # < 3 minutes
    python3 bench/run.py                  # full
    python3 bench/run.py --profile        # also perf-record core and agent (256 conns)
See docs/performance.md for what each number means. The suite itself is the package
bench/suite/ (processes and paths in rig.py, load drivers in drivers.py, the scenarios in
scenarios/, targets.py and report.py for the verdicts and the Markdown); this file is its
command line.
"""
import argparse
import json
import os
import resource
import shutil
import signal
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the suite package beside this file
from suite import runner  # noqa: E402
from suite.common import PATHS, REPO, log  # noqa: E402
from suite.report import markdown  # noqa: E402
from suite.rig import Rig  # noqa: E402
from suite.scenarios import STEPS  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description="tunnel benchmark suite (issue #4)")
    ap.add_argument("--quick", action="store_true", help="short runs, < 3 minutes")
    ap.add_argument("--bin-dir", default=os.environ.get("TUNNEL_BIN_DIR",
                                                        str(REPO / "build/release/apps")),
                    help="where tunnel-core and tunnel-agent are (copied before use)")
    ap.add_argument("--tools-dir", default=os.environ.get("TUNNEL_BENCH_TOOLS_DIR"),
                    help="where openloop and agentflood are (default: build/release/bench/tools "
                         "from `make build`, else build/benchtools/bench/tools, which the suite "
                         "builds itself when neither has them)")
    ap.add_argument("--no-build-tools", action="store_true",
                    help="do not build bench/tools when they are missing (skip their scenarios)")
    ap.add_argument("--out-dir", type=Path, default=HERE / "results")
    ap.add_argument("--paths", default="direct,nginx,ssh,tunnel,tunnel-plain",
                    help="comma-separated subset of %s" % ",".join(PATHS))
    ap.add_argument("--only", default="",
                    help="comma-separated scenarios: %s" % ",".join(name for name, _ in STEPS))
    ap.add_argument("--conns", default="", help="comma-separated wrk connection counts (default 32,256)")
    ap.add_argument("--rounds", type=int, default=0,
                    help="repeat the HTTP and TCP runs this many times, each path keeping its "
                         "best (default: 2 in full mode, 1 in --quick)")
    ap.add_argument("--duration", type=int, default=0, help="seconds per wrk run (default 15, quick 2)")
    ap.add_argument("--agents", default="",
                    help="comma-separated idle-session levels for agentflood (default 1000,10000; "
                         "quick 1000); streams and churn run on the first level")
    ap.add_argument("--churn-seconds", type=int, default=None,
                    help="length of the connect/disconnect churn (default 600, quick 15; 0 = skip)")
    ap.add_argument("--workers", default="", help="tunnel-core --workers (default: one per core)")
    ap.add_argument("--nginx-workers", default="auto")
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--log-level", default="warn", help="core and agent --log-level")
    ap.add_argument("--profile", action="store_true",
                    help="perf record core and agent during the 256-connection tunnel run")
    ap.add_argument("--keep-tmp", action="store_true")
    ap.add_argument("--wait-quiet", type=float, default=0,
                    help="wait up to this many seconds for the load average to drop below "
                         "half the CPUs before starting")
    args = ap.parse_args()
    args.paths = [p for p in args.paths.split(",") if p]
    bad = [p for p in args.paths if p not in PATHS]
    if bad:
        ap.error("unknown path(s) %s" % bad)
    args.only = [s for s in args.only.split(",") if s]
    bad = [s for s in args.only if s not in dict(STEPS)]
    if bad:
        ap.error("unknown scenario(s) %s" % bad)
    for tool in ("nginx", "wrk", "curl"):
        if not shutil.which(tool):
            sys.exit("bench: %s is not installed; run scripts/install-deps.sh" % tool)
    for b in ("tunnel-core", "tunnel-agent"):
        if not (Path(args.bin_dir) / b).exists():
            sys.exit("bench: %s/%s missing; run `make build` or pass --bin-dir" % (args.bin_dir, b))
    args.tools_dir = str(runner.find_tools(args))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    args.out_dir.mkdir(parents=True, exist_ok=True)

    rig = Rig(args, "quick" if args.quick else "full")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_signal)
    res = runner.run(rig)
    md = markdown(res)
    base = args.out_dir / (rig.stamp + ("-quick" if args.quick else ""))
    base.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    base.with_suffix(".md").write_text(md)
    print(md)
    log("wrote %s.json and .md" % base)


if __name__ == "__main__":
    main()
