"""--profile: perf record of the core and the agent during one HTTP run (the tunnel path at
the highest connection count), reported as text next to the results."""
import shutil
import signal
import subprocess

from .common import REPO, log


def start(rig):
    """perf record of the paths' core and agent, started; [] when perf is missing."""
    if not shutil.which("perf"):
        rig.result["notes"].append("--profile: perf not installed")
        return []
    procs = []
    for role in ("core", "agent"):
        out = rig.args.out_dir / ("perf-%s-%s.data" % (rig.stamp, role))
        procs.append((role, out, rig.procs.start("perf-" + role, [
            "perf", "record", "-F", "299", "--call-graph", "dwarf,8192", "-o", out,
            "-p", rig.pids[role]])))  # dwarf: the release build has no frame pointers
    return procs


def finish(rig, procs):
    """Stops the recordings `start` returned and writes each one's report next to the
    results (bench/results/perf-<stamp>-<role>.txt), named in the result's "profiles"."""
    for role, out, p in procs:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            rig.procs.stop(p)
        try:
            rep = subprocess.run(["perf", "report", "-i", str(out), "--stdio", "--no-children",
                                  "--percent-limit", "0.7", "-g", "none", "--sort",
                                  "dso,symbol"], capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            rig.result["notes"].append("perf report of %s timed out" % out)
            continue
        txt = rig.args.out_dir / ("perf-%s-%s.txt" % (rig.stamp, role))
        # perf pads every line to the terminal width; keep the text readable.
        txt.write_text("\n".join(strip_perf_padding(ln) for ln in rep.stdout.splitlines())
                       + "\n")
        rig.result.setdefault("profiles", {})[role] = str(txt.relative_to(REPO)) \
            if txt.is_relative_to(REPO) else str(txt)
        log("perf report for %s: %s" % (role, txt))


def strip_perf_padding(line):
    """perf report pads each line with spaces and two '-' columns (no regex: a padded line
    is thousands of characters and backtracking on it never ends)."""
    line = line.rstrip()
    for _ in range(2):
        if line.endswith(" -"):
            line = line[:-2].rstrip()
    return line
