"""The agent's request inspector (issue #20): exchanges through a real core and agent appear
in the inspector's API (ngrok's shapes) with their exact heads and bodies; bodies are cut at
the cap and say so; credentials are redacted; DELETE clears; /api/tunnels and /api/status;
the listener is loopback only and takes the next port when its own is taken."""
import base64
import http.client
import json
import re
import socket
import time

from harness import payload, procs

CAP = 5000


def start(tunnel, extra=()):
    core = tunnel.core()
    origin = tunnel.origin()
    agent = tunnel.agent(core, "127.0.0.1:%d" % origin.port, subdomain="insp",
                         extra_args=["--inspect-addr", "127.0.0.1:0",
                                     "--inspect-body-cap", str(CAP)] + list(extra))
    m = agent.wait_output(re.escape("request inspector on http://") + r"(127\.0\.0\.1:\d+)")
    return core, agent, m.group(1)


def api(addr, method, path, host=None):
    conn = http.client.HTTPConnection(*addr.split(":"), timeout=10)
    try:
        conn.request(method, path, headers={"Host": host or addr})
        r = conn.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data else None)
    finally:
        conn.close()


def entries(addr, n):
    """The newest n entries once the inspector has them (each is added when it ends)."""
    for _ in range(100):
        status, body = api(addr, "GET", "/api/requests/http?limit=%d" % n)
        assert status == 200
        if len(body["requests"]) >= n:
            return body["requests"]
        time.sleep(0.05)
    raise AssertionError("the inspector has %d entries, wanted %d" % (len(body["requests"]), n))


def raw(part):
    return base64.b64decode(part["raw"])


def body_bytes(part):
    return base64.b64decode(part["body"]["base64"])


