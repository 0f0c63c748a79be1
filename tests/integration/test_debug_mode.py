"""Debug mode (issue #18): the log level changed at run time, without a restart, and back.
The core: POST/GET/DELETE /debug/log on the admin listener and SIGUSR1; the agent: SIGUSR1.
Traffic through the tunnel runs all along and is not disturbed. Connection inspection:
/debug/connections and `tunnel-core inspect` show a stream held open with its bytes."""
import json
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from harness import client
from harness.procs import bin_dir


def admin(core, method, path):
    return client.request(core.admin_port, "127.0.0.1", method, path, timeout=10)


def state(core):
    r = admin(core, "GET", "/debug/log")
    assert r.status == 200 and r.headers["content-type"] == "application/json"
    return json.loads(r.body)


def https_garbage(core):
    """Plain text to the public HTTPS port: the failed handshake is logged at debug only."""
    with socket.create_connection(("127.0.0.1", core.ports["https"]), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass


DEBUG_LINE = re.compile(r" debug https: ")


@pytest.fixture
def traffic(core, app):
    """Requests through the tunnel for the whole test; each must succeed."""
    stop, failures, done = threading.Event(), [], [0]

    def run():
        while not stop.is_set():
            r = core.request("app", "GET", "/echo", timeout=10)
            if r.status != 200:
                failures.append(r.status)
            done[0] += 1
            stop.wait(0.02)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    yield done
    stop.set()
    t.join(15)
    assert not failures and done[0] > 0, (failures, done)


def test_the_core_turns_debug_logs_on_and_off_at_run_time(core, traffic):
    assert state(core) == {"level": "info", "configured": "info", "temporary": False}
    https_garbage(core)
    time.sleep(0.3)
    assert not DEBUG_LINE.search(core.output())

    r = admin(core, "POST", "/debug/log?level=debug&for=2s")
    assert r.status == 200, r.text()
    body = json.loads(r.body)
    assert body["level"] == "debug" and body["temporary"] is True
    assert body["remaining_seconds"] in (1, 2)
    core.wait_output(r"log level debug for 2s \(POST /debug/log from 127\.0\.0\.1:\d+\); "
                     r"then back to info")
    https_garbage(core)
    core.wait_output(DEBUG_LINE.pattern)

    # Its time runs out: back to info on its own.
    core.wait_output(re.escape("log level back to info (its time is up)"), timeout=5)
    assert state(core)["level"] == "info"
    seen = len(DEBUG_LINE.findall(core.output()))
    https_garbage(core)
    time.sleep(0.3)
    assert len(DEBUG_LINE.findall(core.output())) == seen

    # DELETE ends it before its time.
    assert admin(core, "POST", "/debug/log?level=trace&for=1h").status == 200
    assert state(core)["level"] == "trace"
    r = admin(core, "DELETE", "/debug/log")
    assert r.status == 200 and json.loads(r.body)["level"] == "info"
    core.wait_output(r"log level back to info \(DELETE /debug/log from 127\.0\.0\.1:\d+\)")

    # SIGUSR1: debug for 10 minutes, again: back.
    core.signal(signal.SIGUSR1)
    core.wait_output(re.escape("log level debug for 600s (SIGUSR1; again to go back to info "
                               "now)"))
    assert state(core)["level"] == "debug"
    core.signal(signal.SIGUSR1)
    core.wait_output(re.escape("log level back to info (SIGUSR1)"))
    assert state(core) == {"level": "info", "configured": "info", "temporary": False}
    assert core.alive()


@pytest.mark.parametrize("query,message", [
    ("", "level is missing: POST /debug/log?level=debug&for=5m"),
    ("?level=verbose", 'unknown log level "verbose" (expected trace, debug, info, warn, error, '
                       'critical or off)'),
    ("?level=debug&for=2h", "the duration must be between 1s and 3600s, got 7200s"),
    ("?level=debug&for=soon", "for: "),
    ("?level=debug&bogus=1", 'unknown parameter "bogus" (expected level, tunnel, agent and '
                             'for)'),
])
def test_the_core_refuses_bad_settings_and_keeps_its_level(core, query, message):
    r = admin(core, "POST", "/debug/log" + query)
    assert r.status == 400 and r.text().startswith(message), r.text()
    assert state(core)["level"] == "info"
    assert admin(core, "PUT", "/debug/log").status == 405
    assert admin(core, "POST", "/metrics").status == 405  # other paths stay read-only


def test_the_agent_turns_debug_logs_on_and_off_with_sigusr1(core, app, traffic):
    # The agent logs each request's details (request id, local address, bytes) at debug.
    detail = re.compile(r" debug\s+id=[0-9a-f]{32} local=")
    client.wait_for(lambda: traffic[0] >= 5, 10, what="some traffic")
    assert not detail.search(app.output())
    app.signal(signal.SIGUSR1)
    app.wait_output(re.escape("log level debug for 600s (SIGUSR1; again to go back to info now)"))
    app.wait_output(detail.pattern)
    app.signal(signal.SIGUSR1)
    app.wait_output(re.escape("log level back to info (SIGUSR1)"))
    seen = len(detail.findall(app.output()))
    n = traffic[0]
    client.wait_for(lambda: traffic[0] >= n + 5, 10, what="more traffic")
    assert len(detail.findall(app.output())) <= seen + 1  # one may have been in flight
    assert app.alive()


def connections(core, query=""):
    r = admin(core, "GET", "/debug/connections" + query)
    assert r.headers["content-type"] == "application/json", r.text()
    return r.status, json.loads(r.body)


def inspect(core, *args):
    return subprocess.run([str(bin_dir() / "tunnel-core"), "inspect", "--admin",
                           "127.0.0.1:%d" % core.admin_port, *args],
                          capture_output=True, text=True, timeout=15)


def test_connection_inspection_shows_a_held_upload_with_its_bytes(core, app):
    core.wait_routed("app")
    host = core.host("app")
    # An upload held open: its head and 5000 of its 100000 body bytes sent, the rest never.
    held = socket.create_connection(("127.0.0.1", core.http_port), timeout=10)
    held.sendall(b"POST /upload HTTP/1.1\r\nHost: %s\r\nContent-Length: 100000\r\n\r\n"
                 % host.encode() + b"x" * 5000)
    try:
        def the_tunnel():
            _, doc = connections(core)
            tunnels = [t for t in doc["tunnels"] if t["tunnel"] == host]
            return doc, (tunnels[0] if tunnels else None)

        client.wait_for(lambda: (the_tunnel()[1] or {}).get("bytes_sent") == 5000, 10,
                        what="the held upload's 5000 bytes")
        doc, tunnel = the_tunnel()
        assert doc["truncated"] is False and doc["sessions"] == 1
        assert doc["public_connections"] >= 1
        assert tunnel["connections"] == 1 and tunnel["agents"] == 1
        assert tunnel["oldest"][0]["bytes_sent"] == 5000
        agent = doc["agents"][0]
        session = agent["sessions"][0]
        assert session["streams"] == 1 and session["tunnels"] == [host]
        assert session["bytes_sent"] > 5000 and session["open"] is True
        assert "stream_list" not in session

        status, one = connections(core, "?agent=" + agent["agent_id"])
        assert status == 200
        stream = one["agents"][0]["sessions"][0]["stream_list"][0]
        assert stream["tunnel"] == host and stream["bytes_sent"] == 5000
        assert stream["sent_end"] is False and stream["received_end"] is False
        assert stream["send_credit"] == session["stream_send_window"] - 5000

        out = inspect(core, "--agent", agent["agent_id"])
        assert out.returncode == 0, out.stderr
        assert re.search(r"^%s\s+%d\s+%s\s+\S+\s+5000\s+0\s" % (
            re.escape(agent["agent_id"]), stream["id"], re.escape(host)), out.stdout, re.M), \
            out.stdout
        assert re.search(r"^%s\s+1\s+1\s+5000\s" % re.escape(host), out.stdout, re.M), out.stdout
        as_json = inspect(core, "--json")
        assert as_json.returncode == 0 and json.loads(as_json.stdout)["sessions"] == 1
    finally:
        held.close()
    client.wait_for(lambda: connections(core)[1]["tunnels"][0]["connections"] == 0, 10,
                    what="the stream to go")

    status, missing = connections(core, "?agent=nobody")
    assert status == 404 and missing["agents"] == []
    out = inspect(core, "--agent", "nobody")
    assert out.returncode == 1 and "No session of agent nobody." in out.stdout
    r = admin(core, "GET", "/debug/connections?limit=0")
    assert r.status == 400 and r.text() == "limit: expected a number from 1 to 1000\n"
    assert admin(core, "POST", "/debug/connections").status == 405
    assert inspect(core, "--limit", "0").returncode == 2
    assert core.alive()


def test_detailed_lines_for_one_tunnel_or_agent_on_and_off(core, app, traffic):
    host = core.host("app")
    detail = re.compile(r" debug %s GET /echo: agent=\S+ local=\S+ to_agent=[\d.]+ms "
                        r"app=[\d.]+ms status=200 id=[0-9a-f]{32}" % re.escape(host))
    client.wait_for(lambda: traffic[0] >= 3, 10, what="some traffic")
    assert not detail.search(core.output())

    # Another tunnel selected: nothing about this one.
    r = admin(core, "POST", "/debug/log?tunnel=other.localhost&for=1m")
    assert r.status == 200, r.text()
    n = traffic[0]
    client.wait_for(lambda: traffic[0] >= n + 3, 10, what="more traffic")
    assert not detail.search(core.output())

    # This tunnel: its lines appear, the level of the rest stays info.
    r = admin(core, "POST", "/debug/log?tunnel=%s&for=1m" % host)
    assert r.status == 200, r.text()
    assert {"tunnel": host, "remaining_seconds": 60} in json.loads(r.body)["selectors"]
    core.wait_output(detail.pattern)
    assert state(core)["level"] == "info"
    https_garbage(core)
    time.sleep(0.3)
    assert not DEBUG_LINE.search(core.output())

    # DELETE: every selector off; the lines stop.
    assert admin(core, "DELETE", "/debug/log").status == 200
    core.wait_output(r"log level back to info \(DELETE /debug/log from ")
    time.sleep(0.2)  # a request in flight may still log
    seen = len(detail.findall(core.output()))
    n = traffic[0]
    client.wait_for(lambda: traffic[0] >= n + 5, 10, what="more traffic")
    assert len(detail.findall(core.output())) == seen

    # The agent's id selects the same lines, until its time is up.
    agent_id = connections(core)[1]["agents"][0]["agent_id"]
    assert admin(core, "POST", "/debug/log?agent=%s&for=2s" % agent_id).status == 200
    core.wait_output(re.escape("detailed logs of agent %s for 2s" % agent_id))
    n = len(detail.findall(core.output()))
    client.wait_for(lambda: len(detail.findall(core.output())) > n, 10, what="agent lines")
    core.wait_output(re.escape("detailed logs of agent %s off (its time is up)" % agent_id),
                     timeout=5)

    assert state(core) == {"level": "info", "configured": "info", "temporary": False}
    assert core.alive()


@pytest.mark.parametrize("query,message", [
    ("?tunnel=a&agent=b", "give tunnel or agent, not both"),
    ("?tunnel=a&level=info", "tunnel and agent turn on their detailed (debug) lines: no other "
                             "level"),
    ("?agent=a&for=2h", "the duration must be between 1s and 3600s, got 7200s"),
])
def test_the_core_refuses_bad_selectors(core, query, message):
    r = admin(core, "POST", "/debug/log" + query)
    assert r.status == 400 and r.text().startswith(message), r.text()
    assert state(core) == {"level": "info", "configured": "info", "temporary": False}
