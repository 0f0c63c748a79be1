"""Loopback probes: one HTTP GET, whether a port listens or is bound, and waiting (bounded)
until something holds."""
import re
import socket
import time

from .common import BODY_SIZE, HOST


def udp_bound(port):
    """True when some socket is bound to UDP `port` (/proc/net/udp: a udp port has no
    listening state to connect to)."""
    want = ":%04X" % port
    for f in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(f) as fh:
                next(fh)
                if any(line.split()[1].endswith(want) for line in fh):
                    return True
        except (OSError, StopIteration, IndexError):
            pass
    return False


def http_get(port, host=HOST, path="/", timeout=2.0):
    """(status, body) of one HTTP/1.1 GET, or (None, error)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                       % (path, host)).encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as e:
        return None, str(e)
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d+)", head)
    return (int(m.group(1)) if m else None), body


def wait_for(what, fn, timeout=20.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(interval)
    raise RuntimeError("timed out after %.0fs waiting for %s" % (timeout, what))


def wait_serving(name, port, timeout=20.0, host=HOST):
    def ok():
        st, body = http_get(port, host)
        return st == 200 and len(body) == BODY_SIZE
    wait_for("%s to serve the 612-byte page" % name, ok, timeout)


def listening(port):
    """Whether some process listens on 127.0.0.1:port or *:port (TCP), from /proc/net/tcp*:
    lets the suite wait for a tcp tunnel's port without opening a connection through it."""
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            pass
    return False


def connects(port):
    """Whether a TCP connection to 127.0.0.1:port is accepted."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False
