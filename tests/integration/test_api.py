"""The REST API on the admin listener (issue 17): a real core, a real HTTP client, the
operator's key from <data_dir>/admin.key; tunnels and agents made, read, changed and deleted;
they survive a restart; bodies over 1 MiB are refused before they are read; no key is 401."""
import http.client
import json
import re
import socket
import ssl
import subprocess
import threading

from harness import client
from harness.procs import Proc, bin_dir


def call(core, method, path, body=None, key=None, headers=None, conn=None):
    """One request; returns (status, headers dict with lower-case names, parsed JSON or None)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", core.admin_port, timeout=10)
    h = dict(headers or {})
    if key:
        h["Authorization"] = "Bearer " + key
    data = None
    if body is not None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=h)
    r = conn.getresponse()
    raw = r.read()
    fields = {k.lower(): v for k, v in r.getheaders()}
    if own:
        conn.close()
    return r.status, fields, (json.loads(raw) if raw else None)


def operator_key(core):
    return (core.data_dir / "admin.key").read_text().strip()


def test_tunnels_and_agents_through_the_api_survive_a_restart(tunnel):
    core = tunnel.core()
    key_file = core.data_dir / "admin.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    core.wait_output(re.escape("the operator's key is in %s" % key_file))
    key = operator_key(core)
    assert key.startswith("tnk_")

    status, _, app = call(core, "POST", "/api/v1/tunnels", {"name": "app", "type": "http"}, key)
    assert status == 201, app
    assert app["url"] == "https://app.localhost:%d" % core.ports["https"]  # https when on
    status, _, tcp = call(core, "POST", "/api/v1/tunnels", {"type": "tcp", "port": 15432}, key)
    assert status == 201, tcp
    assert tcp["port"] == 15432
    status, _, agent = call(core, "POST", "/api/v1/agents", {"name": "laptop"}, key)
    assert status == 201, agent
    assert agent["token"].startswith("tna_")

    # One kept-alive connection for several requests.
    conn = http.client.HTTPConnection("127.0.0.1", core.admin_port, timeout=10)
    status, _, listed = call(core, "GET", "/api/v1/tunnels", key=key, conn=conn)
    assert status == 200 and [t["id"] for t in listed["items"]] == [app["id"], tcp["id"]]
    status, fields, got = call(core, "GET", "/api/v1/tunnels/%d" % app["id"], key=key, conn=conn)
    assert status == 200 and got["name"] == "app"
    etag = fields["etag"]
    status, _, patched = call(core, "PATCH", "/api/v1/tunnels/%d" % app["id"],
                              {"proxy_protocol": True}, key, {"If-Match": etag}, conn=conn)
    assert status == 200 and patched["proxy_protocol"] is True, patched
    status, _, stale = call(core, "PATCH", "/api/v1/tunnels/%d" % app["id"],
                            {"proxy_protocol": False}, key, {"If-Match": etag}, conn=conn)
    assert status == 412, stale
    status, _, body = call(core, "DELETE", "/api/v1/tunnels/%d" % tcp["id"], key=key, conn=conn)
    assert status == 204 and body is None
    status, _, got = call(core, "GET", "/api/v1/agents/%d" % agent["id"], key=key, conn=conn)
    assert status == 200 and "token" not in got and got["sessions"] == []
    conn.close()

    core.stop()
    core.start()
    assert operator_key(core) == key  # written once, on the first start
    status, _, listed = call(core, "GET", "/api/v1/tunnels", key=key)
    assert status == 200, listed
    assert [(t["id"], t["proxy_protocol"]) for t in listed["items"]] == [(app["id"], True)]
    status, _, agents = call(core, "GET", "/api/v1/agents", key=key)
    assert [a["name"] for a in agents["items"]] == ["laptop"]


def test_refusals_without_a_key_and_for_bad_bodies(tunnel):
    core = tunnel.core()
    key = operator_key(core)
    status, fields, problem = call(core, "GET", "/api/v1/tunnels")
    assert status == 401 and fields["www-authenticate"].startswith("Bearer"), problem
    core.wait_output(r"api 127\.0\.0\.1:\d+: failed authentication: send an API key", 5)
    assert fields["content-type"] == "application/problem+json"
    status, _, problem = call(core, "POST", "/api/v1/tunnels", '{"name": ', key)
    assert status == 400 and problem["type"] == "urn:tunnel:problem:malformed-json", problem
    status, _, problem = call(core, "POST", "/api/v1/tunnels", {"name": "x", "colour": 1}, key)
    assert status == 422 and problem["errors"][0]["field"] == "colour", problem

    # Over 1 MiB: 413 from the head alone, and the connection closes (the body is not read).
    with socket.create_connection(("127.0.0.1", core.admin_port), timeout=10) as s:
        s.sendall(b"POST /api/v1/tunnels HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                  + key.encode() + b"\r\nContent-Length: 2097152\r\n\r\n")
        reply = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413 "), reply[:200]
    # Chunked bodies are refused.
    with socket.create_connection(("127.0.0.1", core.admin_port), timeout=10) as s:
        s.sendall(b"POST /api/v1/agents HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"\r\n5\r\nhello\r\n0\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 411 ")
    status, _, listed = call(core, "GET", "/api/v1/tunnels", key=key)
    assert status == 200 and listed["items"] == []
    # The other admin paths still answer.
    assert core.admin("/healthz").status == 200


def test_without_the_admin_listener_there_is_no_store(tunnel):
    data = tunnel.workdir / "no-admin-data"
    p = tunnel.add(Proc("no-admin", [bin_dir() / "tunnel-core", "--data-dir", data,
                                     "--agent-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
                                     "--admin-addr", ""],
                        tunnel.workdir / "no-admin.log", cwd=tunnel.workdir)).start()
    p.wait_output(re.escape("tunnel-core ready"))
    assert not (data / "store.db").exists()
    assert not (data / "admin.key").exists()


def test_an_agent_registered_through_the_api_is_accepted(tunnel, origin):
    core = tunnel.core()
    key = operator_key(core)
    status, _, agent = call(core, "POST", "/api/v1/agents", {"name": "laptop"}, key)
    assert status == 201, agent
    status, _, t = call(core, "POST", "/api/v1/tunnels", {"name": "app"}, key)
    assert status == 201, t
    a = tunnel.agent(core, origin.addr, subdomain="app", token=agent["token"], wait=False)
    client.wait_routed(core.http_port, core.host("app"), timeout=10, proc=a)


def test_every_acknowledged_write_survives_kill_9(tunnel):
    core = tunnel.core()
    key = operator_key(core)
    acknowledged = []

    def write():
        conn = http.client.HTTPConnection("127.0.0.1", core.admin_port, timeout=10)
        for i in range(10000):
            try:
                status, _, t = call(core, "POST", "/api/v1/tunnels", {"name": "t%d" % i}, key,
                                    conn=conn)
            except (OSError, http.client.HTTPException):
                return
            assert status == 201, t
            acknowledged.append(t["id"])

    writer = threading.Thread(target=write)
    writer.start()
    client.wait_for(lambda: len(acknowledged) >= 20, 30, what="20 writes")
    core.kill()  # SIGKILL while the writer's requests run
    writer.join(timeout=20)
    assert not writer.is_alive()
    core.start()
    status, _, listed = call(core, "GET", "/api/v1/tunnels?limit=1000", key=key)
    assert status == 200, listed
    stored = [t["id"] for t in listed["items"]]
    # Every acknowledged write is there (one committed but not acknowledged may be too).
    assert stored[:len(acknowledged)] == acknowledged, (acknowledged, stored)
    assert len(stored) <= len(acknowledged) + 1


def test_the_api_listener_serves_the_api_over_tls_only(tunnel):
    """listen.api: the API on a TLS listener of its own, for remote use (the agent listener's
    certificate by default); nothing else is served there, plain HTTP is told to use https."""
    api_port = client.free_port()
    core = tunnel.core(extra_args=["--api-addr", "127.0.0.1:%d" % api_port])
    core.wait_output(re.escape("API https on port %d" % api_port))
    key = operator_key(core)
    tls = ssl.create_default_context(cafile=str(core.ca))

    def https(method, path, key=None, body=None):
        conn = http.client.HTTPSConnection("127.0.0.1", api_port, timeout=10, context=tls)
        return call(core, method, path, body, key, conn=conn)

    status, _, made = https("POST", "/api/v1/tunnels", key, {"name": "remote", "type": "http"})
    assert status == 201, made
    status, _, listed = https("GET", "/api/v1/tunnels", key)
    assert status == 200 and [t["name"] for t in listed["items"]] == ["remote"]
    status, fields, problem = https("GET", "/api/v1/tunnels", "tnk_" + "0" * 64)
    assert status == 401 and fields.get("www-authenticate", "").startswith("Bearer"), problem
    # Only the API: the admin endpoints stay on the admin listener.
    status, _, problem = https("GET", "/metrics")
    assert status == 404 and "API only" in problem["detail"], problem

    # Plain HTTP to the TLS port: a clear 400, then the connection closes.
    with socket.create_connection(("127.0.0.1", api_port), timeout=10) as s:
        s.sendall(b"GET /api/v1/tunnels HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert b"speaks HTTPS only" in answer, answer

    # tunnelctl reaches it with --server https://... and the core's CA.
    cp = subprocess.run([str(bin_dir() / "tunnelctl"), "--server",
                         "https://127.0.0.1:%d" % api_port, "--ca", str(core.ca), "--key", key,
                         "tunnels", "list"], capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0, cp.stderr
    assert [t["name"] for t in json.loads(cp.stdout)["items"]] == ["remote"]
