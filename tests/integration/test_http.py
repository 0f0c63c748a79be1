"""HTTP through one tunnel: GET with forwarding headers, POST, keep-alive, pipelining,
chunked bodies both ways (issue #2, tests 1-3)."""
import http.client
import json
import re

from harness import client, payload


def test_get_forwarding_headers_and_request_id(core, app):
    r = core.request("app", "GET", "/echo?x=1")
    assert r.status == 200, r.text()
    j = json.loads(r.body)
    assert (j["origin"], j["method"], j["path"]) == ("A", "GET", "/echo?x=1")
    h = j["headers"]
    assert "127.0.0.1" in h.get("x-forwarded-for", ""), h
    assert h.get("x-forwarded-proto") == "http", h
    assert h.get("x-forwarded-host", "").split(":")[0] == "app.localhost", h
    assert h.get("host", "").split(":")[0] == "app.localhost", h
    rid = h.get("x-request-id", "")
    assert rid, "the app saw no X-Request-Id: %r" % h
    assert r.headers.get("x-request-id") == rid, r.headers

    # every request gets its own id
    r2 = json.loads(core.request("app", "GET", "/echo").body)
    assert r2["headers"]["x-request-id"] != rid

    # an id a visitor sent is not adopted (only a trusted proxy's is: test_pipeline.py); the
    # core's own id goes both ways
    r3 = core.request("app", "GET", "/echo", headers={"X-Request-Id": "client-id-42"})
    rid3 = json.loads(r3.body)["headers"]["x-request-id"]
    assert rid3 != "client-id-42"
    assert r3.headers.get("x-request-id") == rid3

    # status codes of the app pass through unchanged; host matching ignores case and port
    assert core.request("app", "GET", "/status/418").status == 418
    r4 = client.request(core.http_port, "APP.LocalHost:%d" % core.http_port, "GET", "/echo")
    assert r4.status == 200 and json.loads(r4.body)["origin"] == "A"

    # curl as a client, resolving app.localhost itself
    cp = client.curl("-i", core.url("app", "/headers"))
    assert cp.returncode == 0, cp.stderr
    assert re.match(rb"HTTP/1.1 200", cp.stdout), cp.stdout[:300]


def test_post_keepalive_and_pipelining(core, app):
    body = b"hello tunnel " * 1000
    r = core.request("app", "POST", "/echo", body=body, headers={"Content-Type": "text/plain"})
    j = json.loads(r.body)
    assert (r.status, j["method"], j["body"].encode("latin-1")) == (200, "POST", body)

    # keep-alive: five requests on one client connection
    conn = http.client.HTTPConnection("127.0.0.1", core.http_port, timeout=30)
    try:
        sock = None
        for i in range(5):
            conn.request("POST", "/echo?i=%d" % i, body=b"n%d" % i, headers={"Host": "app.localhost"})
            resp = conn.getresponse()
            j = json.loads(resp.read())
            assert (resp.status, j["path"], j["body"]) == (200, "/echo?i=%d" % i, "n%d" % i)
            if sock is None:
                sock = conn.sock
            assert conn.sock is sock and sock is not None, "connection %d was not reused" % i
    finally:
        conn.close()

    # pipelining: two requests in one write, two responses in order
    two = (b"GET /echo?n=1 HTTP/1.1\r\nHost: app.localhost\r\n\r\n"
           b"POST /echo?n=2 HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 3\r\n\r\nabc")
    rs = client.raw_exchange(core.http_port, two, timeout=30, responses=2)
    assert [r.status for r in rs] == [200, 200], rs
    got = [json.loads(r.body) for r in rs]
    assert [(g["method"], g["path"], g["body"]) for g in got] == \
        [("GET", "/echo?n=1", ""), ("POST", "/echo?n=2", "abc")]


def test_chunked_request_and_response(core, app, tmp_path):
    f = tmp_path / "body.bin"
    n = 3 * payload.BLOCK + 12345
    digest = payload.write_file(f, n, seed=11)
    cp = client.curl("-H", "Transfer-Encoding: chunked", "--data-binary", "@%s" % f,
                     core.url("app", "/upload"), timeout=120)
    assert cp.returncode == 0, cp.stderr
    up = json.loads(cp.stdout)
    assert (up["length"], up["sha256"]) == (n, digest), up

    # a chunked response arrives whole, and the connection stays usable after it
    req = b"GET /chunked HTTP/1.1\r\nHost: app.localhost\r\n\r\n"
    rs = client.raw_exchange(core.http_port, req + b"GET /echo HTTP/1.1\r\nHost: app.localhost\r\n\r\n",
                             timeout=30, responses=2)
    assert len(rs) == 2, "second response on the same connection missing"
    assert rs[0].status == 200 and rs[0].body == b"".join(payload.chunked_body_parts())
    assert rs[1].status == 200 and json.loads(rs[1].body)["path"] == "/echo"

    # curl decodes the chunked response the same way
    cp = client.curl(core.url("app", "/chunked"))
    assert cp.returncode == 0 and cp.stdout == b"".join(payload.chunked_body_parts()), cp.stderr


def test_transfer_encoding_reaches_the_app_normalised(core, app):
    """Issue 25: "identity, chunked" (and two fields) framed the body as chunked for the core
    but went to the app verbatim; the app now gets one "Transfer-Encoding: chunked"."""
    for te in (b"Transfer-Encoding: identity, chunked\r\n",
               b"Transfer-Encoding: IDENTITY\r\nTransfer-Encoding: Chunked\r\n"):
        raw = (b"POST /echo HTTP/1.1\r\nHost: app.localhost\r\n" + te +
               b"\r\n3\r\nabc\r\n0\r\n\r\n")
        rs = client.raw_exchange(core.http_port, raw, timeout=15)
        assert rs and rs[0].status == 200, [(r.status, r.body[:300]) for r in rs]
        echo = json.loads(rs[0].body)
        got = [v for k, v in echo["header_list"] if k.lower() == "transfer-encoding"]
        assert got == ["chunked"], (te, echo["header_list"])
        assert echo["body"] == "abc", echo
