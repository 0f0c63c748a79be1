"""Debug mode (issue #18): the log level changed at run time, without a restart, and back.
The core: POST/GET/DELETE /debug/log on the admin listener and SIGUSR1; the agent: SIGUSR1.
Traffic through the tunnel runs all along and is not disturbed."""
import json
import re
import signal
import socket
import threading
import time

import pytest

from harness import client


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
    ("?level=debug&tunnel=app.localhost", 'unknown parameter "tunnel" (expected level and for; '
                                          'the level applies to the whole process)'),
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
