"""Hostile input on every port ends only that connection (issue #2, test 13). After each
case the core is alive and a normal tunnel request still works."""
import json
import os
import select
import socket
import struct
import time

import pytest

from harness import client, v1client


def assert_still_serving(core):
    assert core.alive(), "core died:\n" + core.tail()
    r = core.request("app", "GET", "/echo", timeout=10)
    assert r.status == 200 and json.loads(r.body)["origin"] == "A", r.text()


def closed_by_peer(sock, timeout):
    """Reads until the peer closes; returns the bytes read. Fails if still open at timeout."""
    sock.settimeout(timeout)
    got = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                return got
            got += data
    except (ConnectionResetError, BrokenPipeError):
        return got
    except socket.timeout:
        pass
    raise AssertionError("connection still open after %.0fs (read %r)" % (timeout, got[:200]))


@pytest.mark.parametrize("junk", [
    os.urandom(4096),
    b"GET / HTTP/1.1\r\nHost: app.localhost\r\n\r\n",
    b"\x16\x03\x01\xff\xff" + b"\x00" * 100,  # a TLS record header announcing 64 KiB
], ids=["random-bytes", "plain-http", "bogus-tls-record"])
def test_garbage_on_agent_port(core, app, junk):
    host, port = core.agent_addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
    try:
        s.sendall(junk)
    except (ConnectionResetError, BrokenPipeError):
        pass
    closed_by_peer(s, 15)
    s.close()
    assert_still_serving(core)


def test_huge_frame_length_after_auth(core, app):
    agent = v1client.V1Agent(core.agent_addr, core.ca, core.tokens[0], ["bigframe"],
                             v1client.echo_app("x"))
    assert agent.connect()["success"] is True
    # announces a 4 GiB frame: must be refused from the length alone, without allocating
    agent.send_raw(struct.pack(">I", 0xFFFFFFFF) + b"RT\x01\x03\x00\x00\x00\x00\x01" + b"x" * 1000)
    try:
        closed_by_peer(agent.sock, 15)
    except OSError:
        pass  # a TLS alert or reset is a close as well
    agent.sock.close()
    assert_still_serving(core)


@pytest.mark.parametrize("raw", [
    b"THIS IS NOT HTTP\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: abc\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: app.localhost\r\nBad Header Name: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    # llhttp 8.1 reads CR + any byte as a line end and undoes obs-fold after reading framing
    # fields; the core refuses both (see docs/adr/0001-llhttp-message-boundaries.md)
    b"GET /echo HTTP/1.1\r\nHost: app.localhost\r\n\rX",
    b"POST /echo HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: chunked\r\n ,\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
], ids=["not-http", "bad-content-length", "space-in-header-name", "two-content-lengths",
        "bare-cr-ends-head", "folded-transfer-encoding"])
def test_invalid_http_is_400(core, app, raw):
    rs = client.raw_exchange(core.http_port, raw, timeout=10)
    assert rs and rs[0].status == 400, rs
    assert_still_serving(core)


def test_bad_line_ends_are_named_on_the_error_page(core, app):
    rs = client.raw_exchange(core.http_port, b"GET /echo HTTP/1.1\r\nHost: app.localhost\r\n"
                             b"X-Empty:\rY: z\r\n\r\n", timeout=10)
    assert rs and rs[0].status == 400 and b"CR not followed by LF at byte 50" in rs[0].body, rs
    rs = client.raw_exchange(core.http_port, b"GET /echo HTTP/1.1\r\nHost: app.localhost\r\n"
                             b"X-Fold: a\r\n\tb\r\n\r\n", timeout=10)
    assert rs and rs[0].status == 400 and b"obsolete line folding" in rs[0].body, rs


def test_bare_cr_in_chunk_framing_is_400_and_ends_the_exchange(core, app):
    """The head reaches the app before the body is read; a chunk-size line ending in a bare CR
    (llhttp alone takes "5\\rX" as a line end) then cancels the exchange with a 400 naming the
    byte and closes the connection, so the request pipelined behind it is never served."""
    raw = (b"POST /upload HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\rXhello\r\n0\r\n\r\n"
           b"GET /echo?smuggled=1 HTTP/1.1\r\nHost: app.localhost\r\n\r\n")
    rs = client.raw_exchange(core.http_port, raw, timeout=15, responses=2)
    assert [r.status for r in rs] == [400], [(r.status, r.body[:300]) for r in rs]
    assert b"not valid HTTP/1.1: CR not followed by LF at byte 76" in rs[0].body, rs[0].body
    assert "bad request body: CR not followed by LF at byte 76" in core.tail()
    assert_still_serving(core)


