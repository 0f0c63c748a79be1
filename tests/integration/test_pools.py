"""Session pools and several cores (issue 19): an agent holds --connections sessions to each
core of --server, the core sees them as one agent, and losing a core or a session moves the
traffic to the others.

Each test runs a few seconds; the margins allow sanitized binaries (about 3x slower)."""
import json
import re
import select
import signal
import socket
import threading
import time

from harness import client

# Short heartbeats so that a stalled session is dropped within seconds.
CONFIG = """\
domain: localhost
listen: {{agent: "{agent}", http: "{http}", https: "{https}", admin: "{admin}"}}
heartbeat: {{interval: 500ms, timeout: 2s}}
accounts:
  - {{name: default, tokens: ["test-agent-token"], max_agents: 1}}
"""


def metric(core, name):
    return client.parse_metrics(core.admin("/metrics").text()).get(name, 0.0)


def wait_sessions(core, n, timeout=20.0):
    client.wait_for(lambda: metric(core, "tunnel_agents_connected") == n, timeout,
                    what="%s to have %d agent sessions" % (core.name, n))


class Load:
    """Sequential GETs on one thread until stop(): the time and outcome of each."""

    def __init__(self, send):
        self.send = send
        self.results = []  # (monotonic time at the end, ok, detail)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                r = self.send()
                ok, detail = r.status == 200, "%d %s" % (r.status, r.body[:200])
            except OSError as e:
                ok, detail = False, repr(e)
            self.results.append((time.monotonic(), ok, detail))
            time.sleep(0.01)

    def stop(self):
        self._stop.set()
        self._thread.join(30)
        return self.results

    def failures(self):
        return [r for r in self.results if not r[1]]


def test_connections_are_sessions_of_one_agent(tunnel, origin):
    core = tunnel.core(config_text=CONFIG)
    metrics_port = client.free_port()
    agent = tunnel.agent(core, origin.addr, subdomain="pool",
                         extra_args=["--connections", "3",
                                     "--metrics-addr", "127.0.0.1:%d" % metrics_port])
    # Three sessions of one agent: max_agents 1 lets them in, the core counts three sessions.
    wait_sessions(core, 3)
    agent.wait_output(r"core 127\.0\.0\.1:\d+: 3/3 sessions")
    for _ in range(12):
        r = core.request("pool")
        assert r.status == 200 and json.loads(r.body)["origin"] == "A", r.text()
    agent_metrics = client.request(metrics_port, "127.0.0.1", "GET", "/metrics").text()
    assert 'tunnel_agent_core_sessions{core="%s"} 3' % core.agent_addr in agent_metrics, \
        agent_metrics
    # Its own sessions do not make the core say the name is shared with another agent.
    assert "round robin" not in agent.output() and "round robin" not in core.output(), \
        core.tail(30)

    # A second agent of the account is still refused (max_agents 1), however many sessions the
    # first one holds.
    other = tunnel.agent(core, origin.addr, subdomain="pool", name="agent-other", wait=False)
    other.wait_output(re.escape("already has 1 agents connected (max_agents"))
    other.kill()


