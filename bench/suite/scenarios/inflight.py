"""Memory with requests and bodies in flight: many requests held at once through one real
agent, and large bodies whose readers stopped taking them (downloads buffered by the core,
uploads by the agent), each on a fresh core."""
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..common import HOST, free_port, log
from ..net import http_get, wait_for, wait_serving
from ..procs import LineReader, rss_detail, rss_kib, settle

HOLD_ORIGIN = Path(__file__).resolve().parent.parent / "hold_origin.py"


def agent_streams(rig):
    """Memory of a real agent (and of the core) with many requests in flight through it:
    a fresh TLS agent to an origin that holds every request, N public connections with one
    request each, RSS read while all N are held, then all answered."""
    if rig.core is None:
        return
    n = rig.cfg["agent_streams"]
    port = free_port()
    origin = rig.procs.start("hold-origin", [sys.executable, "-u", HOLD_ORIGIN,
                                             str(port), "all"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
    lines = LineReader(origin.stdout)
    if lines.readline(10) != "listening":
        raise RuntimeError("the holding origin did not start: " +
                           rig.procs.log_tail("hold-origin", 3))
    host = "hold.localhost"
    agent = rig.start_agent(["http", "127.0.0.1:%d" % port, "--subdomain", "hold"],
                            name="agent-hold")
    request = ("GET /hold HTTP/1.1\r\nHost: %s\r\n\r\n" % host).encode()
    core_http = ("127.0.0.1", rig.core_ports["http"])
    r = {"streams": n}
    socks = []
    try:
        # Until the agent serves the name the core answers 404 at once; then the origin
        # holds the probe (it stays open, the first of the n).
        deadline = time.monotonic() + 20
        while not socks:
            if agent.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the holding agent did not come up: " +
                                   rig.procs.log_tail("agent-hold", 3))
            probe = socket.create_connection(core_http, timeout=10)
            probe.sendall(request)
            line = lines.readline(0.5)
            if line and line.startswith("held "):
                socks.append(probe)
            else:
                probe.close()
        time.sleep(1.0)
        r["agent_rss_before_kib"] = rss_kib(agent.pid)
        r["core_rss_before_kib"] = rss_kib(rig.core.pid)
        held = 1
        for _ in range(n - 1):
            c = socket.create_connection(core_http, timeout=10)
            c.sendall(request)
            socks.append(c)
        deadline = time.monotonic() + 30
        while held < n and time.monotonic() < deadline:
            line = lines.readline(max(0.1, deadline - time.monotonic()))
            if line and line.startswith("held "):
                held = int(line.split()[1])
        r["held"] = held
        time.sleep(0.5)
        r["agent_rss_during_kib"] = rss_kib(agent.pid)
        r["agent_detail_during"] = rss_detail(agent.pid)
        r["core_rss_during_kib"] = rss_kib(rig.core.pid)
        origin.stdin.write(b"go\n")
        origin.stdin.flush()
        ok = 0
        for c in socks:
            try:
                c.settimeout(10)
                data = b""
                while not data.endswith(b"ok"):
                    chunk = c.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                ok += data.startswith(b"HTTP/1.1 200")
            except OSError:
                pass
        r["answered_ok"] = ok
        time.sleep(1.0)
        r["agent_rss_after_kib"] = rss_kib(agent.pid)
        # "before" was read with the probe already held: the growth is the other n - 1.
        added = max(1, r["held"] - 1)
        r["agent_kib_per_stream"] = round(
            (r["agent_rss_during_kib"] - r["agent_rss_before_kib"]) / added, 1)
        r["core_kib_per_stream"] = round(
            (r["core_rss_during_kib"] - r["core_rss_before_kib"]) / added, 1)
        rig.result["scenarios"]["agent_streams"] = r
        log("agent streams: %s" % r)
    finally:
        for c in socks:
            c.close()
        rig.procs.stop(agent)
        rig.procs.stop(origin)


def stalled(rig):
    """Memory with bodies in flight whose readers stopped taking them. Downloads: N public
    clients fetch a body through a fresh core and agent, read its first part fast (their
    streams' windows grow), then stop reading, so the core buffers for them; run with the
    default limits.window_budget_per_agent and with 4 GiB (no bound in practice: each
    window may grow to 16 MiB, as before the budget). Uploads: N clients PUT a body to an
    app that reads nothing until told, so the agent buffers for it. Then every reader reads
    again and each body's byte count is checked."""
    if rig.core is None:
        return
    n, body_mib, fast_mib = rig.cfg["stalled"]
    with open(rig.tmp / "www" / "stall", "wb") as f:
        f.truncate(body_mib << 20)
    r = rig.result["scenarios"]["stalled"] = {
        "clients": n, "body_mib": body_mib, "fast_mib": fast_mib, "runs": []}
    for budget in (None, 4 << 30):
        run = stalled_downloads(rig, n, body_mib << 20, fast_mib << 20, budget)
        r["runs"].append(run)
        log("stalled downloads: %s" % run)
    run = stalled_uploads(rig, n, body_mib << 20)
    r["runs"].append(run)
    log("stalled uploads: %s" % run)


def stalled_core(rig, name, budget=None):
    """A fresh core (with `budget` as limits.window_budget_per_agent, and as much for all
    agents together) and its CA file."""
    extra = "" if budget is None else (
        "limits:\n  window_budget_per_agent: %d\n  window_budget_total: %d\n"
        % (budget, budget))
    cp, ports = rig.start_fresh_core(name, extra_config=extra)
    return cp, ports, rig.tmp / ("%s-data" % name) / "tls.crt"


def window_growth(admin_port):
    st, body = http_get(admin_port, "127.0.0.1", "/metrics")
    m = re.search(rb"^tunnel_stream_window_growth_bytes (\S+)$", body or b"", re.M)
    return int(float(m.group(1))) if st == 200 and m else None


def stalled_downloads(rig, n, size, fast, budget):
    name = "core-stall-%s" % ("default" if budget is None else budget)
    cp, ports, ca = stalled_core(rig, name, budget)
    agent, socks = None, []
    run = {"bodies": "downloads", "budget": budget}
    try:
        agent = rig.start_agent(["http", "127.0.0.1:%d" % rig.origin_port, "--subdomain",
                                 "bench"], name="agent-" + name, core=(ports["agent"], ca))
        wait_serving("the tunnel of " + name, ports["http"])
        run["core_rss_before_kib"] = settle(cp.pid)
        run["agent_rss_before_kib"] = rss_kib(agent.pid)
        request = b"GET /stall HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST.encode()
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", ports["http"]), timeout=30)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            s.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    raise RuntimeError("a stalled download got no response head")
                data += chunk
            got = len(data.partition(b"\r\n\r\n")[2])
            while got < fast:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                got += len(chunk)
            socks.append([s, got])
        run["core_rss_during_kib"] = settle(cp.pid, 2.0)
        run["agent_rss_during_kib"] = rss_kib(agent.pid)
        run["window_growth_kib"] = (window_growth(ports["admin"]) or 0) // 1024
        for c in socks:
            s = c[0]
            s.settimeout(30)
            try:
                while c[1] < size:
                    chunk = s.recv(1 << 20)
                    if not chunk:
                        break
                    c[1] += len(chunk)
            except OSError:
                pass
        counts = [c[1] for c in socks]
    finally:
        for c in socks:
            c[0].close()
        if agent:
            rig.procs.stop(agent)
        rig.procs.stop(cp)
    return stalled_result(run, n, size, counts)


def stalled_result(run, n, size, counts):
    """Adds to `run` how many of the n bodies arrived whole (`counts`: bytes each), the
    bytes missing, and each side's RSS growth per body."""
    run["complete"] = sum(c == size for c in counts)
    run["bytes_lost"] = sum(max(0, size - c) for c in counts)
    for side in ("core", "agent"):
        run["%s_kib_per_body" % side] = round(
            (run["%s_rss_during_kib" % side] - run["%s_rss_before_kib" % side]) / n, 1)
    return run


def stalled_uploads(rig, n, size):
    cp, ports, ca = stalled_core(rig, "core-stall-up")
    port = free_port()
    origin = rig.procs.start("stall-origin", [sys.executable, "-u", HOLD_ORIGIN,
                                              str(port), "put"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
    agent, socks = None, []
    run = {"bodies": "uploads", "budget": None}
    try:
        lines = LineReader(origin.stdout)
        if lines.readline(10) != "listening":
            raise RuntimeError("the stalling origin did not start: " +
                               rig.procs.log_tail("stall-origin", 3))
        agent = rig.start_agent(["http", "127.0.0.1:%d" % port, "--subdomain", "bench"],
                                name="agent-stall-up", core=(ports["agent"], ca))
        wait_for("the uploads' tunnel", lambda: http_get(ports["http"])[0] == 200)
        run["core_rss_before_kib"] = settle(cp.pid)
        run["agent_rss_before_kib"] = rss_kib(agent.pid)
        head = b"PUT /up HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n" % (
            HOST.encode(), size)
        block = bytes(1 << 16)
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", ports["http"]), timeout=30)
            s.sendall(head)
            s.setblocking(False)
            sent, last = 0, time.monotonic()
            while sent < size and time.monotonic() - last < 0.3:  # until it blocks
                try:
                    sent += s.send(block[:min(len(block), size - sent)])
                    last = time.monotonic()
                except BlockingIOError:
                    time.sleep(0.005)
            socks.append([s, sent])
        held, deadline = 0, time.monotonic() + 30
        while held < n and time.monotonic() < deadline:
            line = lines.readline(max(0.1, deadline - time.monotonic()))
            if line and line.startswith("held "):
                held = int(line.split()[1])
        run["core_rss_during_kib"] = settle(cp.pid)
        run["agent_rss_during_kib"] = rss_kib(agent.pid)
        run["window_growth_kib"] = (window_growth(ports["admin"]) or 0) // 1024
        run["sent_before_stall_mib"] = round(sum(c[1] for c in socks) / n / (1 << 20), 1)
        origin.stdin.write(b"go\n")
        origin.stdin.flush()
        counts = []
        for s, sent in socks:
            got = 0
            try:
                s.settimeout(60)
                while sent < size:
                    sent += s.send(block[:min(len(block), size - sent)])
                data = b""
                while b"\r\n\r\n" not in data or not data.endswith(b" ok"):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                m = re.search(rb"\r\n\r\n(\d+) ok$", data)
                got = int(m.group(1)) if m else 0
            except OSError:
                pass
            counts.append(got)
    finally:
        for c in socks:
            c[0].close()
        if agent:
            rig.procs.stop(agent)
        rig.procs.stop(origin)
        rig.procs.stop(cp)
    return stalled_result(run, n, size, counts)
