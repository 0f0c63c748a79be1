"""Limits of issue #3: bandwidth per tunnel and per account (token buckets, both directions,
measured within 10 %), idle timeouts for raw TCP and upgraded connections, server-sent events
and long polls that stream without buffering, and UDP datagrams above the core's limit."""
import asyncio
import http.client
import json
import re
import socket
import threading
import time

from harness import client
from harness.raw import PortAgent, Server, WsEchoServer, core_config

MIB = 1 << 20


def _report(capsys, text):
    with capsys.disabled():
        print("\n[limits] " + text)


def limits_core(tunnel, account_extra="", extra=""):
    account = "name: default\ntokens: [test-agent-token]\n" + account_extra
    return tunnel.core(config_text=core_config([account], extra))


def port_agent(tunnel, core, kind, target_port, name, extra_args=()):
    a = tunnel.add(PortAgent(core, kind, "127.0.0.1:%d" % target_port, name=name,
                             extra_args=list(extra_args))).start()
    return a, a.wait_forwarding(kind)[1]


def within(rate, target, tolerance=0.10):
    return abs(rate - target) <= tolerance * target


def download_rate(port, size):
    """Reads `size` bytes from a tcp-source through the tunnel; bytes/s from first to last."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        n, first = 0, None
        while n < size:
            data = s.recv(1 << 16)
            if not data:
                break
            first = first or time.monotonic()
            n += len(data)
        last = time.monotonic()
    assert n == size, "got %d of %d bytes" % (n, size)
    return n / (last - first)


def upload_rate(port, sink, size):
    """Sends `size` bytes to a tcp-sink through the tunnel; the rate the sink measured."""
    runs = sink.output().count("sink received")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"u" * size)
        s.shutdown(socket.SHUT_WR)
        assert s.recv(10) == b"ok"
    client.wait_for(lambda: sink.output().count("sink received") > runs, 30, what="sink report")
    n, seconds = re.findall(r"sink received (\d+) bytes in ([0-9.]+) s", sink.output())[-1]
    assert int(n) == size
    return int(n) / float(seconds)


def test_tcp_tunnel_bandwidth_limit_both_directions(tunnel, capsys):
    """An agent-requested limit of 1 MiB/s on a tcp tunnel: 4 MiB each way at 1 MiB/s +-10 %,
    while an unlimited tunnel of the same account runs at full speed."""
    core = limits_core(tunnel)
    size = 4 * MIB
    source = tunnel.add(Server(tunnel.workdir, "tcp-source", name=str(size))).start()
    sink = tunnel.add(Server(tunnel.workdir, "tcp-sink", name="sink")).start()
    src_agent, src_port = port_agent(tunnel, core, "tcp", source.port, "agent-src",
                                     ["--bandwidth", "1MiB/s"])
    src_agent.wait_output(r"limited to 1 MiB/s each way")
    _, sink_port = port_agent(tunnel, core, "tcp", sink.port, "agent-sink",
                              ["--bandwidth", "1MiB/s"])
    _, free_port = port_agent(tunnel, core, "tcp", source.port, "agent-free")

    down = download_rate(src_port, size)
    up = upload_rate(sink_port, sink, size)
    free = download_rate(free_port, size)
    _report(capsys, "tcp 1 MiB/s limit: download %.3f MiB/s, upload %.3f MiB/s; unlimited "
            "tunnel %.1f MiB/s" % (down / MIB, up / MIB, free / MIB))
    assert within(down, MIB), down / MIB
    assert within(up, MIB), up / MIB
    assert free > 4 * MIB, "the limit leaked onto another tunnel: %.1f MiB/s" % (free / MIB)


def test_account_bandwidth_is_shared_by_its_tunnels(tunnel, capsys):
    """bandwidth.per_account 1MiB/s: two tunnels downloading at once share 1 MiB/s; the
    account's per_tunnel limit caps what an agent may ask for."""
    core = limits_core(tunnel, "bandwidth:\n  per_account: 1MiB/s\n  per_tunnel: 10MiB/s\n")
    size = 2 * MIB
    source = tunnel.add(Server(tunnel.workdir, "tcp-source", name=str(size))).start()
    a1, p1 = port_agent(tunnel, core, "tcp", source.port, "agent-1")
    a1.wait_output(r"limited to 10 MiB/s each way")
    a2, p2 = port_agent(tunnel, core, "tcp", source.port, "agent-2", ["--bandwidth", "1GiB/s"])
    a2.wait_output(r"limited to 10 MiB/s each way")  # the account's cap wins

    results = {}

    def fetch(name, port):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            n = 0
            while True:
                data = s.recv(1 << 16)
                if not data:
                    break
                n += len(data)
            results[name] = n

    start = time.monotonic()
    threads = [threading.Thread(target=fetch, args=(n, p)) for n, p in (("a", p1), ("b", p2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    elapsed = time.monotonic() - start
    total = sum(results.values())
    assert total == 2 * size, results
    rate = total / elapsed
    _report(capsys, "account limit 1 MiB/s, two tunnels at once: %.3f MiB/s together"
            % (rate / MIB))
    assert within(rate, MIB), rate / MIB


def test_http_tunnel_bandwidth_limit(tunnel, origin, capsys):
    core = tunnel.core()
    tunnel.agent(core, origin.addr, subdomain="slow", name="agent-slow",
                 extra_args=["--bandwidth", "1MiB/s"])
    size = 4 * MIB
    out = client.curl("-o", "/dev/null", "-w", "%{size_download} %{speed_download}",
                      core.url("slow", "/download?bytes=%d" % size), timeout=60,
                      check=True).stdout.split()
    got, speed = int(out[0]), float(out[1])
    assert got == size
    _report(capsys, "http 1 MiB/s limit: download %.3f MiB/s" % (speed / MIB))
    # curl's speed counts from the request, so the first burst and the head are inside it.
    assert within(speed, MIB), speed / MIB


def test_tcp_idle_timeout_closes_only_idle_connections(tunnel):
    core = limits_core(tunnel, extra="limits:\n  tunnel_idle_timeout: 1s\n")
    echo = tunnel.add(Server(tunnel.workdir, "tcp-echo")).start()
    agent, port = port_agent(tunnel, core, "tcp", echo.port, "agent-echo")
    idle = socket.create_connection(("127.0.0.1", port), timeout=10)
    busy = socket.create_connection(("127.0.0.1", port), timeout=10)
    for s in (idle, busy):
        s.sendall(b"hi\n")
        assert s.recv(10) == b"hi\n"
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:  # 3 s of traffic every 0.3 s on `busy`
        busy.sendall(b"tick\n")
        assert busy.recv(10) == b"tick\n"
        time.sleep(0.3)
    idle.settimeout(5)
    try:
        assert idle.recv(10) == b"", "the idle connection is still open"
    except ConnectionResetError:
        pass
    busy.sendall(b"still\n")
    assert busy.recv(10) == b"still\n"
    idle.close()
    busy.close()
    core.wait_output(r"idle for 1 s \(limits.tunnel_idle_timeout\)")




def test_websocket_outlives_http_idle_timeout_but_not_tunnel_idle_timeout(tunnel):
    """limits.idle_timeout (keep-alive, 1 s here) does not apply after the 101: a WebSocket
    that talks every 0.6 s lives on for 4 s; one that says nothing for the tunnel idle timeout
    (2 s) is closed."""
    core = limits_core(tunnel, extra="limits:\n  idle_timeout: 1s\n  tunnel_idle_timeout: 2s\n")
    ws_server = tunnel.add(WsEchoServer(tunnel.workdir)).start()
    tunnel.agent(core, "127.0.0.1:%d" % ws_server.port, subdomain="ws", wait=False)
    client.wait_for(lambda: core.request("ws", path="/").status not in (404, 503, 502), 20,
                    what="ws tunnel routed")
    import websockets

    async def talk():
        uri = "ws://ws.localhost:%d/" % core.http_port
        kw = dict(host="127.0.0.1", port=core.http_port, ping_interval=None)
        async with websockets.connect(uri, **kw) as chatty, websockets.connect(uri, **kw) as quiet:
            await quiet.send("once")
            assert await quiet.recv() == "once"
            t0 = time.monotonic()
            n = 0
            while time.monotonic() - t0 < 4.0:
                await chatty.send("m%d" % n)
                assert await asyncio.wait_for(chatty.recv(), 5) == "m%d" % n
                n += 1
                await asyncio.sleep(0.6)
            closed = False
            try:
                await asyncio.wait_for(quiet.recv(), 3)
            except websockets.ConnectionClosed:
                closed = True
            return n, closed

    n, quiet_closed = asyncio.run(talk())
    assert n >= 6
    assert quiet_closed, "the silent WebSocket outlived limits.tunnel_idle_timeout"


def test_server_sent_events_and_long_poll_stream_unbuffered(tunnel, origin, capsys):
    core = tunnel.core()
    tunnel.agent(core, origin.addr, subdomain="sse")
    conn = http.client.HTTPConnection("127.0.0.1", core.http_port, timeout=30)
    conn.request("GET", "/sse?events=5&interval=0.5", headers={"Host": core.host("sse"),
                                                                "Accept": "text/event-stream"})
    r = conn.getresponse()
    assert r.status == 200
    assert r.getheader("Content-Type") == "text/event-stream"
    delays = []
    events = 0
    while events < 5:
        line = r.fp.readline()
        assert line, "the stream ended after %d events" % events
        if line.startswith(b"data: "):
            sent = json.loads(line[6:])["sent"]
            delays.append(time.time() - sent)
            events += 1
    conn.close()
    _report(capsys, "SSE: 5 events, worst delivery delay %.1f ms" % (max(delays) * 1000))
    # Each event arrives as it is sent, not when the response ends (2 s later).
    assert max(delays) < 0.3, delays

    # a long poll: the answer comes after 3 s of silence, well inside response_timeout
    t0 = time.monotonic()
    r = core.request("sse", "GET", "/sleep?s=3", timeout=30)
    assert r.status == 200 and r.body == b"slept\n"
    assert 2.9 < time.monotonic() - t0 < 10


def test_udp_datagrams_above_the_limit_are_dropped_and_reported(tunnel):
    core = limits_core(tunnel, extra="limits:\n  udp_max_datagram: 1000\n")
    sized = tunnel.add(Server(tunnel.workdir, "udp-sized")).start()
    agent, port = port_agent(tunnel, core, "udp", sized.port, "agent-udp")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.sendto(b"500", ("127.0.0.1", port))
    assert s.recvfrom(65535)[0] == b"x" * 500
    # the app answers 2000 bytes: above the core's limit, dropped, the agent is told
    s.sendto(b"2000", ("127.0.0.1", port))
    try:
        s.recvfrom(65535)
        raise AssertionError("a 2000-byte datagram got through a 1000-byte limit")
    except socket.timeout:
        pass
    agent.wait_output(r"core, tunnel -> 127.0.0.1:%d: dropped 1 datagram from your local app "
                      r"larger than the core's limit of 1000 bytes" % sized.port, timeout=10)
    core.wait_output(r"udp :%d: dropped 1 datagram from your local app" % port)
    # a client datagram above the limit: dropped at the core, reported (at most every 10 s:
    # this one is from the other direction, so it is reported at once)
    s.sendto(b"9" * 1500, ("127.0.0.1", port))
    agent.wait_output(r"dropped 1 datagram from public clients larger than the core's limit",
                      timeout=10)
    # the session still works
    s.sendto(b"42", ("127.0.0.1", port))
    assert s.recvfrom(65535)[0] == b"x" * 42
    s.close()