def test_chunk_data_without_crlf_is_400_and_ends_the_exchange(core, app):
    """Issue 25: llhttp alone skips any two bytes after chunk data ("helloXY"); the core
    refuses them, naming the byte, and the request pipelined behind is never served."""
    raw = (b"POST /upload HTTP/1.1\r\nHost: app.localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhelloXY0\r\n\r\n"
           b"GET /echo?smuggled=1 HTTP/1.1\r\nHost: app.localhost\r\n\r\n")
    rs = client.raw_exchange(core.http_port, raw, timeout=15, responses=2)
    assert [r.status for r in rs] == [400], [(r.status, r.body[:300]) for r in rs]
    assert b"chunk data not followed by CRLF" in rs[0].body, rs[0].body
    assert b"at byte 82" in rs[0].body, rs[0].body
    assert_still_serving(core)


@pytest.mark.parametrize("raw,named", [
    (b"GET /echo HTTP/1.1\r\nHost: app.localhost\r\nHost: other.localhost\r\n\r\n",
     b"two Host fields at byte 46"),
    (b"GET /echo HTTP/1.1\r\nhost: app.localhost\r\nX: y\r\nHOST: app.localhost\r\n\r\n",
     b"two Host fields at byte"),
    (b"GET http://u@app.localhost/echo HTTP/1.1\r\nHost: app.localhost\r\n\r\n",
     b"userinfo in the absolute-form target"),
    (b"GET ftp://app.localhost/echo HTTP/1.1\r\nHost: app.localhost\r\n\r\n",
     b"scheme other than http or https"),
], ids=["two-host-fields", "two-host-fields-any-case", "absolute-form-userinfo",
        "absolute-form-ftp"])
def test_ambiguous_host_is_400_naming_the_problem(core, app, raw, named):
    """RFC 9112 3.2: two Host fields are a 400 (the core routed by the first and the app got
    both). An absolute-form target that names no usable host is one too."""
    rs = client.raw_exchange(core.http_port, raw, timeout=10)
    assert rs and rs[0].status == 400 and named in rs[0].body, [(r.status, r.body[:500]) for r in rs]
    assert_still_serving(core)


def test_header_over_64k_is_431(core, app):
    big = b"GET /echo HTTP/1.1\r\nHost: app.localhost\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\n\r\n"
    s = socket.create_connection(("127.0.0.1", core.http_port), timeout=10)
    try:
        try:
            s.sendall(big)
        except (ConnectionResetError, BrokenPipeError):
            pass  # the core may answer and close before reading everything
        try:
            r = client.read_response(s.makefile("rb"))
        except ConnectionResetError:
            raise AssertionError("connection reset before a 431 arrived (the core must answer "
                                 "and drain before closing)") from None
    finally:
        s.close()
    assert r is not None and r.status == 431, r
    assert_still_serving(core)


def test_unknown_hostname_is_404_naming_it(core, app):
    r = core.request("no-such-tunnel", "GET", "/")
    assert r.status == 404
    assert b"no-such-tunnel.localhost" in r.body, r.body[:500]
    assert_still_serving(core)


SLOW_CONFIG = """\
domain: localhost
listen: {{agent: "{agent}", http: "{http}", https: "{https}", admin: "{admin}"}}
limits: {{header_timeout: 2s}}
accounts:
  - {{name: default, tokens: ["test-agent-token"], subdomains: ["*"]}}
"""


def test_slow_loris_is_cut_off(tunnel, origin):
    core = tunnel.core(config_text=SLOW_CONFIG)
    tunnel.agent(core, origin.addr, subdomain="app")
    s = socket.create_connection(("127.0.0.1", core.http_port), timeout=5)
    s.sendall(b"GET /echo HTTP/1.1\r\n")
    t0 = time.monotonic()
    cut = None
    for byte in b"Host: app.localhost\r\nX-Slow: " + b"z" * 30:
        time.sleep(1)
        try:
            s.sendall(bytes([byte]))
            readable, _, _ = select.select([s], [], [], 0)
            while readable and s.recv(65536):  # a 408 page may come before the close
                readable, _, _ = select.select([s], [], [], 0.2)
            if readable:
                cut = time.monotonic() - t0
        except OSError:  # reset or broken pipe: cut off as well
            cut = time.monotonic() - t0
        if cut is not None or time.monotonic() - t0 > 12:
            break
    s.close()
    assert cut is not None, "a client sending one header byte per second was never cut off"
    assert cut <= 2 + 3, "cut off after %.1fs with header_timeout 2s" % cut
    assert_still_serving(core)
