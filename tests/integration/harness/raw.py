"""Helpers for tcp and udp tunnel tests: local services in their own processes (so a busy
test client does not share the GIL with them) and an agent wrapper for `tunnel-agent tcp|udp`
and `tunnel-agent start --config`."""
import re
import sys

from . import procs

# A small server: `tcp-echo` echoes and half-closes after the client's FIN; `tcp-banner NAME`
# sends "NAME\n", half-closes at once and then counts what the client still sends (printed as
# "NAME received N bytes" at the client's FIN); `udp-echo` echoes each datagram; `udp-whoami`
# answers each datagram with the address it came from; `tcp-source N` sends N bytes and
# closes; `tcp-sink` reads to EOF and prints "sink received N bytes in T s" (first byte to
# last), then answers "ok"; `udp-sized` answers a datagram holding a number with that many
# bytes.
SERVER = r'''
import socket, sys, threading
mode = sys.argv[1]
name = sys.argv[2] if len(sys.argv) > 2 else "server"

def tcp_echo(c):
    with c:
        while True:
            data = c.recv(1 << 20)
            if not data:
                break
            c.sendall(data)
        c.shutdown(socket.SHUT_WR)

def tcp_banner(c):
    with c:
        c.sendall(name.encode() + b"\n")
        c.shutdown(socket.SHUT_WR)
        n = 0
        while True:
            data = c.recv(1 << 16)
            if not data:
                break
            n += len(data)
        print("%s received %d bytes" % (name, n), flush=True)

def tcp_source(c):
    # sends `name` bytes (a number), then closes
    with c:
        left = int(name)
        block = b"s" * 65536
        while left > 0:
            c.sendall(block[:min(left, len(block))])
            left -= min(left, len(block))
        c.shutdown(socket.SHUT_WR)
        while c.recv(65536):
            pass

def tcp_sink(c):
    # reads to EOF; prints the byte count and the time from the first byte to the last
    import time
    with c:
        n, first, last = 0, None, None
        while True:
            data = c.recv(1 << 16)
            if not data:
                break
            last = time.monotonic()
            first = first or last
            n += len(data)
        print("sink received %d bytes in %.3f s" % (n, (last or 0) - (first or 0)), flush=True)
        c.sendall(b"ok")

if mode.startswith("tcp"):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(1024)
    print("listening %d" % s.getsockname()[1], flush=True)
    handler = {"tcp-echo": tcp_echo, "tcp-banner": tcp_banner, "tcp-source": tcp_source,
               "tcp-sink": tcp_sink}[mode]
    while True:
        c, _ = s.accept()
        threading.Thread(target=handler, args=(c,), daemon=True).start()
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("127.0.0.1", 0))
    print("listening %d" % s.getsockname()[1], flush=True)
    while True:
        data, addr = s.recvfrom(65535)
        if mode == "udp-echo":
            s.sendto(data, addr)
        elif mode == "udp-sized":  # the datagram holds a size: answer that many bytes
            s.sendto(b"x" * int(data), addr)
        else:
            s.sendto(("%s:%d" % addr).encode(), addr)
'''


class Server(procs.ListeningProc):
    def __init__(self, workdir, mode, name="server"):
        super().__init__("%s-%s" % (mode, name), [sys.executable, "-u", "-c", SERVER, mode, name],
                         workdir / ("%s-%s.log" % (mode, name)),
                         env=procs.clean_env({"PYTHONDONTWRITEBYTECODE": "1"}))


# A WebSocket echo server (python3-websockets); no pings of its own, so idle means idle.
WS_SERVER = r'''
import asyncio, websockets
async def echo(ws):
    async for m in ws:
        await ws.send(m)
async def main():
    async with websockets.serve(echo, "127.0.0.1", 0, ping_interval=None,
                                max_size=None) as server:
        print("listening %d" % server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()
asyncio.run(main())
'''


class WsEchoServer(procs.ListeningProc):
    def __init__(self, workdir, name="ws-server"):
        super().__init__(name, [sys.executable, "-u", "-c", WS_SERVER], workdir / (name + ".log"),
                         env=procs.clean_env())


class PortAgent(procs.Proc):
    """`tunnel-agent tcp|udp TARGET [--remote-port N]`, or with config=PATH
    `tunnel-agent start --config PATH`, against a Core."""

    def __init__(self, core, kind=None, target=None, token="test-agent-token", remote_port=None,
                 name="agent", config=None, extra_args=()):
        argv = [procs.bin_dir() / "tunnel-agent"]
        if config is not None:
            argv += ["start", "--config", config]
        else:
            argv += [kind, target]
            if remote_port is not None:
                argv += ["--remote-port", remote_port]
        argv += ["--server", core.agent_addr, "--token", token, "--ca", core.ca,
                 "--data-dir", core.workdir / ("%s-data" % name)] + list(extra_args)
        super().__init__(name, argv, core.workdir / ("%s.log" % name), cwd=core.workdir)
        self.core = core

    def wait_forwarding(self, kind, timeout=20.0, after=0):
        """Waits for 'Forwarding  tcp://HOST:PORT -> ...' (logged after the `after`-th start);
        returns (host, port)."""
        rx = re.compile(r"Forwarding\s+%s://([0-9.]+):(\d+)" % kind)

        def found():
            text = self.output()
            starts = [m.end() for m in re.finditer(r"^=== start:", text, re.M)]
            m = rx.search(text, starts[after] if after < len(starts) else len(text))
            if m is None and not self.alive():
                raise AssertionError("%s exited with %s:\n%s" % (self.name, self.returncode(),
                                                                 self.tail()))
            return m
        from . import client
        m = client.wait_for(found, timeout, what="%s to forward a %s port" % (self.name, kind))
        return m.group(1), int(m.group(2))


def core_config(accounts, extra=""):
    """A core config on the harness's placeholders, tcp/udp tunnels on 127.0.0.1.
    accounts: list of YAML snippets, each the body of one account entry."""
    text = ("listen:\n  agent: \"{agent}\"\n  http: \"{http}\"\n  admin: \"{admin}\"\n"
            "  tunnels_host: 127.0.0.1\naccounts:\n")
    for a in accounts:
        lines = a.strip("\n").splitlines()
        text += "  - " + lines[0] + "\n" + "".join("    " + line + "\n" for line in lines[1:])
    return text + extra


def sample(core, series):
    """The value of one exact Prometheus series ('name{label="v"}') on the core's /metrics."""
    for line in core.admin("/metrics").text().splitlines():
        if line.startswith(series + " "):
            return float(line.split()[1])
    return 0.0
