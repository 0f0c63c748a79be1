"""The core's request pipeline as a visitor sees it: the rate limit charged once per request
(also when a connection moves between workers), forwarding fields the edge owns, absolute-form
targets and duplicate Host fields, a visitor who gives up (499, the stream freed at once), an
early answer to an upload that the client still sees (lingering close), and a response that
turns invalid mid-body (the client is closed at once)."""
import http.client
import json
import socket
import subprocess
import threading
import time

import pytest

from harness import client, v1client

def config(workers=1, extra=""):
    """A core config (Core formats it again with the listen addresses, hence the braces)."""
    extra = extra.replace("{", "{{").replace("}", "}}")
    return ("domain: localhost\nworkers: %d\n"
            'listen: {{agent: "{agent}", http: "{http}", https: "{https}", admin: "{admin}"}}\n'
            "%s\naccounts:\n  - {{name: default, tokens: [\"test-agent-token\"]}}\n") % (workers, extra)


def echo_headers(resp):
    return {k.lower(): v for k, v in json.loads(resp.body)["headers"].items()}


def test_rate_limit_is_charged_once_per_request_across_workers(tunnel, origin):
    # 5 requests/s, burst 10. With two workers about half the connections move to the agent's
    # worker; before the fix those were charged twice and some of the first ten got 429.
    core = tunnel.core(config_text=config(workers=2, extra="limits: {requests_per_second: 5}"),
                       tokens=())
    tunnel.agent(core, origin.addr, subdomain="app", token="test-agent-token", wait=False)
    client.wait_for(lambda: core.request("app", "GET", "/echo").status == 200, 30,
                    what="the tunnel to be routed")
    time.sleep(2.2)  # refill the burst the probes above used
    statuses = [core.request("app", "GET", "/echo").status for _ in range(10)]
    assert statuses == [200] * 10, statuses
    more = [core.request("app", "GET", "/echo").status for _ in range(6)]
    assert 429 in more, more
    refused = core.request("app", "GET", "/echo")
    if refused.status == 429:
        assert b"Too many requests for app.localhost" in refused.body


def test_the_edge_owns_forwarding_fields(tunnel, origin):
    core = tunnel.core()
    tunnel.agent(core, origin.addr, subdomain="app")
    r = core.request("app", "GET", "/headers", headers={
        "X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.6", "Forwarded": "for=6.6.6.6",
        "X-Forwarded-Host": "bank.example", "X-Request-Id": "forged-id"})
    assert r.status == 200
    h = echo_headers(r)
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert "x-real-ip" not in h
    assert "forwarded" not in h
    assert h["x-forwarded-host"] == "app.localhost"
    assert h["x-request-id"] != "forged-id"
    assert r.headers["x-request-id"] == h["x-request-id"]


