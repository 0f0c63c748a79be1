"""Many agents on one core (bench/tools/agentflood holds real agent sessions: TLS, AUTH v2
with an http tunnel each, mux sessions that answer PINGs): the core's memory per idle
session, per stream in flight, and across a connect/disconnect churn, each measured on its
own fresh tunnel-core."""
import re
import time

from ..common import log
from ..drivers import Flood
from ..net import http_get, wait_for
from ..procs import cpu_seconds, fd_count, rss_kib, settle


def fresh_core(rig, name, plain=False):
    """A new tunnel-core for one memory measurement, with agentflood attached: no earlier
    load leaves freed memory behind for the measured sessions to reuse. With `plain`,
    agentflood connects to its plain-TCP agent listener instead of TLS."""
    cp, ports = rig.start_fresh_core(name, plain)
    flood = Flood(rig.procs, [
        rig.tools["agentflood"], "--server", "127.0.0.1:%d" % ports["agent"],
        "--http", "127.0.0.1:%d" % ports["http"], "--token", rig.token,
        "--prefix", "flood", "--max-seconds", rig.cfg["churn_seconds"] + 900]
        + (["--plain"] if plain else []))
    time.sleep(0.5)
    return cp, flood


def wait_fds(rig, pid, limit, what):
    """The core notices disconnects on its own time: wait (bounded) until its fd count is
    down to `limit`; the seconds it took, or None."""
    t0 = time.monotonic()
    try:
        wait_for(what, lambda: fd_count(pid) <= limit, timeout=180, interval=0.2)
        return round(time.monotonic() - t0, 1)
    except RuntimeError as e:
        rig.result["notes"].append(str(e))
        return None


def agents(rig):
    """Idle sessions at each of `agent_levels`, then all closed at once; then the first level
    over plain TCP, the streams in flight and the churn, each on its own fresh core."""
    if "core" not in rig.pids:
        return
    if "agentflood" not in rig.tools:
        rig.result["notes"].append("agents scenario skipped: agentflood not built")
        return
    r = rig.result["scenarios"]["agents"] = {"levels": []}
    cp, flood = fresh_core(rig, "core-agents")
    core = cp.pid
    try:
        base = r["core_rss_before_kib"] = settle(core)
        fds0 = fd_count(core)
        ev = None
        for n in rig.cfg["agent_levels"]:
            cpu0 = cpu_seconds(core)
            ev = flood.command("open %d" % n, 900)
            lv = level(ev, base, settle(core), cpu_seconds(core) - cpu0)
            if r["levels"]:
                prev = r["levels"][-1]
                lv["marginal_kib_per_session"] = round(
                    (lv["core_rss_kib"] - prev["core_rss_kib"]) /
                    max(1, lv["agents"] - prev["agents"]), 1)
            r["levels"].append(lv)
            log("agents: %s" % lv)
        live = ev["live"]
        t0 = time.monotonic()
        flood.command("close 0", 300)
        secs = wait_fds(rig, core, fds0 + 16, "the core to drop %d sessions" % live)
        r["close_all"] = {"sessions": live, "seconds": None if secs is None else
                          round(time.monotonic() - t0, 1),
                          "core_rss_after_kib": settle(core)}
        log("agents: closed: %s" % r["close_all"])
    finally:
        flood.stop()
        rig.procs.stop(cp)
    if rig.cfg.get("agents_plain") and not rig.plain_why:
        plain_level(rig, r)
    if rig.cfg["streams"] > 0:
        streams(rig, r)
    if rig.cfg["churn_seconds"] > 0:
        churn(rig, r)


def plain_level(rig, r):
    """The first level again over plain TCP: what TLS adds to an idle session."""
    cp, flood = fresh_core(rig, "core-agents-plain", plain=True)
    try:
        base = settle(cp.pid)
        cpu0 = cpu_seconds(cp.pid)
        ev = flood.command("open %d" % rig.cfg["agent_levels"][0], 600)
        lv = level(ev, base, settle(cp.pid), cpu_seconds(cp.pid) - cpu0)
        lv["plain"] = True
        r["plain_level"] = lv
        log("agents over plain TCP: %s" % lv)
    finally:
        flood.stop()
        rig.procs.stop(cp)