def test_agent_on_two_cores_survives_kill_9_and_rejoins(tunnel, origin):
    a = tunnel.core(name="core-a", config_text=CONFIG)
    b = tunnel.core(name="core-b", config_text=CONFIG)
    agent = tunnel.agent(a, origin.addr, subdomain="ha", use_ca=False,
                         server="%s,%s" % (a.agent_addr, b.agent_addr),
                         extra_args=["--insecure", "--connections", "2"])
    b.wait_routed("ha", agent=agent)
    wait_sessions(a, 2)
    wait_sessions(b, 2)

    # A client in front of both cores, as nginx with `proxy_next_upstream error http_404
    # http_503`: it tries the cores in turn, and the next one when a core refuses the
    # connection, or does not serve the name yet (restarted, the agent not back).
    turn = [0]

    def send():
        cores = [a, b] if turn[0] % 2 == 0 else [b, a]
        turn[0] += 1
        for i, core in enumerate(cores):
            last = i == len(cores) - 1
            try:
                r = core.request("ha", timeout=5)
            except ConnectionRefusedError:
                if last:
                    raise
                continue
            if r.status not in (404, 503) or last:
                return r
        raise AssertionError("unreachable")

    load = Load(send)
    direct_b = Load(lambda: b.request("ha", timeout=5))
    time.sleep(0.5)
    killed_at = time.monotonic()
    a.popen.kill()  # SIGKILL
    a.popen.wait(10)
    time.sleep(1.5)
    agent.wait_output(r"core 127\.0\.0\.1:%d: reconnecting in" % a.ports["agent"])
    a.start()
    restarted_at = time.monotonic()
    wait_sessions(a, 2, timeout=30)
    rejoined_s = time.monotonic() - restarted_at
    a.wait_routed("ha")
    time.sleep(0.5)
    results = load.stop()
    direct = direct_b.stop()

    fails = load.failures()
    window = (fails[-1][0] - killed_at) if fails else 0.0
    print("kill -9 of one core: %d requests through the front, %d failed within %.3f s; "
          "%d straight to the other core, %d failed; rejoined %.2f s after the restart"
          % (len(results), len(fails), window, len(direct), len(direct_b.failures()),
             rejoined_s))
    assert len(results) >= 5 and len(direct) > 20  # a request may wait for a restarting core
    # Only requests in flight on the killed core can fail (one at a time here), right away.
    assert len(fails) <= 1 and window < 1.0, fails
    assert not direct_b.failures(), direct_b.failures()[:3]
    assert agent.alive()


