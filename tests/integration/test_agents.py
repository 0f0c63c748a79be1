"""Agents coming and going: two agents on one hostname, agent restart, core restart
(issue #2, tests 6-8)."""
import contextlib
import fcntl
import json
import socket
import struct
import termios
import threading
import time

import pytest

from harness import client


def test_two_agents_share_a_hostname(tunnel, core):
    a, b = tunnel.origin("A"), tunnel.origin("B")
    tunnel.agent(core, a.addr, subdomain="both", name="agent-a")
    tunnel.agent(core, b.addr, subdomain="both", name="agent-b", wait=False)
    seen = {}

    def both_served():
        r = core.request("both", "GET", "/echo", timeout=10)  # a new connection each time
        assert r.status == 200, r.text()
        origin = json.loads(r.body)["origin"]
        seen[origin] = seen.get(origin, 0) + 1
        return {"A", "B"} <= set(seen)

    client.wait_for(both_served, 30, interval=0.01, what="both agents to receive requests")
    # both stay in rotation: the next 40 requests reach each of them at least once
    seen.clear()
    for _ in range(40):
        both_served()
    assert set(seen) == {"A", "B"}, seen


def _status_within(core, name, seconds):
    """A request that must be answered (any status) within `seconds`; returns the status."""
    t0 = time.monotonic()
    try:
        r = core.request(name, "GET", "/echo", timeout=seconds)
    except TimeoutError:
        raise AssertionError("request to %s hung for %.1fs" % (name, seconds)) from None
    except OSError as e:
        raise AssertionError("request to %s failed at transport level after %.1fs: %r"
                             % (name, time.monotonic() - t0, e)) from None
    return r.status


def test_agent_restart(tunnel, core, origin):
    agent = tunnel.agent(core, origin.addr, subdomain="app", name="agent-1")
    assert core.request("app").status == 200
    agent.kill()
    # while no agent serves the name, requests fail fast with a gateway/not-found status
    statuses = [_status_within(core, "app", 10) for _ in range(5)]
    assert set(statuses) <= {404, 502, 503}, statuses
    tunnel.agent(core, origin.addr, subdomain="app", name="agent-2")
    r = core.request("app")
    assert r.status == 200 and json.loads(r.body)["origin"] == "A"


def test_core_restart_same_agent_reconnects(tunnel, core, origin):
    agent = tunnel.agent(core, origin.addr, subdomain="app", name="agent-1")
    assert core.request("app").status == 200
    core.kill()
    time.sleep(0.5)  # let the agent notice and back off at least once
    assert agent.alive(), "agent exited when the core went away:\n" + agent.tail()
    core.start()  # same ports, same data dir (same certificate and tokens)
    r = core.wait_routed("app", timeout=45, agent=agent)
    assert r.status == 200 and json.loads(r.body)["origin"] == "A"
    assert agent.alive()


TIMEOUT_CONFIG = """\
domain: localhost
listen: {{agent: "{agent}", http: "{http}", https: "{https}", admin: "{admin}"}}
limits: {{response_timeout: 2s}}
accounts:
  - {{name: default, tokens: ["test-agent-token"], subdomains: ["*"]}}
"""


def test_gateway_errors_502_and_504(tunnel, origin):
    core = tunnel.core(config_text=TIMEOUT_CONFIG)
    # nothing listens on 127.0.0.1:1: the page names the address the agent could not reach
    tunnel.agent(core, "127.0.0.1:1", subdomain="dead", name="agent-dead")
    r = core.request("dead", "GET", "/")
    assert r.status == 502 and b"127.0.0.1:1" in r.body, (r.status, r.body[:500])

    # the app answers after 5 s, the response timeout is 2 s
    tunnel.agent(core, origin.addr, subdomain="app", name="agent-app")
    t0 = time.monotonic()
    r = core.request("app", "GET", "/sleep?s=5", timeout=15)
    assert r.status == 504, (r.status, r.body[:500])
    assert time.monotonic() - t0 < 4.5
    assert core.request("app").status == 200


@pytest.mark.parametrize("response,problem", [
    (b"HTTP/1.1 200 OK\r\nX-Old: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
     b"obsolete line folding"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\rXok\r\n0\r\n\r\n",
     b"CR not followed by LF"),
    (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nraw",
     b"101 Switching Protocols answers a request that did not ask to upgrade"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXY0\r\n\r\n",
     b"chunk data not followed by CRLF"),
], ids=["folded-header", "bare-cr-in-chunk-size", "unrequested-101", "no-crlf-after-chunk-data"])
def test_app_response_with_bad_line_ends_is_502(tunnel, response, problem):
    """An app whose response folds a header, ends a chunk-size line in a bare CR, or switches
    protocols for a request that did not ask to: the agent refuses to read it another way, and
    the visitor gets a 502 page that says what was wrong. The agent stays up and serves the next
    request."""
    lsock = socket.create_server(("127.0.0.1", 0))

    def app():
        while True:
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(response)
    threading.Thread(target=app, daemon=True).start()
    try:
        core = tunnel.core()
        tunnel.agent(core, "127.0.0.1:%d" % lsock.getsockname()[1], subdomain="bad")
        for _ in range(2):
            rs = client.raw_exchange(core.http_port,
                                     b"GET / HTTP/1.1\r\nHost: bad.localhost\r\n\r\n", timeout=15)
            assert rs and rs[0].status == 502 and problem in rs[0].body, \
                [(r.status, r.body[:500]) for r in rs]
        assert core.alive() and tunnel.all[-1].alive()
    finally:
        lsock.close()


