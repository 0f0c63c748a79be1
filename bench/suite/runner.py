"""Runs the suite: the order of the scenarios, the machine and versions recorded with each
run, and finding (or building) bench/tools."""
import datetime
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

from .common import REPO, TOOLS, log
from .scenarios import STEPS


def run(rig):
    """One run: waits (bounded) for a quiet machine, sets the rig up, runs every scenario
    (--only: the named ones) and stops every process; returns rig.result. A scenario that
    fails is recorded in the notes and the others still run."""
    rig.stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M%S")
    rig.result.update({
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "mode": rig.mode,
        "machine": {"cpus": os.cpu_count(), "cpu": cpu_model(), "kernel": platform.release(),
                    "loadavg_at_start": os.getloadavg()},
        "settings": dict(rig.cfg, log_level=rig.args.log_level,
                         nginx_workers=rig.args.nginx_workers, wrk_threads=rig.args.wrk_threads,
                         core_workers=rig.args.workers or "default"),
        "versions": tool_versions(), "git": git_rev()})
    t0 = time.monotonic()
    wait_quiet(rig)
    rig.result["machine"]["loadavg_at_start"] = os.getloadavg()
    try:
        t1 = time.monotonic()
        rig.setup()
        rig.result.setdefault("scenario_seconds", {})["setup"] = round(time.monotonic() - t1, 1)
        for name, fn in STEPS:
            if rig.args.only and name not in rig.args.only:
                continue
            t1 = time.monotonic()
            try:
                fn(rig)
            except Exception as e:  # noqa: BLE001 - record and go on with the others
                log("scenario %s failed: %s" % (name, e))
                rig.result["notes"].append("scenario %s failed: %s" % (name, e))
            rig.result.setdefault("scenario_seconds", {})[name] = round(time.monotonic() - t1, 1)
    finally:
        rig.procs.stop_all()
        rig.result["seconds"] = round(time.monotonic() - t0, 1)
        rig.result["machine"]["loadavg_at_end"] = os.getloadavg()
        shutil.rmtree(rig.shm, ignore_errors=True)
        if not rig.args.keep_tmp:
            shutil.rmtree(rig.tmp, ignore_errors=True)
        else:
            log("kept %s" % rig.tmp)
    return rig.result


def wait_quiet(rig):
    """Other work on the machine skews every number; wait (bounded) for it to calm down
    and record the load either way."""
    cpus = os.cpu_count() or 1
    deadline = time.monotonic() + rig.args.wait_quiet
    while os.getloadavg()[0] > 0.5 * cpus and time.monotonic() < deadline:
        time.sleep(5)
    load = os.getloadavg()[0]
    if load > 0.5 * cpus:
        note = ("machine busy: load average %.2f on %d CPUs at start; absolute numbers are "
                "low and noisy, compare the ratios of this run" % (load, cpus))
        rig.result["notes"].append(note)
        log(note)


def cpu_model():
    """The CPU's model name from /proc/cpuinfo."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def tool_versions():
    """The first line of each load tool's version output."""
    def first(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None
    return {"nginx": first(["nginx", "-v"]), "wrk": first(["wrk", "-v"]),
            "curl": first(["curl", "--version"])}


def git_rev():
    """The short commit the suite runs from."""
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return None


def find_tools(args):
    """The directory with bench/tools' binaries: --tools-dir, else the release build's, else
    our own build directory, which is configured and built here when needed."""
    if args.tools_dir:
        return Path(args.tools_dir)
    own = REPO / "build/benchtools"
    for d in (REPO / "build/release/bench/tools", own / "bench/tools"):
        if all((d / t).exists() for t in TOOLS):
            return d
    if args.no_build_tools:
        return own / "bench/tools"
    log("bench/tools not built: building %s in %s (once)" % (", ".join(TOOLS), own))
    conf = ["cmake", "-S", str(REPO), "-B", str(own), "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
            "-DTUNNEL_TESTS=OFF", "-DTUNNEL_BENCH_TOOLS=ON"]
    if shutil.which("ninja"):
        conf += ["-G", "Ninja"]
    if shutil.which("ccache"):
        conf += ["-DCMAKE_CXX_COMPILER_LAUNCHER=ccache", "-DCMAKE_C_COMPILER_LAUNCHER=ccache"]
    try:
        subprocess.run(conf, check=True, stdout=subprocess.DEVNULL, timeout=300)
        subprocess.run(["cmake", "--build", str(own), "-j", "2", "--target"] + list(TOOLS),
                       check=True, stdout=subprocess.DEVNULL, timeout=1800)
    except (OSError, subprocess.SubprocessError) as e:
        log("building bench/tools failed (%s); their scenarios are skipped" % e)
    return own / "bench/tools"