class StallableProxy:
    """A TCP proxy on loopback that forwards to `target` until stall(): then it stops reading
    and writing both ways (as a SIGSTOPped proxy or a black-holed path would)."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.stalled = threading.Event()
        self.done = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        self.listener.settimeout(0.2)
        while not self.done.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(conn, upstream), daemon=True).start()

    def _pump(self, a, b):
        peers = {a: b, b: a}
        try:
            while not self.done.is_set():
                if self.stalled.is_set():
                    time.sleep(0.05)
                    continue
                ready, _, _ = select.select([a, b], [], [], 0.1)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    peers[s].sendall(data)
        except OSError:
            pass
        finally:
            a.close()
            b.close()

    def stall(self):
        self.stalled.set()

    def close(self):
        self.done.set()
        self.listener.close()


def test_stalled_session_moves_traffic_to_the_others(tunnel, origin):
    core = tunnel.core(config_text=CONFIG)
    proxy = StallableProxy(core.ports["agent"])
    try:
        # Two "cores" that are one: a session straight to it, and one through the proxy.
        agent = tunnel.agent(core, origin.addr, subdomain="stall", use_ca=False,
                             server="%s,127.0.0.1:%d" % (core.agent_addr, proxy.port),
                             extra_args=["--insecure"])
        wait_sessions(core, 2)
        for _ in range(4):
            assert core.request("stall").status == 200
        load = Load(lambda: core.request("stall", timeout=10))
        time.sleep(0.3)
        stalled_at = time.monotonic()
        proxy.stall()
        # The core drops the silent session at heartbeat.timeout (2 s); then only the other one
        # serves.
        core.wait_output(r"no frame from the peer for \d+ ms \(heartbeat timeout 2000 ms\)",
                         timeout=15)
        time.sleep(1.0)
        results = load.stop()
        fails = load.failures()
        window = (fails[-1][0] - stalled_at) if fails else 0.0
        after = [r for r in results if r[0] > stalled_at + window]
        print("stalled session: %d requests, %d failed, the last %.3f s after the stall"
              % (len(results), len(fails), window))
        # Requests fail only until the core drops the silent session (heartbeat.timeout, 2 s;
        # 3 s for a late timer under ASan), and every one after that succeeds.
        assert window < 5.0, fails
        assert len(after) >= 5 and all(r[1] for r in after), after[:3]
        assert agent.alive()
    finally:
        proxy.close()


def test_rotation_at_max_age_under_load_drops_nothing(tunnel, origin):
    """--session-max-age: each session is replaced (the new one up first, the old one sends
    GOAWAY and drains) while requests flow; none fails."""
    core = tunnel.core(config_text=CONFIG)
    agent = tunnel.agent(core, origin.addr, subdomain="rot",
                         extra_args=["--connections", "2", "--session-max-age", "10s"])
    wait_sessions(core, 2)
    load = Load(lambda: core.request("rot", timeout=10))
    # Both sessions reach the minimum max age (10 s) and are replaced under the load.
    client.wait_for(lambda: agent.output().count("reached its max age") >= 2, 30,
                    what="both sessions to rotate")
    time.sleep(0.5)  # the old sessions drain while the load goes on
    results = load.stop()
    rotations = agent.output().count("reached its max age")
    print("rotation under load: %d requests, %d rotations, %d failed"
          % (len(results), rotations, len(load.failures())))
    assert load.failures() == [], load.failures()[:5]
    assert len(results) >= 20


HEALTH_FLAGS = ["--health-check", "http:/health", "--health-interval", "200ms",
                "--health-timeout", "150ms", "--health-fall", "2", "--health-rise", "2"]


def test_health_check_withdraws_an_agent_whose_app_is_down(tunnel):
    core = tunnel.core(config_text=CONFIG.replace("max_agents: 1", "max_agents: 2"))
    origin_a = tunnel.origin("A")
    origin_b = tunnel.origin("B")
    metrics_port = client.free_port()
    tunnel.agent(core, origin_a.addr, subdomain="hc", name="agent-a", extra_args=HEALTH_FLAGS)
    agent_b = tunnel.agent(core, origin_b.addr, subdomain="hc", name="agent-b",
                           extra_args=HEALTH_FLAGS + ["--metrics-addr",
                                                      "127.0.0.1:%d" % metrics_port])

    def origins(n):
        seen = []
        for _ in range(n):
            r = core.request("hc", timeout=5)
            seen.append(json.loads(r.body)["origin"] if r.status == 200 else r.status)
        return seen

    client.wait_for(lambda: "B" in origins(4), 10, what="both agents to get requests")

    # B's app goes down: after 2 failed checks (400-600 ms) B is withdrawn; requests that reach
    # it before that fail (502), none after.
    down_at = time.monotonic()
    origin_b.kill()
    agent_b.wait_output(r"is unhealthy \(2 checks failed", timeout=10)
    withdrawn_s = time.monotonic() - down_at
    core.wait_output(r"the app of hc\.localhost is unhealthy", timeout=5)
    assert origins(20) == ["A"] * 20
    assert metric(core, "tunnel_agent_tunnels_unhealthy") == 1
    agent_metrics = client.parse_metrics(
        client.request(metrics_port, "127.0.0.1", "GET", "/metrics").text())
    assert agent_metrics.get("tunnel_agent_tunnel_healthy") == 0, agent_metrics

    # Back on the same port: healthy after 2 passed checks, and it gets requests again.
    origin_b.argv += ["--port", str(origin_b.port)]
    origin_b.start()
    agent_b.wait_output(r"is healthy again \(2 checks passed\)", timeout=10)
    client.wait_for(lambda: "B" in origins(4), 10, what="B to get requests again")
    assert metric(core, "tunnel_agent_tunnels_unhealthy") == 0
    print("health check: withdrawn %.2f s after the app went down" % withdrawn_s)
    assert withdrawn_s < 3.0

    # Both apps down: 503 naming the reason.
    origin_a.kill()
    origin_b.kill()
    client.wait_for(lambda: metric(core, "tunnel_agent_tunnels_unhealthy") == 2, 10,
                    what="both tunnels unhealthy")
    r = core.request("hc")
    assert r.status == 503 and b"reports its app unhealthy" in r.body, (r.status, r.body)
    assert b"127.0.0.1:" in r.body, r.body  # the reason names the app's address