def test_exchanges_appear_with_exact_heads_and_bodies(tunnel):
    core, agent, addr = start(tunnel)
    assert api(addr, "DELETE", "/api/requests/http")[0] == 204  # the harness's routing probe
    blob = bytes(range(256)) * 40  # 10240 bytes, binary, over the cap
    r = core.request("insp", "POST", "/echo?x=1", body=b"hello inspector",
                     headers={"Content-Type": "text/plain", "Authorization": "Bearer s3cret",
                              "X-Test": "one"})
    assert r.status == 200
    assert core.request("insp", "PUT", "/upload", body=blob).status == 200
    assert core.request("insp", "GET", "/download?bytes=%d" % (3 * CAP)).status == 200
    assert core.request("insp", "GET", "/chunked").status == 200
    assert core.request("insp", "HEAD", "/echo").status == 200
    assert core.request("insp", "GET", "/status/204").status == 204
    got = {(e["request"]["method"], e["request"]["uri"]): e for e in entries(addr, 6)}
    post = got[("POST", "/echo?x=1")]
    upload = got[("PUT", "/upload")]
    download = got[("GET", "/download?bytes=%d" % (3 * CAP))]
    chunked = got[("GET", "/chunked")]
    head = got[("HEAD", "/echo")]
    status204 = got[("GET", "/status/204")]

    # POST: the head as the app got it, the body, redaction, ngrok's fields.
    assert post["request"]["method"] == "POST"
    assert post["request"]["uri"] == "/echo?x=1"
    assert post["request"]["headers"]["X-Test"] == ["one"]
    assert post["request"]["headers"]["Authorization"] == ["[redacted]"]
    assert b"s3cret" not in raw(post["request"])
    assert raw(post["request"]).endswith(b"\r\n\r\nhello inspector")
    assert post["request"]["body"]["text"] == "hello inspector"
    assert post["request"]["body"]["truncated"] is False
    echoed = json.loads(body_bytes(post["response"]))
    assert echoed["body"] == "hello inspector"
    assert echoed["headers"]["x-test"] == "one"
    assert post["response"]["status_code"] == 200
    assert post["response"]["status"] == "200 OK"
    assert post["tunnel_name"].startswith("insp.")
    assert post["remote_addr"].startswith("127.0.0.1")
    assert post["duration"] > 0
    assert post["id"] and post["uri"] == "/api/requests/http/" + post["id"]

    # A binary upload cut at the cap; its whole size is known.
    assert upload["request"]["body"]["size"] == len(blob)
    assert upload["request"]["body"]["captured"] == CAP
    assert upload["request"]["body"]["truncated"] is True
    assert upload["request"]["body"]["kind"] == "binary"
    assert body_bytes(upload["request"]) == blob[:CAP]

    # A binary download cut at the cap: the first CAP bytes exactly.
    want = b"".join(payload.blocks(3 * CAP))
    assert download["response"]["body"]["size"] == 3 * CAP
    assert body_bytes(download["response"]) == want[:CAP]
    assert download["response"]["headers"]["Content-Length"] == [str(3 * CAP)]

    # Chunked: raw keeps the framing, the body is the data, cut at the cap.
    parts = payload.chunked_body_parts()
    assert raw(chunked["response"]).split(b"\r\n\r\n", 1)[1].startswith(
        b"%x\r\n%s\r\n" % (len(parts[0]), parts[0]))
    assert body_bytes(chunked["response"]) == b"".join(parts)[:len(body_bytes(chunked["response"]))]
    assert chunked["response"]["body"]["truncated"] is True

    # HEAD and 204: heads only.
    assert head["request"]["method"] == "HEAD"
    assert head["response"]["status_code"] == 200
    assert body_bytes(head["response"]) == b""
    assert status204["response"]["status_code"] == 204
    assert status204["response"]["body"]["size"] == 0

    # One entry by id; an unknown id is a 404 naming it.
    status, one = api(addr, "GET", "/api/requests/http/" + post["id"])
    assert status == 200 and one["request"]["body"]["text"] == "hello inspector"
    status, err = api(addr, "GET", "/api/requests/http/ex_999999")
    assert status == 404 and "ex_999999" in err["msg"]

    # Tunnels and status.
    status, tunnels = api(addr, "GET", "/api/tunnels")
    assert status == 200
    assert tunnels["tunnels"][0]["name"] == post["tunnel_name"]
    assert tunnels["tunnels"][0]["public_url"].startswith("http")
    assert tunnels["tunnels"][0]["config"]["addr"].endswith(":%d" % tunnel.all[1].port)
    status, st = api(addr, "GET", "/api/status")
    assert status == 200 and st["inspector"]["address"] == addr
    assert st["inspector"]["entries"] == 6 and st["inspector"]["body_cap"] == CAP

    # tunnel_name filters; DELETE clears.
    status, none = api(addr, "GET", "/api/requests/http?tunnel_name=nope")
    assert none["requests"] == []
    assert api(addr, "DELETE", "/api/requests/http")[0] == 204
    assert api(addr, "GET", "/api/requests/http")[1]["requests"] == []

    # A page from another origin (DNS rebinding) cannot read it.
    assert api(addr, "GET", "/api/requests/http", host="evil.example")[0] == 403


def test_off_next_port_and_loopback_only(tunnel):
    core = tunnel.core()
    origin = tunnel.origin()
    # Its port taken: the next one.
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    a = tunnel.agent(core, "127.0.0.1:%d" % origin.port, subdomain="insp2", name="a-next",
                     extra_args=["--inspect-addr", "127.0.0.1:%d" % port])
    m = a.wait_output(re.escape("request inspector on http://") + r"127\.0\.0\.1:(\d+)")
    assert int(m.group(1)) > port
    taken.close()
    # Off: no listener line, traffic flows.
    off = tunnel.agent(core, "127.0.0.1:%d" % origin.port, subdomain="insp3", name="a-off",
                       extra_args=["--inspect=false"])
    assert core.request("insp3", "GET", "/echo").status == 200
    assert "request inspector" not in off.output()
    # Not loopback: refused at start, with the reason.
    bad = tunnel.add(procs.Agent(core, "127.0.0.1:%d" % origin.port, subdomain="insp4",
                                 name="a-bad", extra_args=["--inspect-addr", "0.0.0.0:4040"]))
    bad.start()
    assert bad.wait_exit() == 2
    assert "not a loopback address" in bad.output()