def test_a_trusted_proxy_keeps_its_chain_and_request_id(tunnel, origin):
    core = tunnel.core(config_text=config(extra='trusted_proxies: ["127.0.0.1"]'), tokens=())
    tunnel.agent(core, origin.addr, subdomain="app", token="test-agent-token")
    r = core.request("app", "GET", "/headers", headers={
        "X-Forwarded-For": "203.0.113.9", "X-Request-Id": "lb-42", "X-Forwarded-Proto": "https"})
    h = echo_headers(r)
    assert h["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert h["x-request-id"] == "lb-42"
    assert h["x-forwarded-proto"] == "https"


def test_absolute_form_routes_by_the_target_and_two_hosts_are_refused(tunnel, origin):
    core = tunnel.core()
    tunnel.agent(core, origin.addr, subdomain="app")
    raw = (b"GET http://app.localhost/headers?x=1 HTTP/1.1\r\nHost: other.localhost\r\n"
           b"Connection: close\r\n\r\n")
    rs = client.raw_exchange(core.http_port, raw)
    assert rs and rs[0].status == 200, rs
    h = {k.lower(): v for k, v in json.loads(rs[0].body)["headers"].items()}
    assert h["host"] == "app.localhost"
    two = (b"GET /echo HTTP/1.1\r\nHost: app.localhost\r\nHost: other.localhost\r\n"
           b"Connection: close\r\n\r\n")
    rs = client.raw_exchange(core.http_port, two)
    assert rs and rs[0].status == 400, rs


def test_a_visitor_who_leaves_frees_the_stream_and_is_logged_499(tunnel, origin):
    core = tunnel.core(config_text=config(extra="limits: {max_streams_per_agent: 2}"), tokens=())
    tunnel.agent(core, origin.addr, subdomain="app", token="test-agent-token")
    quitters = []
    for _ in range(2):
        s = socket.create_connection(("127.0.0.1", core.http_port), timeout=10)
        s.sendall(b"GET /sleep?s=30 HTTP/1.1\r\nHost: app.localhost\r\n\r\n")
        quitters.append(s)
    time.sleep(0.3)
    for s in quitters:
        s.close()
    # Without the fix both streams stay open for 30 s and this gets 503 ("2 open streams").
    started = time.monotonic()
    client.wait_for(lambda: core.request("app", "GET", "/echo", timeout=5).status == 200, 10,
                    what="a stream to be free again")
    assert time.monotonic() - started < 10
    core.wait_output(r"GET /sleep\?s=30 499 \(client closed the connection\)", timeout=10)


class EarlyAnswerApp:
    """An app that answers 413 as soon as it has the head of an upload, reads nothing more,
    and closes its side at once (as a framework refusing a body does)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
        body = b"too large\n"
        conn.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n%s" % (len(body), body))
        time.sleep(0.5)
        conn.close()


def test_an_early_answer_to_a_large_upload_reaches_the_client(tunnel, tmp_path):
    app = EarlyAnswerApp()
    core = tunnel.core()
    tunnel.agent(core, "127.0.0.1:%d" % app.port, subdomain="app", wait=False)
    client.wait_for(lambda: core.request("app", "POST", "/", body=b"x").status == 413, 30,
                    what="the tunnel to be routed")
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"u" * (20 * 1024 * 1024))
    # Python's http.client sends the whole body before it reads the answer: without a
    # lingering close it gets a connection reset instead of the 413.
    conn = http.client.HTTPConnection("127.0.0.1", core.http_port, timeout=30)
    with open(upload, "rb") as f:
        conn.request("POST", "/upload", body=f, headers={
            "Host": "app.localhost", "Content-Length": str(20 * 1024 * 1024)})
        r = conn.getresponse()
    assert r.status == 413
    assert r.read() == b"too large\n"
    conn.close()
    out = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: app.localhost",
         "--data-binary", "@%s" % upload, "http://127.0.0.1:%d/upload" % core.http_port],
        capture_output=True, text=True, timeout=60)
    assert out.stdout == "413", (out.stdout, out.stderr)


class BrokenMidBodyAgent(v1client.V1Agent):
    """A v1 agent (it relays the app's bytes unchecked) whose response turns invalid after its
    first chunk, and which then never ends the stream: only the core can end the exchange."""

    def _serve(self, sid, head, body):
        self.send(v1client.DATA, 0, sid,
                  b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        time.sleep(0.3)
        self.send(v1client.DATA, 0, sid, b"ZZZZ\r\n")


def test_a_response_that_turns_invalid_mid_body_closes_the_client_at_once(tunnel):
    core = tunnel.core()
    agent = BrokenMidBodyAgent(core.agent_addr, core.ca, core.tokens[0], ["broken"], None,
                               agent_id="v1-broken", heartbeat=0.5)
    assert agent.connect().get("success") is True
    agent.start()
    try:
        s = socket.create_connection(("127.0.0.1", core.http_port), timeout=20)
        s.sendall(b"GET / HTTP/1.1\r\nHost: broken.localhost\r\n\r\n")
        started = time.monotonic()
        got = b""
        while True:
            data = s.recv(65536)
            if not data:
                break
            got += data
        elapsed = time.monotonic() - started
    finally:
        agent.close()
    assert got.startswith(b"HTTP/1.1 200"), got
    assert b"hello" in got
    # Before the fix the client waited for limits.idle_timeout (75 s; the socket timeout of
    # 20 s above raised first).
    assert elapsed < 10, "the client waited %.1f s" % elapsed
    core.wait_output(r"the response turned invalid after it began", timeout=5)
