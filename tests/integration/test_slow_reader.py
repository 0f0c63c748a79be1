"""Flow control under load (issue #3): one TCP client that stops reading must not slow the
other streams of the same agent, and the core's memory stays bounded meanwhile."""
import hashlib
import os
import socket
import threading
import time

import pytest

from harness import client, payload
from harness.raw import core_config, sample
from test_tcp import connect, echo, port_core, recv_all, tcp_agent  # noqa: F401 (fixture)

# An upper bound only: the path (socket buffers of 4 hops, two stream windows that may grow to
# 16 MiB, the app) holds tens of MiB before the client is stalled.
STALLED_BYTES = 1024 * 1024 * 1024
FAST_BYTES = 64 * 1024 * 1024
MIB = 1 << 20


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def test_stalled_reader_does_not_slow_another_stream(tunnel, echo, capsys):  # noqa: F811
    core = port_core(tunnel)
    agent = tcp_agent(tunnel, core, echo.port)
    _, port = agent.wait_forwarding("tcp")
    rss_before = rss_kib(core.pid)

    # A: pushes data into the echo app and never reads the echo back.
    stalled = connect(port, timeout=60)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    pushed = [0]
    stop = threading.Event()

    def push():
        block = b"s" * (1 << 16)
        stalled.settimeout(1.0)
        while not stop.is_set() and pushed[0] < STALLED_BYTES:
            try:
                pushed[0] += stalled.send(block)
            except socket.timeout:
                continue
            except OSError:
                return

    pusher = threading.Thread(target=push, daemon=True)
    pusher.start()
    client.wait_for(lambda: pushed[0] > 4 * 1024 * 1024, 30, what="the stalled client to push")
    last = [-1]

    def stalled_now():  # no progress for a whole second: every buffer on A's path is full
        before = pushed[0]
        time.sleep(1.0)
        moved = pushed[0] != before
        last[0] = pushed[0]
        return not moved
    client.wait_for(stalled_now, 60, what="the stalled client to stop making progress")
    stalled_at = last[0]

    # B: a full echo on the same agent, measured while A is stalled.
    b = connect(port, timeout=60)
    data_hash = hashlib.sha256()
    block = bytes(range(256)) * 4096  # 1 MiB
    t0 = time.monotonic()

    def send_b():
        for _ in range(FAST_BYTES // len(block)):
            b.sendall(block)
            data_hash.update(block)
        b.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=send_b)
    sender.start()
    got = hashlib.sha256()
    n = 0
    peak = rss_kib(core.pid)
    while True:
        chunk = b.recv(1 << 20)
        if not chunk:
            break
        got.update(chunk)
        n += len(chunk)
        if n % (8 << 20) < len(chunk):
            peak = max(peak, rss_kib(core.pid))
    elapsed = time.monotonic() - t0
    sender.join()
    b.close()
    assert n == FAST_BYTES and got.hexdigest() == data_hash.hexdigest()

    # A is still stalled: B's traffic did not unblock it.
    assert pushed[0] < STALLED_BYTES, "the stalled client was never stalled"
    assert pushed[0] - stalled_at < 8 * 1024 * 1024, "A advanced while it was not reading"
    peak = max(peak, rss_kib(core.pid))
    rate = FAST_BYTES / elapsed / 1e6
    with capsys.disabled():
        print("\n[slow-reader] stalled after %.1f MiB; other stream %.0f MB/s; core RSS %d -> "
              "%d KiB (peak)" % (stalled_at / 2**20, rate, rss_before, peak))
    assert rate > 10, "the other stream crawled at %.1f MB/s" % rate
    # Bounded: A's stream holds at most its window in the core, B's moves through. (Not under
    # ASan, whose quarantine keeps freed memory resident on purpose.)
    if "ASAN_OPTIONS" not in os.environ:
        assert peak - rss_before < 64 * 1024, "core RSS grew by %d KiB" % (peak - rss_before)

    stop.set()
    stalled.close()
    pusher.join(10)
    assert core.alive() and echo_ok(port)


def echo_ok(port):
    with connect(port) as s:
        s.sendall(b"still here")
        s.shutdown(socket.SHUT_WR)
        return recv_all(s) == b"still here"


WINDOW_BUDGET = 2 * 1024 * 1024


@pytest.mark.parametrize("budget,agents", [("window_budget_per_agent", 1),
                                           ("window_budget_total", 2)])
def test_fast_then_stalled_downloads_hold_at_most_the_window_budget(tunnel, origin, capsys,
                                                                    budget, agents):
    """Public clients that download fast (so their streams' windows grow) and then stop
    reading: the core buffers for them at most the initial windows plus
    limits.window_budget_per_agent (one agent), or limits.window_budget_total (two agents, each
    with the default 32 MiB of its own), and every byte still arrives once they read again."""
    core = tunnel.core(config_text=core_config(
        ["name: default\ntokens: [test-agent-token]"],
        "limits:\n  %s: %d\n" % (budget, WINDOW_BUDGET)))
    for a in range(agents):
        tunnel.agent(core, origin.addr, subdomain="app%d" % a)
    size, fast, clients = 48 * MIB, 16 * MIB, 4
    growth = "tunnel_stream_window_growth_bytes"
    socks = []
    for i in range(clients):
        s = socket.create_connection(("127.0.0.1", core.http_port), timeout=60)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(b"GET /download?bytes=%d&seed=%d HTTP/1.1\r\nHost: app%d.localhost\r\n\r\n"
                  % (size, 10 + i, i % agents))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(1 << 16)
            assert chunk, "connection closed before the response head"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        h = hashlib.sha256(body)
        n = len(body)
        while n < fast:  # fast: the stream's window grows while this keeps up
            chunk = s.recv(1 << 20)
            assert chunk, "connection closed after %d bytes" % n
            h.update(chunk)
            n += len(chunk)
        socks.append((s, h, n))
    peak = [0.0]

    def stalled():  # the windows stop moving once every buffer on the paths is full
        before = sample(core, growth)
        time.sleep(1.0)
        now = sample(core, growth)
        peak[0] = max(peak[0], before, now)
        return now == before
    client.wait_for(stalled, 30, what="the stalled downloads to settle")
    assert 0 < peak[0] <= WINDOW_BUDGET, \
        "window growth %d bytes with a budget of %d" % (peak[0], WINDOW_BUDGET)

    for i, (s, h, n) in enumerate(socks):
        while n < size:
            chunk = s.recv(1 << 20)
            assert chunk, "download %d ended after %d of %d bytes" % (i, n, size)
            h.update(chunk)
            n += len(chunk)
            if n % (16 * MIB) < len(chunk):  # about every 16 MiB read
                peak[0] = max(peak[0], sample(core, growth))
        assert (n, h.hexdigest()) == (size, payload.sha256_of(size, 10 + i)), "download %d" % i
        s.close()
    assert peak[0] <= WINDOW_BUDGET
    client.wait_for(lambda: sample(core, growth) == 0, 15,
                    what="the streams' window growth to go back to the budget")
    with capsys.disabled():
        print("\n[slow-reader] %d downloads through %d agent(s) stalled after %d MiB: window "
              "growth at most %d KiB (%s %d KiB); all %d MiB arrived intact" % (
                  clients, agents, fast >> 20, peak[0] // 1024, budget, WINDOW_BUDGET // 1024,
                  size >> 20))
