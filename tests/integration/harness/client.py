"""Real HTTP clients for the tests: http.client, raw sockets with a small response parser,
and curl. Hostnames like app.localhost are not resolvable by glibc, so Python clients
always connect to 127.0.0.1 and send the Host header themselves.
"""
import http.client
import socket
import subprocess
import time
from dataclasses import dataclass, field


@dataclass
class Response:
    status: int
    headers: dict = field(default_factory=dict)  # lowercased name -> last value
    body: bytes = b""
    chunked: bool = False

    def text(self):
        return self.body.decode("utf-8", "replace")


def request(port, host, method="GET", path="/", body=None, headers=None, timeout=30.0):
    """One request on a fresh connection. Raises OSError when the connection fails."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = {"Host": host}
        h.update(headers or {})
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data,
                        (r.getheader("Transfer-Encoding") or "").lower() == "chunked")
    finally:
        conn.close()


def read_response(f, method="GET"):
    """Reads one HTTP/1.1 response from a binary file object (socket.makefile('rb')).
    Returns a Response, or None when the peer closed before a status line."""
    line = f.readline(65537)
    if not line:
        return None
    while line.startswith(b"HTTP/1.1 1") and not line.startswith(b"HTTP/1.1 101"):
        while f.readline(65537) not in (b"\r\n", b"\n", b""):  # skip a 1xx head
            pass
        line = f.readline(65537)
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise ValueError("bad status line %r" % line)
    status = int(parts[1])
    headers = {}
    while True:
        h = f.readline(65537)
        if h in (b"\r\n", b"\n"):
            break
        if not h:
            raise ValueError("eof in response head")
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    body = b""
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    if method == "HEAD" or status in (204, 304):
        pass
    elif chunked:
        parts = []
        while True:
            size_line = f.readline(65537)
            if not size_line:
                raise ValueError("eof in chunked body")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while f.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                break
            parts.append(_read_exact(f, size))
            f.readline(3)
        body = b"".join(parts)
    elif "content-length" in headers:
        body = _read_exact(f, int(headers["content-length"]))
    else:
        body = f.read()
    return Response(status, headers, body, chunked)


def _read_exact(f, n):
    data = f.read(n)
    if len(data) != n:
        raise ValueError("short body: %d of %d bytes" % (len(data), n))
    return data


def raw_exchange(port, data: bytes, timeout=10.0, responses=1):
    """Sends raw bytes on one connection and reads up to `responses` responses."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        f = s.makefile("rb")
        out = []
        for _ in range(responses):
            r = read_response(f)
            if r is None:
                break
            out.append(r)
        return out
    finally:
        s.close()


def curl(*args, timeout=60.0, check=False):
    """Runs curl -sS with the given arguments and returns the CompletedProcess (bytes)."""
    cmd = ["curl", "-sS", "--max-time", str(int(timeout))] + [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, timeout=timeout + 30, check=check)


def wait_for(predicate, timeout, interval=0.05, what="condition"):
    """Polls predicate() until it returns a truthy value; returns it or raises TimeoutError."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = predicate()
            if v:
                return v
        except (OSError, ValueError, http.client.HTTPException) as e:
            last_exc = e  # polled again; reported if the deadline passes
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s (last error: %r)"
                               % (timeout, what, last_exc))
        time.sleep(interval)


def wait_routed(port, host, path="/echo", timeout=30.0, proc=None):
    """Polls the tunnel URL until it stops answering 404/503 (or refusing). Returns the
    first such Response. If proc (an agent) exits meanwhile, fails at once."""
    def probe():
        if proc is not None and not proc.alive():
            raise AssertionError("%s exited with %s while waiting for %s:\n%s"
                                 % (proc.name, proc.returncode(), host, proc.tail()))
        try:
            r = request(port, host, "GET", path, timeout=5)
        except OSError:
            return None
        return r if r.status not in (404, 503) else None
    return wait_for(probe, timeout, 0.05, "%s to be routed" % host)


def can_connect(port, timeout=1.0):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
        return True
    except OSError:
        return False


_handed_out = set()


def free_port(kind=socket.SOCK_STREAM):
    """A loopback port free now and not handed out before in this process.

    The kernel may give the same port to two bind(0) calls in a row once the first socket is
    closed, so a test asking for several ports (a core's agent, http and admin listeners) could
    get one twice; remembering what was handed out rules that out."""
    for _ in range(1000):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no free loopback port left that this test run has not used")


def parse_metrics(text):
    """Prometheus text -> {metric name: sum of its samples}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        # "name{labels} value [timestamp]"
        if "}" in line:
            name = line.split("{", 1)[0]
            rest = line.rsplit("}", 1)[1].split()
        else:
            name, *rest = line.split()
        try:
            out[name] = out.get(name, 0.0) + float(rest[0])
        except (ValueError, IndexError):
            continue
    return out