def test_replay_as_it_was_and_edited_reaches_the_app(tunnel):
    core, agent, addr = start(tunnel)
    r = core.request("insp", "POST", "/echo?r=1", body=b"replay me",
                     headers={"Content-Type": "text/plain", "X-Test": "orig"})
    assert r.status == 200
    orig = [e for e in entries(addr, 2) if e["request"]["uri"] == "/echo?r=1"][0]

    def replay(body):
        conn = http.client.HTTPConnection(*addr.split(":"), timeout=10)
        conn.request("POST", "/api/requests/http", body=json.dumps(body),
                     headers={"Host": addr, "Content-Type": "application/json"})
        resp = conn.getresponse()
        out = resp.status, json.loads(resp.read())
        conn.close()
        return out

    status, again = replay({"id": orig["id"]})
    assert status == 201, again
    assert again["replay_of"] == orig["id"] and again["id"] != orig["id"]
    echoed = json.loads(body_bytes(again["response"]))
    assert echoed["method"] == "POST" and echoed["path"] == "/echo?r=1"
    assert echoed["body"] == "replay me" and echoed["headers"]["x-test"] == "orig"
    # The app got exactly the bytes of the original request.
    assert raw(again["request"]) == raw(orig["request"])

    status, edited = replay({"id": orig["id"], "method": "PUT", "uri": "/echo?r=2",
                             "headers": {"X-Test": "edited", "X-Added": "yes"},
                             "body": "new body"})
    assert status == 201, edited
    echoed = json.loads(body_bytes(edited["response"]))
    assert echoed["method"] == "PUT" and echoed["path"] == "/echo?r=2"
    assert echoed["body"] == "new body"
    assert echoed["headers"]["x-test"] == "edited" and echoed["headers"]["x-added"] == "yes"
    assert echoed["headers"]["content-length"] == "8"
    # Both replays are in the list, linked to their original.
    listed = api(addr, "GET", "/api/requests/http")[1]["requests"]
    assert [e["id"] for e in listed if e.get("replay_of") == orig["id"]] == \
        [edited["id"], again["id"]]

    status, err = replay({"id": "ex_424242"})
    assert status == 404 and "ex_424242" in err["msg"]


def test_live_updates_stream_each_request(tunnel):
    core, agent, addr = start(tunnel)
    host, port = addr.split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    try:
        s.sendall(b"GET /api/requests/http/stream HTTP/1.1\r\nHost: %s\r\n\r\n" % addr.encode())
        got = b""
        while b"\r\n\r\n" not in got:
            got += s.recv(4096)
        head, got = got.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head

        def next_event():
            nonlocal got
            while b"\n\n" not in got:
                data = s.recv(65536)
                assert data, "the stream closed"
                got += data
            block, got = got.split(b"\n\n", 1)
            fields = {}
            for line in block.decode().split("\n"):
                if line and not line.startswith(":"):
                    k, _, v = line.partition(": ")
                    fields[k] = v
            return fields

        assert core.request("insp", "POST", "/echo?live=1", body=b"x" * 100).status == 200
        event = next_event()
        while event.get("event") != "request":
            event = next_event()  # "retry:" and keep-alives first
        data = json.loads(event["data"])
        assert data["request"]["method"] == "POST" and data["request"]["uri"] == "/echo?live=1"
        assert data["request"]["body"]["size"] == 100
        assert data["response"]["status_code"] == 200
        assert event["id"] == data["id"] and data["uri"] == "/api/requests/http/" + data["id"]
        assert api(addr, "GET", "/api/status")[1]["inspector"]["streams"] == 1
        assert api(addr, "DELETE", "/api/requests/http")[0] == 204
        assert next_event()["event"] == "cleared"
    finally:
        s.close()