def level(ev, base, rss, cpu_s):
    """One level's result from agentflood's answer `ev` to "open N", the core's RSS before
    (`base`) and after, and the core CPU seconds the opening took."""
    live = ev["live"]
    return {"agents": live, "opened": ev["opened"], "failed": ev["failed"],
            "lost": ev.get("lost", 0), "open_seconds": round(ev["seconds"], 1),
            "sessions_per_second": round(ev["opened"] / ev["seconds"]) if ev["seconds"] else None,
            "core_cpu_ms_per_open": round(cpu_s * 1000 / max(1, ev["opened"]), 2),
            "core_rss_kib": rss, "core_rss_delta_kib": rss - base,
            "kib_per_session": round((rss - base) / max(1, live), 1),
            "first_error": ev.get("first_error") or None}


def streams(rig, r):
    """M requests held in flight at once (each on its own public TCP connection, answered
    only on release) over a few agent sessions of a fresh core: its RSS per open stream."""
    m, over = rig.cfg["streams"], rig.cfg["stream_sessions"]
    cp, flood = fresh_core(rig, "core-streams")
    core = cp.pid
    try:
        flood.command("open %d" % over, 60)
        before = settle(core)
        flood.command("hold on", 10)
        ev = flood.command("streams %d %d" % (m, over), 120)
        during = settle(core)
        rel = flood.command("release", 120)
        after = settle(core)
    finally:
        flood.stop()
        rig.procs.stop(cp)
    held = ev.get("held") or 0
    r["streams"] = {"requested": m, "over_sessions": ev.get("over_sessions"),
                    "held": held, "client_errors": ev.get("client_errors"),
                    "seconds_to_hold": round(ev.get("seconds", 0), 1),
                    "core_rss_before_kib": before, "core_rss_during_kib": during,
                    "core_rss_after_kib": after,
                    "kib_per_stream": round((during - before) / max(1, held), 1),
                    "answered_ok": rel.get("clients_ok"),
                    "answer_errors": rel.get("client_errors"),
                    "first_error": ev.get("first_error") or rel.get("first_error") or None}
    log("streams: %s" % r["streams"])


def churn(rig, r):
    """N sessions on a fresh core, then close and reopen them at a fixed rate; the core's
    RSS sampled every second."""
    rate, secs = rig.cfg["churn_rate"], rig.cfg["churn_seconds"]
    n = rig.cfg["agent_levels"][0]
    cp, flood = fresh_core(rig, "core-churn")
    core = cp.pid
    try:
        opened = flood.command("open %d" % n, 600)
        before = settle(core, rig.cfg["churn_settle"])
        samples = []
        flood.send("churn %s %s" % (rate, secs))
        t0 = time.monotonic()
        ev = None
        # Sample while agentflood churns; its answer comes when the churn is over.
        while time.monotonic() < t0 + secs + 60:
            got = flood.read(1.0)
            samples.append((round(time.monotonic() - t0, 1), rss_kib(core)))
            if got is not None:
                ev = got
                break
        if ev is None:
            raise RuntimeError("agentflood churn did not finish")
        after = settle(core, rig.cfg["churn_settle"])
        # Sanity: the core's own count of connected agents after the churn.
        st, body = http_get(cp.admin_port, "127.0.0.1", "/metrics")
        m = re.search(rb"^tunnel_agents_connected(?:\{[^}]*\})? (\d+)", body, re.M) \
            if st == 200 else None
        connected = int(m.group(1)) if m else None
    finally:
        flood.stop()
        rig.procs.stop(cp)
    half = [kib for t, kib in samples if t >= secs / 2]
    r["churn"] = {"rate_per_s": rate, "seconds": secs, "sessions": opened["live"],
                  "settle_seconds": rig.cfg["churn_settle"],
                  "closed": ev.get("closed"), "reopened": ev.get("reopened"),
                  "failed": ev.get("failed"), "live_after": ev.get("live"),
                  "core_agents_connected_after": connected,
                  "core_rss_before_kib": before, "core_rss_after_kib": after,
                  "growth_kib": after - before,
                  "core_rss_max_kib": max(k for _, k in samples),
                  "growth_second_half_kib": (half[-1] - half[0]) if len(half) > 1 else None,
                  "samples": samples[::max(1, len(samples) // 60)],
                  "first_error": ev.get("first_error") or None}
    log("churn: %s" % {k: v for k, v in r["churn"].items() if k != "samples"})
