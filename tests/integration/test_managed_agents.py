"""Agents managed from the core (issue 17): an agent registered through the API runs with only
its token (`tunnel-agent start --token tna_...`) and serves what the API assigns to it; a
change reaches it within seconds without a restart; a target outside its allow list is not
forwarded; removing the agent disconnects it and it stops (its credential is refused). The
traffic it serves shows in the account's usage, per tunnel and for the account."""
import re
import time

from harness import client
from harness.api import call
from harness.procs import Proc, bin_dir


def managed_agent(tunnel, core, token, name="managed", extra=()):
    argv = [bin_dir() / "tunnel-agent", "start", "--token", token,
            "--server", core.agent_addr, "--ca", core.ca,
            "--data-dir", core.workdir / ("%s-data" % name)] + list(extra)
    return tunnel.add(Proc(name, argv, core.workdir / ("%s.log" % name),
                           cwd=core.workdir)).start()


def served_by(core, host, origin_name, timeout=10.0):
    """Waits until requests to host are answered by the origin named origin_name."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = client.request(core.http_port, core.host(host), "GET", "/echo", timeout=5)
            if last.status == 200 and last.headers.get("x-origin") == origin_name:
                return last
        except OSError as e:
            last = e
        time.sleep(0.05)
    raise AssertionError("%s not served by origin %s within %.0f s (last: %r)"
                         % (host, origin_name, timeout, last))


def test_an_agent_serves_what_the_api_assigns_and_follows_changes(tunnel):
    core = tunnel.core()
    a = tunnel.origin("A")
    b = tunnel.origin("B")
    status, agent = call(core, "POST", "/api/v1/agents", {"name": "laptop"})
    assert status == 201, agent
    proc = managed_agent(tunnel, core, agent["token"])
    proc.wait_output(re.escape("no tunnels assigned to this agent yet"))

    # Assigned while it runs: served within a few seconds, no restart.
    status, t = call(core, "POST", "/api/v1/tunnels",
                     {"name": "app", "type": "http", "agent": agent["id"], "local": a.addr})
    assert status == 201, t
    started = time.monotonic()
    served_by(core, "app", "A")
    assert time.monotonic() - started < 5

    # Re-pointed: the next requests go to B; the agent process is the same one.
    status, t2 = call(core, "PATCH", "/api/v1/tunnels/%s" % t["id"], {"local": b.addr})
    assert status == 200, t2
    served_by(core, "app", "B")
    assert proc.alive()

    # Removed: disconnected within seconds, and it stops for good (bad token).
    status, _ = call(core, "DELETE", "/api/v1/agents/%s" % agent["id"])
    assert status == 204
    proc.wait_output(r"authentication failed", timeout=15)
    deadline = time.monotonic() + 15
    while proc.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not proc.alive() and proc.returncode() == 1, proc.tail()
    r = client.request(core.http_port, core.host("app"), "GET", "/echo", timeout=5)
    assert r.status in (404, 503), r.status


def test_a_target_outside_the_allow_list_is_not_forwarded(tunnel):
    core = tunnel.core()
    a = tunnel.origin("A")
    status, agent = call(core, "POST", "/api/v1/agents", {"name": "locked"})
    assert status == 201, agent
    status, t = call(core, "POST", "/api/v1/tunnels",
                     {"name": "inside", "type": "http", "agent": agent["id"], "local": a.addr})
    assert status == 201, t
    port = a.addr.rsplit(":", 1)[1]
    # Only another port is allowed: the core's assignment must not be followed.
    proc = managed_agent(tunnel, core, agent["token"], name="locked",
                         extra=["--allow-local", "127.0.0.1:1"])
    proc.wait_output(re.escape("not forwarded: the core assigned the local target 127.0.0.1:%s"
                               % port) + ".*allow_local")
    r = client.request(core.http_port, core.host("inside"), "GET", "/echo", timeout=10)
    assert r.status == 502 or r.status == 503, (r.status, r.body[:200])
    assert r.headers.get("x-origin") is None


def test_a_plain_token_cannot_ask_for_assignments(tunnel):
    core = tunnel.core()
    proc = managed_agent(tunnel, core, core.tokens[0], name="plain")
    proc.wait_output(re.escape("not a registered agent's"), timeout=15)
    deadline = time.monotonic() + 10
    while proc.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not proc.alive() and proc.returncode() == 1, proc.tail()


FAST_USAGE = """
listen:
  agent: "{agent}"
  http: "{http}"
  admin: "{admin}"
store:
  usage_flush_interval: 200ms
"""


def test_traffic_shows_in_the_usage_per_tunnel_and_account(tunnel):
    core = tunnel.core(config_text=FAST_USAGE, tokens=())
    a = tunnel.origin("A")
    status, agent = call(core, "POST", "/api/v1/agents", {"name": "counted"})
    assert status == 201, agent
    status, t = call(core, "POST", "/api/v1/tunnels",
                     {"name": "metered", "type": "http", "agent": agent["id"], "local": a.addr})
    assert status == 201, t
    managed_agent(tunnel, core, agent["token"], name="counted")
    served_by(core, "metered", "A")
    body = b"x" * 1000
    for _ in range(9):
        r = client.request(core.http_port, core.host("metered"), "POST", "/echo", body=body)
        assert r.status == 200
    r = client.request(core.http_port, core.host("metered"), "GET", "/status/503")
    assert r.status == 503
    account = t["account"]
    deadline = time.monotonic() + 10
    while True:
        status, usage = call(core, "GET", "/api/v1/accounts/%s/usage" % account)
        assert status == 200, usage
        if usage["total"]["requests"] >= 11 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    # served_by's first request, the nine posts and the 503 (maybe a few more probes).
    assert usage["total"]["requests"] >= 11, usage
    assert usage["total"]["bytes_in"] >= 9000, usage
    assert usage["total"]["errors"] >= 1, usage
    per_tunnel = [b for b in usage["buckets"] if b["tunnel"] == t["id"]]
    assert per_tunnel and sum(b["requests"] for b in per_tunnel) == usage["total"]["requests"]
