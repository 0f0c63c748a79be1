"""TCP tunnels (issue #3): echo with checksums, many connections, half-close both ways,
core-assigned and refused ports, round robin, agent restart; and one WebSocket echo through
an HTTP tunnel."""
import asyncio
import hashlib
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from harness import client, payload
from harness.raw import PortAgent, Server, WsEchoServer, core_config, sample

DEADLINE = 600.0


def _report(capsys, text):
    with capsys.disabled():
        print("\n[tcp] " + text)


@pytest.fixture
def echo(tunnel):
    return tunnel.add(Server(tunnel.workdir, "tcp-echo")).start()


def tcp_agent(tunnel, core, target_port, remote_port=None, name=None, token="test-agent-token",
              kind="tcp"):
    name = name or "agent-%d" % len(tunnel.all)
    return tunnel.add(PortAgent(core, kind, "127.0.0.1:%d" % target_port, token=token,
                                remote_port=remote_port, name=name)).start()


def port_core(tunnel, accounts=None, extra="", name="core"):
    accounts = accounts or ["name: default\ntokens: [test-agent-token]"]
    return tunnel.core(name=name, config_text=core_config(accounts, extra))


def connect(port, timeout=10.0):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def echo_once(port, data=b"ping\n", timeout=10.0):
    with connect(port, timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        return recv_all(s)


def recv_all(s):
    out = bytearray()
    while True:
        chunk = s.recv(1 << 16)
        if not chunk:
            return bytes(out)
        out += chunk


def wait_echo(port, timeout=15.0):
    """Waits until the tunnel on `port` echoes (the agent may still be connecting)."""
    def ok():
        try:
            return echo_once(port, b"probe", timeout=2.0) == b"probe"
        except OSError:
            return False
    client.wait_for(ok, timeout, what="port %d to echo" % port)


def test_echo_checksummed_each_way(tunnel, echo, bulk_bytes, capsys):
    core = port_core(tunnel)
    agent = tcp_agent(tunnel, core, echo.port)
    host, port = agent.wait_forwarding("tcp")
    assert host == "127.0.0.1"
    expected = payload.sha256_of(bulk_bytes, 7)
    s = connect(port, timeout=60)
    sent_error = []

    def send():
        try:
            for block in payload.blocks(bulk_bytes, 7):
                s.sendall(block)
            s.shutdown(socket.SHUT_WR)
        except OSError as e:  # reported by the assertion below
            sent_error.append(e)

    t0 = time.monotonic()
    sender = threading.Thread(target=send)
    sender.start()
    h = hashlib.sha256()
    n = 0
    try:
        while True:
            data = s.recv(1 << 20)
            if not data:
                break
            h.update(data)
            n += len(data)
            assert time.monotonic() - t0 < DEADLINE, "too slow: %d bytes back" % n
    finally:
        sender.join()
        s.close()
    secs = time.monotonic() - t0
    assert not sent_error, sent_error
    assert (n, h.hexdigest()) == (bulk_bytes, expected)
    _report(capsys, "echo %d MiB each way in %.1fs: %.0f MB/s each way"
            % (bulk_bytes >> 20, secs, bulk_bytes / secs / 1e6))
    assert sample(core, 'tunnel_tcp_bytes_total{direction="in"}') >= bulk_bytes
    assert sample(core, 'tunnel_tcp_bytes_total{direction="out"}') >= bulk_bytes


async def _one(port, i, start):
    # From 4 loopback addresses: one address may hold at most 64 connections to a tunnel
    # (limits.max_connections_per_tcp_tunnel_per_address).
    reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                   local_addr=("127.0.0.%d" % (1 + i % 4), 0))
    try:
        await start.wait()
        msg = (b"%06d:" % i) * 2000  # 14 KB, unique per connection
        writer.write(msg)
        await writer.drain()
        writer.write_eof()
        data = await reader.read()
        return data == msg
    finally:
        writer.close()


