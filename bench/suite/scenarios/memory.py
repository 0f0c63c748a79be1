"""Memory at rest (the paths' processes, idle, and again after the load runs) and the time
from starting an agent to the first request served through it."""
import time

from ..common import BODY_SIZE, log
from ..net import http_get, wait_for
from ..procs import rss_detail, rss_kib


def idle(rig):
    """Idle RSS of core and agent (one agent connected, one request served, at rest),
    and of the other paths' forwarding processes for comparison."""
    time.sleep(1.0)
    mem = {}
    if "core" in rig.pids:
        mem["core_no_agent_kib"] = rig.result.pop("memory_core_no_agent_kib", None)
        mem["core_idle_kib"] = rig.result.pop("memory_core_one_agent_kib", None)
        mem["core_idle_detail"] = rig.result.pop("memory_core_one_agent_detail", None)
        mem["core_all_agents_kib"] = rss_kib(rig.pids["core"])
        mem["core_all_agents_connected"] = sum(1 for r in rig.pids if r.startswith("agent"))
    if "agent" in rig.pids:
        mem["agent_idle_kib"] = rss_kib(rig.pids["agent"])
        mem["agent_idle_detail"] = rss_detail(rig.pids["agent"])
    if "nginx" in rig.pids:
        mem["nginx_proxy_tree_kib"] = rss_kib(rig.pids["nginx"], tree=True)
    if "sshd" in rig.pids:
        mem["sshd_tree_kib"] = rss_kib(rig.pids["sshd"], tree=True)
        mem["ssh_client_kib"] = rss_kib(rig.pids["ssh"])
    rig.result["scenarios"]["memory"] = mem
    log("memory idle: %s" % mem)


def ttfr(rig):
    """Time from starting a fresh agent to the first request answered through it."""
    if "core" not in rig.pids:
        return
    runs = []
    for i in range(rig.cfg["ttfr_runs"]):
        sub = "ttfr%d" % i
        t0 = time.monotonic()
        a = rig.start_agent(["http", "127.0.0.1:%d" % rig.origin_port, "--subdomain", sub],
                            name="agent-ttfr")
        try:
            def served():
                st, body = http_get(rig.core_ports["http"], "%s.localhost" % sub, "/", 1.0)
                return st == 200 and len(body) == BODY_SIZE
            wait_for("agent %s to serve" % sub, served, timeout=20, interval=0.002)
            runs.append(round((time.monotonic() - t0) * 1000, 1))
        finally:
            rig.procs.stop(a)
    rig.result["scenarios"]["time_to_first_request_ms"] = {
        "runs": runs, "median": sorted(runs)[len(runs) // 2], "min": min(runs)}
    log("time to first request (ms): %s" % runs)


def after_load(rig):
    """Idle RSS of the paths' core and agent once the load runs are over."""
    mem = rig.result["scenarios"].setdefault("memory", {})
    if "core" in rig.pids:
        time.sleep(1.0)
        mem["core_after_load_kib"] = rss_kib(rig.pids["core"])
        if "agent" in rig.pids:
            mem["agent_after_load_kib"] = rss_kib(rig.pids["agent"])