def unacked_bytes(sock):
    """Bytes sent on `sock` that the peer has not acknowledged yet (SIOCOUTQ)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]


def test_leftover_response_never_reaches_the_next_visitor(tunnel):
    """Issue 25: an app that answers one request twice, the second time after the exchange
    ended. The leftover (with visitor A's Set-Cookie) sat on the agent's idle keep-alive
    connection and was given to visitor B, whose GET skipped the pool's check. Now B gets the
    app's real answer, on a fresh connection, and the agent logs why at debug."""
    lsock = socket.create_server(("127.0.0.1", 0))
    first_answered = threading.Event()
    leftover_sent = threading.Event()

    def respond(conn):
        with conn, contextlib.suppress(OSError):  # the agent resets the one it drops
            f = conn.makefile("rb")
            while True:
                line = f.readline()
                if not line:
                    return
                path = line.split(b" ")[1]
                while f.readline() not in (b"\r\n", b""):
                    pass
                body = b"real answer for " + path
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                if path == b"/first":
                    first_answered.wait(30)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nSet-Cookie: session=visitor-a\r\n"
                                 b"Content-Length: 15\r\n\r\nleftover for A!")
                    # Acknowledged by the agent's kernel: waiting in its socket, not in flight.
                    client.wait_for(lambda: unacked_bytes(conn) == 0, 15,
                                    what="the agent's kernel to acknowledge the leftover")
                    leftover_sent.set()

    def app():
        while True:
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            threading.Thread(target=respond, args=(conn,), daemon=True).start()
    threading.Thread(target=app, daemon=True).start()
    try:
        core = tunnel.core()
        agent = tunnel.agent(core, "127.0.0.1:%d" % lsock.getsockname()[1], subdomain="twice",
                             extra_args=["--log-level", "debug"])
        a = core.request("twice", "GET", "/first", timeout=15)
        assert a.status == 200 and a.body == b"real answer for /first", (a.status, a.body)
        first_answered.set()
        assert leftover_sent.wait(15)
        for path in ("/second", "/third"):
            b = core.request("twice", "GET", path, timeout=15)
            assert b.status == 200, (b.status, b.body[:500])
            assert b.body == b"real answer for " + path.encode(), b.body
            assert "set-cookie" not in b.headers, b.headers
        agent.wait_output(r"sent \d+ byte\(s\) on an idle keep-alive connection", timeout=15)
    finally:
        lsock.close()


def test_response_transfer_encoding_reaches_the_visitor_normalised(tunnel):
    """Issue 25: an app's "Transfer-Encoding: IDENTITY" + "Transfer-Encoding: chunked" went to
    the visitor as two fields; the visitor gets one "Transfer-Encoding: chunked"."""
    lsock = socket.create_server(("127.0.0.1", 0))

    def app():
        while True:
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: IDENTITY\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
    threading.Thread(target=app, daemon=True).start()
    try:
        core = tunnel.core()
        tunnel.agent(core, "127.0.0.1:%d" % lsock.getsockname()[1], subdomain="te")
        s = socket.create_connection(("127.0.0.1", core.http_port), timeout=15)
        with s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: te.localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                more = s.recv(65536)
                if not more:
                    break
                data += more
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), data
        fields = [l.split(b":", 1) for l in head.split(b"\r\n")[1:]]
        assert [v.strip() for k, v in fields if k.lower() == b"transfer-encoding"] == [b"chunked"], head
        assert body == b"2\r\nok\r\n0\r\n\r\n", body
    finally:
        lsock.close()


def test_plain_tcp_agent_listener(tunnel, origin):
    """listen.agent_plain: an agent with --plain connects without TLS and serves requests; an
    agent that speaks TLS to the plain port (or plain to the TLS port) is refused cleanly."""
    plain_port = client.free_port()
    core = tunnel.core(extra_args=["--agent-plain-addr", "127.0.0.1:%d" % plain_port])
    core.wait_output(r"plain TCP on port %d" % plain_port)
    tunnel.agent(core, origin.addr, subdomain="plain", name="agent-plain", use_ca=False,
                 server="127.0.0.1:%d" % plain_port, extra_args=["--plain"])
    r = core.request("plain", "POST", "/echo", body=b"x" * 100_000)
    assert r.status == 200, r.text()
    assert json.loads(r.body)["body_length"] == 100_000
    agent_log = tunnel.all[-1].output()
    assert "clear text" not in agent_log, "a loopback --plain agent should not warn"
    # the TLS listener keeps refusing plain agents, and serving TLS ones
    wrong = tunnel.agent(core, origin.addr, subdomain="wrong", name="agent-wrong", use_ca=False,
                         extra_args=["--plain"], wait=False)
    wrong.wait_output(r"plain-TCP agent listener, listen.agent_plain, not its TLS port", timeout=15)
    wrong_tls = tunnel.agent(core, origin.addr, subdomain="wrong2", name="agent-wrong-tls",
                             server="127.0.0.1:%d" % plain_port, wait=False)
    wrong_tls.wait_output(r"use --plain", timeout=15)
    core.wait_output(r"a TLS agent must use the TLS one", timeout=15)
    assert core.alive()
    tunnel.agent(core, origin.addr, subdomain="tls", name="agent-tls")
    assert core.request("tls").status == 200