def test_200_concurrent_connections(tunnel, echo):
    core = port_core(tunnel)
    agent = tcp_agent(tunnel, core, echo.port)
    _, port = agent.wait_forwarding("tcp")

    async def run():
        start = asyncio.Event()
        tasks = [asyncio.ensure_future(_one(port, i, start)) for i in range(200)]
        await asyncio.sleep(0.5)  # all 200 connected (or connecting) before any data moves
        start.set()
        return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 120)

    results = asyncio.run(run())
    bad = [(i, r) for i, r in enumerate(results) if r is not True]
    assert not bad, bad[:10]
    metrics = client.parse_metrics(core.admin("/metrics").text())
    assert metrics.get("tunnel_tcp_connections_total", 0) >= 200


def test_half_close_client_still_gets_the_whole_reply(tunnel, echo):
    core = port_core(tunnel)
    agent = tcp_agent(tunnel, core, echo.port)
    _, port = agent.wait_forwarding("tcp")
    data = os.urandom(3 << 20)
    with connect(port) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)  # the echo server sees EOF only through the tunnel
        got = recv_all(s)
    assert len(got) == len(data) and got == data


def test_half_close_from_the_app_side(tunnel):
    core = port_core(tunnel)
    banner = tunnel.add(Server(tunnel.workdir, "tcp-banner", "alpha")).start()
    agent = tcp_agent(tunnel, core, banner.port)
    _, port = agent.wait_forwarding("tcp")
    with connect(port) as s:
        # The app says hello and shuts down its side: we read EOF...
        assert recv_all(s) == b"alpha\n"
        # ...and can still send; the app gets every byte.
        s.sendall(b"x" * 100000)
        s.shutdown(socket.SHUT_WR)
        banner.wait_output(r"alpha received 100000 bytes")


def test_core_assigned_port(tunnel, echo):
    core = port_core(tunnel)
    agent = tcp_agent(tunnel, core, echo.port)  # no --remote-port
    host, port = agent.wait_forwarding("tcp")
    assert port >= 1024
    assert re.search(r"Forwarding\s+tcp://127\.0\.0\.1:%d -> 127\.0\.0\.1:%d" % (port, echo.port),
                     agent.output())
    assert echo_once(port, b"hello") == b"hello"


def test_requested_port_and_round_robin(tunnel):
    core = port_core(tunnel)
    a = tunnel.add(Server(tunnel.workdir, "tcp-banner", "first")).start()
    b = tunnel.add(Server(tunnel.workdir, "tcp-banner", "second")).start()
    port = client.free_port()
    agent1 = tcp_agent(tunnel, core, a.port, remote_port=port)
    assert agent1.wait_forwarding("tcp") == ("127.0.0.1", port)
    agent2 = tcp_agent(tunnel, core, b.port, remote_port=port)
    assert agent2.wait_forwarding("tcp") == ("127.0.0.1", port)
    seen = []
    for _ in range(6):
        with connect(port) as s:
            seen.append(recv_all(s))
    assert set(seen) == {b"first\n", b"second\n"}, seen
    assert seen[0] != seen[1] and seen[1] != seen[2], "not round robin: %r" % seen


def test_port_policy_refusals(tunnel, echo):
    lo = client.free_port()
    accounts = [
        "name: alice\ntokens: [alice-secret-token]\nports:\n  ranges: [\"%d-%d\"]\n  max_per_account: 1"
        % (lo, lo + 1),
        "name: bob\ntokens: [bob-secret-token]",
    ]
    core = port_core(tunnel, accounts)
    # Outside alice's ranges: refused with the reason, the agent gives up (exit 1).
    out = tcp_agent(tunnel, core, echo.port, remote_port=80, token="alice-secret-token", name="a-80")
    assert out.wait_exit(20) == 1
    assert "port 80 is outside the ranges allowed for account alice (%d-%d)" % (lo, lo + 1) \
        in out.output()
    # Inside: works; the core picks within the range when asked for port 0.
    ok = tcp_agent(tunnel, core, echo.port, token="alice-secret-token", name="a-ok")
    _, port = ok.wait_forwarding("tcp")
    assert port in (lo, lo + 1)
    assert echo_once(port) == b"ping\n"
    # max_per_account: 1
    # (an account limit, code "limit": retried with backoff like max_agents)
    second = tcp_agent(tunnel, core, echo.port, token="alice-secret-token", name="a-2")
    second.wait_output(r"reconnecting in .*account alice already serves 1 tcp port "
                       r"\(ports\.max_per_account\)", timeout=20)
    assert second.alive(), second.output()
    second.stop()
    # Another account cannot take alice's port.
    # (retried with backoff: it may be released, issue 25)
    thief = tcp_agent(tunnel, core, echo.port, remote_port=port, token="bob-secret-token", name="bob")
    thief.wait_output(r"reconnecting in .*port %d is in use by another account" % port, timeout=20)
    assert thief.alive(), thief.output()
    thief.stop()
    assert echo_once(port) == b"ping\n"  # nothing else affected


