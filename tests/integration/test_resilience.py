"""JWT agents, and an agent that stops reading: only its own tunnel suffers (issue #2)."""
import json
import socket
import threading
import time

import jwt

from harness import client, v1client

JWT_SECRET = "an-hs256-secret-of-at-least-32-bytes!!"

JWT_CONFIG = """\
domain: localhost
listen: {{agent: "{agent}", http: "{http}", https: "{https}", admin: "{admin}"}}
auth: {{jwt_secret: "%s"}}
accounts:
  - {{name: alice, subdomains: ["alice-*"]}}
""" % JWT_SECRET

STUCK_CONFIG = """\
domain: localhost
listen: {{agent: "{agent}", http: "{http}", https: "{https}", admin: "{admin}"}}
heartbeat: {{interval: 500ms, timeout: 3s}}
accounts:
  - {{name: default, tokens: ["test-agent-token"]}}
"""


def _token(**claims):
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def test_jwt_agent_and_expired_jwt(tunnel, origin):
    core = tunnel.core(config_text=JWT_CONFIG, tokens=())
    good = _token(account_id="alice", agent_id="laptop", exp=int(time.time()) + 600)
    tunnel.agent(core, origin.addr, subdomain="alice-web", name="agent-jwt", token=good)
    r = core.request("alice-web")
    assert r.status == 200 and json.loads(r.body)["origin"] == "A", r.text()

    expired = _token(account_id="alice", exp=int(time.time()) - 3600)
    late = tunnel.agent(core, origin.addr, subdomain="alice-late", name="agent-expired",
                        token=expired, wait=False)
    assert late.wait_exit(20) != 0
    assert "authentication failed" in late.output().lower(), late.output()

    # A JWT for an account may not take names outside that account's patterns.
    wrong = tunnel.agent(core, origin.addr, subdomain="bob-web", name="agent-jwt-outside",
                         token=good, wait=False)
    assert wrong.wait_exit(20) != 0
    assert "bob-web" in wrong.output(), wrong.output()


def test_agent_that_stops_reading_hurts_only_itself(tunnel, origin):
    core = tunnel.core(config_text=STUCK_CONFIG, tokens=())
    tunnel.agent(core, origin.addr, subdomain="app", name="agent-ok", token="test-agent-token")

    # A v1 agent that authenticates and then never reads again (nor sends heartbeats).
    sock = v1client.connect_tls(core.agent_addr, core.ca)
    auth = {"token": "test-agent-token", "agent_id": "stuck", "metadata": {"subdomains": "stuck"}}
    sock.sendall(v1client.encode(v1client.AUTH, 0, 0, json.dumps(auth).encode()))
    ftype, flags, _, payload = v1client.read_frame(sock)
    assert ftype == v1client.AUTH and flags & v1client.ACK and json.loads(payload)["success"]

    # Push a large upload at the stuck agent until the core can no longer write to it.
    result = {}

    def upload():
        try:
            s = socket.create_connection(("127.0.0.1", core.http_port), timeout=30)
            body = b"x" * (32 * 1024 * 1024)
            s.sendall(b"POST /upload HTTP/1.1\r\nHost: stuck.localhost\r\nContent-Length: %d\r\n\r\n"
                      % len(body))
            try:
                s.sendall(body)
            except OSError:
                pass
            result["reply"] = s.recv(4096)
        except OSError as e:
            result["error"] = e

    t = threading.Thread(target=upload, daemon=True)
    t.start()
    time.sleep(1.0)

    # Meanwhile every other tunnel keeps answering promptly.
    for _ in range(20):
        start = time.monotonic()
        r = core.request("app", timeout=5)
        assert r.status == 200, r.text()
        assert time.monotonic() - start < 2.0

    # The stuck agent is dropped by the heartbeat timeout, with a log line saying so.
    client.wait_for(lambda: "heartbeat timeout" in core.output(), 20,
                    what="the stuck agent to be dropped")
    t.join(30)
    assert not t.is_alive(), "the upload to the dropped agent never finished"
    reply = result.get("reply", b"")
    assert reply == b"" or reply.startswith(b"HTTP/1.1 50"), reply[:200]
    assert core.alive()
    sock.close()
    assert core.request("app").status == 200


BODY_LIMIT_CONFIG = """\
domain: localhost
listen: {{agent: "{agent}", http: "{http}", https: "{https}", admin: "{admin}"}}
limits: {{max_body_bytes: 100}}
accounts:
  - {{name: default, tokens: ["test-agent-token"]}}
"""


def test_body_limit_is_413_for_length_and_chunked(tunnel, origin):
    core = tunnel.core(config_text=BODY_LIMIT_CONFIG, tokens=())
    tunnel.agent(core, origin.addr, subdomain="app", name="agent-limit", token="test-agent-token")
    assert core.request("app", "POST", "/upload", body=b"x" * 50).status == 200
    assert core.request("app", "POST", "/upload", body=b"x" * 1000).status == 413
    chunked = (b"POST /upload HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"100\r\n" + b"a" * 256 + b"\r\n0\r\n\r\n")
    rs = client.raw_exchange(core.http_port, chunked, timeout=10)
    assert rs and rs[0].status == 413, rs
    assert core.request("app").status == 200