def test_har_export_import_and_replay(tunnel):
    core, agent, addr = start(tunnel)
    assert api(addr, "DELETE", "/api/requests/http")[0] == 204
    assert core.request("insp", "POST", "/echo?har=1", body=b"har body",
                        headers={"Content-Type": "text/plain",
                                 "Authorization": "Bearer s3cret"}).status == 200
    orig = entries(addr, 1)[0]
    status, har = api(addr, "GET", "/api/requests/http.har?ids=" + orig["id"])
    assert status == 200 and har["log"]["version"] == "1.2"
    [entry] = har["log"]["entries"]
    assert entry["request"]["method"] == "POST"
    assert entry["request"]["url"].endswith("/echo?har=1")
    assert entry["request"]["postData"]["text"] == "har body"
    assert {"name": "Authorization", "value": "[redacted]"} in entry["request"]["headers"]
    assert entry["response"]["status"] == 200
    # Unredacted on request, then imported: a new entry that replays to the same app.
    status, full = api(addr, "GET", "/api/requests/http.har?redact=false")
    assert status == 200 and len(full["log"]["entries"]) == 1
    conn = http.client.HTTPConnection(*addr.split(":"), timeout=10)
    conn.request("POST", "/api/requests/http/import", body=json.dumps(full),
                 headers={"Host": addr, "Content-Type": "application/json"})
    resp = conn.getresponse()
    imported = json.loads(resp.read())
    conn.close()
    assert resp.status == 201 and imported["imported"] == 1
    [new_id] = imported["ids"]
    status, again = api(addr, "GET", "/api/requests/http.har?redact=false&ids=" + new_id)
    first = dict(full["log"]["entries"][0])
    second = dict(again["log"]["entries"][0])
    first.pop("_id"), second.pop("_id")
    assert first == second
    conn = http.client.HTTPConnection(*addr.split(":"), timeout=10)
    conn.request("POST", "/api/requests/http", body=json.dumps({"id": new_id}),
                 headers={"Host": addr, "Content-Type": "application/json"})
    resp = conn.getresponse()
    replayed = json.loads(resp.read())
    conn.close()
    assert resp.status == 201, replayed
    echoed = json.loads(body_bytes(replayed["response"]))
    assert echoed["body"] == "har body" and echoed["path"] == "/echo?har=1"
    assert echoed["headers"]["authorization"] == "Bearer s3cret"
    # A broken HAR is refused with the place named.
    conn = http.client.HTTPConnection(*addr.split(":"), timeout=10)
    conn.request("POST", "/api/requests/http/import", body='{"log": {"entries": [{}]}}',
                 headers={"Host": addr})
    resp = conn.getresponse()
    err = json.loads(resp.read())
    conn.close()
    assert resp.status == 400 and "entries[0]" in err["msg"]
    # A HAR over 1 MiB (the bound of every other request body) imports too: 1500 entries.
    big = dict(full)
    big["log"] = dict(full["log"], entries=full["log"]["entries"] * 1500)
    data = json.dumps(big)
    assert len(data) > 1 << 20
    conn = http.client.HTTPConnection(*addr.split(":"), timeout=30)
    conn.request("POST", "/api/requests/http/import", body=data, headers={"Host": addr})
    resp = conn.getresponse()
    answer = json.loads(resp.read())
    conn.close()
    assert resp.status == 201 and answer["imported"] == 1500