def test_port_in_use(tunnel, echo):
    core = port_core(tunnel)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        port = busy.getsockname()[1]
        agent = tcp_agent(tunnel, core, echo.port, remote_port=port)
        # The refusal's code is "unavailable" (4964335): the port may be freed, so the agent
        # retries with backoff and says why instead of exiting.
        agent.wait_output("port %d is in use" % port, timeout=20)
        assert "port %d is in use" % port in core.output()
        assert agent.alive()
    finally:
        busy.close()


def test_local_app_unreachable_closes_the_client(tunnel):
    core = port_core(tunnel)
    dead = client.free_port()
    agent = tcp_agent(tunnel, core, dead)
    _, port = agent.wait_forwarding("tcp")
    with connect(port) as s:
        s.sendall(b"hello?")
        try:
            got = s.recv(100)
        except ConnectionResetError:
            got = b""
        assert got == b""
    agent.wait_output(r"dial tcp 127\.0\.0\.1:%d: Connection refused" % dead)


def test_agent_restart_with_open_connections(tunnel, echo):
    core = port_core(tunnel)
    port = client.free_port()
    agent = tcp_agent(tunnel, core, echo.port, remote_port=port)
    agent.wait_forwarding("tcp")
    conns = [connect(port) for _ in range(5)]
    for i, s in enumerate(conns):
        s.sendall(b"before %d\n" % i)
        assert s.recv(100) == b"before %d\n" % i
    agent.kill()  # no goodbye: the core notices the session died
    t0 = time.monotonic()
    for s in conns:
        s.settimeout(15)
        try:
            assert s.recv(100) == b""  # closed by the core, not left hanging
        except ConnectionResetError:
            pass
        s.close()
    closed_in = time.monotonic() - t0
    assert closed_in < 15
    agent.start()  # same port: still reserved for the account
    assert agent.wait_forwarding("tcp", after=1) == ("127.0.0.1", port)
    wait_echo(port)
    assert echo_once(port, b"after\n") == b"after\n"


def test_websocket_echo_through_http_tunnel(tunnel):
    """python3-websockets on both ends: the core relays raw bytes after the 101."""
    core = tunnel.core()
    ws_server = tunnel.add(WsEchoServer(tunnel.workdir)).start()
    ws_port = ws_server.port
    tunnel.agent(core, "127.0.0.1:%d" % ws_port, subdomain="ws", wait=False)
    client.wait_for(lambda: core.request("ws", path="/").status not in (404, 503, 502), 20,
                    what="ws tunnel routed")

    import websockets

    async def talk():
        # Host: ws.localhost, but connect to 127.0.0.1 (*.localhost may not resolve).
        uri = "ws://ws.localhost:%d/" % core.http_port
        async with websockets.connect(uri, host="127.0.0.1", port=core.http_port,
                                      max_size=None) as ws:
            got = []
            for msg in ["hello", "x" * 100000, b"\x00\x01binary"]:
                await ws.send(msg)
                got.append(await asyncio.wait_for(ws.recv(), 10))
            return got

    got = asyncio.run(talk())
    assert got == ["hello", "x" * 100000, b"\x00\x01binary"]


def test_remote_port_out_of_range_is_refused_naming_the_range(bin_dir):
    for value in ("99999", "-1", "http"):
        r = subprocess.run([bin_dir / "tunnel-agent", "--server", "127.0.0.1:1", "tcp", "8080",
                            "--remote-port", value], capture_output=True, text=True, timeout=10)
        assert r.returncode == 2, (value, r.returncode, r.stderr)
        assert "--remote-port: Value %s not in range 0 to 65535" % value in r.stderr, r.stderr
