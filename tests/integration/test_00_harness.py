"""Self-checks of the harness itself (no tunnel binaries needed): the origin's endpoints,
the response parser, and the v1 client against a minimal fake v1 core."""
import hashlib
import io
import json
import socket
import ssl
import subprocess
import threading

import pytest

from harness import client, payload, v1client
from harness.procs import Origin


@pytest.fixture
def plain_origin(tmp_path):
    o = Origin("self", tmp_path / "origin.log").start()
    yield o
    o.stop()


def test_origin_endpoints(plain_origin):
    port = plain_origin.port
    r = client.request(port, "x.localhost", "POST", "/echo?a=1", body=b"hi",
                       headers={"X-Test": "1"})
    j = json.loads(r.body)
    assert (r.status, j["method"], j["path"], j["body"], j["headers"]["x-test"]) == \
        (200, "POST", "/echo?a=1", "hi", "1")
    assert r.headers["x-origin"] == "self"
    assert client.request(port, "x", "GET", "/status/418").status == 418

    [c] = client.raw_exchange(port, b"GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n")
    assert c.chunked and c.body == b"".join(payload.chunked_body_parts())

    n = 3 * payload.BLOCK + 17
    d = client.request(port, "x", "GET", "/download?bytes=%d&seed=7" % n)
    assert hashlib.sha256(d.body).hexdigest() == payload.sha256_of(n, 7)

    body = b"".join(payload.blocks(n, 3))
    up = json.loads(client.request(port, "x", "PUT", "/upload", body=body).body)
    assert (up["length"], up["sha256"]) == (n, payload.sha256_of(n, 3))

    # chunked upload with curl, and two pipelined requests on one connection
    f = plain_origin.log_path.parent / "up.bin"
    digest = payload.write_file(f, 100000, 5)
    cp = client.curl("-H", "Transfer-Encoding: chunked", "--data-binary", "@%s" % f,
                     "http://127.0.0.1:%d/upload" % port)
    up = json.loads(cp.stdout)
    assert (up["chunked"], up["length"], up["sha256"]) == (True, 100000, digest)
    rs = client.raw_exchange(port, b"GET /echo?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                             b"GET /echo?n=2 HTTP/1.1\r\nHost: x\r\n\r\n", responses=2)
    assert [json.loads(r.body)["path"] for r in rs] == ["/echo?n=1", "/echo?n=2"]

    s = client.raw_exchange(port, b"GET /slow-stream?chunks=3&interval=0.1 HTTP/1.1\r\n"
                            b"Host: x\r\n\r\n")[0]
    assert s.body == b"".join(payload.slow_stream_part(i, 3) for i in range(3))


def test_parse_metrics():
    text = ('# HELP x y\n# TYPE tunnel_http_requests_total counter\n'
            'tunnel_http_requests_total{code="200"} 3\n'
            'tunnel_http_requests_total{code="404",host="a b"} 2\ntunnel_agents_connected 1\n')
    m = client.parse_metrics(text)
    assert m == {"tunnel_http_requests_total": 5.0, "tunnel_agents_connected": 1.0}


def test_read_response_skips_100_continue():
    f = io.BytesIO(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    r = client.read_response(f)
    assert (r.status, r.body) == (200, b"ok")


def _fake_v1_core(tmp_path):
    """A one-connection fake v1 server: checks AUTH, sends one request, returns what the
    agent answered."""
    crt, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=t",
                    "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    lsock = socket.create_server(("127.0.0.1", 0))
    result = {}

    def serve():
        raw, _ = lsock.accept()
        with ctx.wrap_socket(raw, server_side=True) as s:
            t, fl, sid, p = v1client.read_frame(s)
            result["auth"] = (t, fl, sid, json.loads(p))
            s.sendall(v1client.encode(v1client.AUTH, v1client.ACK, 0,
                                      b'{"success": true, "agent_id": "x", "server_time": 1}'))
            s.sendall(v1client.encode(v1client.OPEN_STREAM, 0, 1,
                                      b"POST /p HTTP/1.1\r\nHost: v1app.localhost\r\n"))
            s.sendall(v1client.encode(v1client.DATA, 0, 1, b"hel"))
            s.sendall(v1client.encode(v1client.DATA, v1client.END_STREAM, 1, b"lo"))
            data, frames = b"", []
            while True:
                t, fl, sid, p = v1client.read_frame(s)
                frames.append((t, fl, sid))
                if t == v1client.HEARTBEAT:
                    s.sendall(v1client.encode(v1client.HEARTBEAT, v1client.ACK, 0))
                elif t == v1client.DATA:
                    data += p
                    if fl & (v1client.END_STREAM | v1client.ERROR):
                        break
            result["response"], result["frames"] = data, frames
            # wait for one heartbeat so the ACK counting is exercised
            while v1client.read_frame(s)[0] != v1client.HEARTBEAT:
                pass
            s.sendall(v1client.encode(v1client.HEARTBEAT, v1client.ACK, 0))
            try:
                result["close"] = v1client.read_frame(s)[0]
            except (ConnectionError, OSError):
                pass

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    return "127.0.0.1:%d" % lsock.getsockname()[1], crt, result, th


@pytest.mark.parametrize("failing", [False, True])
def test_v1_client_against_fake_core(tmp_path, failing):
    addr, crt, result, th = _fake_v1_core(tmp_path)
    app = v1client.failing_app("boom") if failing else v1client.echo_app("v1")
    agent = v1client.V1Agent(addr, crt, "tok", ["v1app"], app, heartbeat=0.2)
    assert agent.connect()["success"] is True
    agent.start()
    client.wait_for(lambda: agent.heartbeat_acks >= 1, 10, what="heartbeat ack")
    agent.close()
    th.join(10)
    t, fl, sid, auth = result["auth"]
    assert (t, fl, sid) == (v1client.AUTH, 0, 0)
    assert auth["metadata"]["subdomains"] == "v1app" and auth["token"] == "tok"
    if failing:
        assert result["response"] == b"boom"
        assert result["frames"][-1] == (v1client.DATA, v1client.ERROR, 1)
    else:
        r = client.read_response(io.BytesIO(result["response"]))
        j = json.loads(r.body)
        assert (r.status, j["method"], j["path"], j["body"]) == (200, "POST", "/p", "hello")
        assert result["frames"][-1] == (v1client.DATA, v1client.END_STREAM, 1)
    assert result.get("close") == v1client.CLOSE