def test_password_needed_off_loopback(tunnel):
    core = tunnel.core()
    origin = tunnel.origin()
    agent = tunnel.agent(core, "127.0.0.1:%d" % origin.port, subdomain="inspw", name="a-pw",
                         extra_args=["--inspect-addr", "0.0.0.0:0",
                                     "--inspect-password", "hunter2"])
    m = agent.wait_output(re.escape("request inspector on http://") + r"0\.0\.0\.0:(\d+)")
    port = m.group(1)
    # Never logged (the harness's own "=== start" line echoes the command).
    assert not [line for line in agent.output().splitlines()
                if "hunter2" in line and not line.startswith("=== start")]

    def status(headers):
        conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
        try:
            conn.request("GET", "/api/status", headers=dict({"Host": "box.lan:" + port}, **headers))
            r = conn.getresponse()
            r.read()
            return r.status, r.getheader("WWW-Authenticate")
        finally:
            conn.close()

    st, challenge = status({})
    assert st == 401 and challenge.startswith("Basic")
    assert status({"Authorization": "Bearer wrong"})[0] == 401
    assert status({"Authorization": "Bearer hunter2"})[0] == 200
    basic = base64.b64encode(b"anyone:hunter2").decode()
    assert status({"Authorization": "Basic " + basic})[0] == 200


def test_websocket_frames_both_ways(tunnel):
    """A real WebSocket echo app: the upgraded exchange shows its frames, unmasked, each way."""
    import asyncio

    import websockets

    from harness import client
    from harness.raw import WsEchoServer

    core = tunnel.core()
    ws_server = tunnel.add(WsEchoServer(tunnel.workdir)).start()
    agent = tunnel.agent(core, "127.0.0.1:%d" % ws_server.port, subdomain="wsi", wait=False,
                         extra_args=["--inspect-addr", "127.0.0.1:0"])
    addr = agent.wait_output(re.escape("request inspector on http://") +
                             r"(127\.0\.0\.1:\d+)").group(1)
    client.wait_for(lambda: core.request("wsi", path="/").status not in (404, 503, 502), 20,
                    what="ws tunnel routed")

    async def talk():
        uri = "ws://wsi.localhost:%d/chat" % core.http_port
        async with websockets.connect(uri, host="127.0.0.1", port=core.http_port,
                                      ping_interval=None, compression=None) as ws:
            await ws.send("hello ws")
            assert await ws.recv() == "hello ws"
            await ws.send(bytes(range(200)))
            assert await ws.recv() == bytes(range(200))
            await ws.send("x" * 70000)  # a 64-bit length, its payload cut at the cap
            assert len(await ws.recv()) == 70000

    asyncio.run(talk())
    for _ in range(100):
        status, body = api(addr, "GET", "/api/requests/http?path=/chat")
        if body["requests"]:
            break
        time.sleep(0.05)
    assert len(body["requests"]) == 1, body
    e = body["requests"][0]
    assert e["response"]["status_code"] == 101
    frames = e["websocket_frames"]
    got = [(f["direction"], f["opcode_name"], f["size"]) for f in frames]
    to_app = [g for g in got if g[0] == "to_app"]
    from_app = [g for g in got if g[0] == "from_app"]
    assert to_app == [("to_app", "text", 8), ("to_app", "binary", 200), ("to_app", "text", 70000),
                      ("to_app", "close", 2)], got
    assert from_app == [("from_app", "text", 8), ("from_app", "binary", 200),
                        ("from_app", "text", 70000), ("from_app", "close", 2)], got
    first = frames[0]
    assert first["direction"] == "to_app" and first["text"] == "hello ws" and first["masked"]
    echo = next(f for f in frames if f["direction"] == "from_app")
    assert echo["text"] == "hello ws" and not echo["masked"]
    binary = next(f for f in frames if f["opcode_name"] == "binary")
    assert base64.b64decode(binary["base64"]) == bytes(range(200))
    big = next(f for f in frames if f["size"] == 70000)
    assert big["truncated"] and len(big["text"]) == 4096
    assert next(f for f in frames if f["opcode_name"] == "close")["close_code"] == 1000
    assert all(f["time"] is not None and f["time"] > 0 for f in frames)
    assert e["websocket"]["to_app"]["frames"] == 4 and e["websocket"]["from_app"]["frames"] == 4
