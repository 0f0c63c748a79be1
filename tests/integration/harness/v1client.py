"""A Go-Tunnel v1 agent in Python, as /work/shared/design/go-tunnel-v1.md describes the
original: TLS to the core's agent port, AUTH (version byte 1) with metadata.subdomains,
then for each OPEN_STREAM it reads the request head and DATA frames up to END_STREAM and
answers with DATA frames carrying a whole HTTP/1.1 response, then DATA|END_STREAM. It
sends HEARTBEAT every `heartbeat` seconds and counts the HEARTBEAT|ACK replies.

The "local app" is a callable(method, target, headers, body) -> (status, headers, body),
or raises AppError, which is sent as DATA|ERROR with the message (as the original did).
"""
import hashlib
import json
import socket
import ssl
import struct
import threading
import time

MAGIC = b"RT"
VERSION = 1
AUTH, OPEN_STREAM, DATA, CLOSE, HEARTBEAT = 1, 2, 3, 4, 5
END_STREAM, ACK, ERROR = 0x01, 0x02, 0x04
MAX_FRAME = 16 * 1024 * 1024


class AppError(Exception):
    """The local app failed; sent to the core as DATA|ERROR."""


def encode(ftype, flags, stream_id, payload=b""):
    body = MAGIC + bytes([VERSION, ftype, flags]) + struct.pack(">I", stream_id) + payload
    return struct.pack(">I", len(body)) + body


def _recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by core")
        buf += chunk
    return bytes(buf)


def read_frame(sock):
    """Returns (type, flags, stream_id, payload); raises ConnectionError on EOF or a bad frame."""
    (length,) = struct.unpack(">I", _recv_exact(sock, 4))
    if length < 9 or length > MAX_FRAME:
        raise ConnectionError("bad frame length %d" % length)
    body = _recv_exact(sock, length)
    if body[:2] != MAGIC or body[2] != VERSION:
        raise ConnectionError("bad frame magic/version %r" % body[:3])
    (sid,) = struct.unpack(">I", body[5:9])
    return body[3], body[4], sid, body[9:]


def cert_fingerprint(pem_path):
    with open(pem_path) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    return hashlib.sha256(der).hexdigest()


def connect_tls(addr, ca_path, timeout=10.0):
    """TLS to the agent port, pinned to the certificate in ca_path (compared by SHA-256,
    so the test does not depend on the names the core put in its certificate)."""
    host, port = addr.rsplit(":", 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection((host, int(port)), timeout=timeout)
    sock = ctx.wrap_socket(raw, server_hostname=host)
    got = hashlib.sha256(sock.getpeercert(binary_form=True)).hexdigest()
    want = cert_fingerprint(ca_path)
    if got != want:
        sock.close()
        raise ssl.SSLError("core certificate %s does not match %s (%s)" % (got, ca_path, want))
    return sock


def parse_head(text):
    lines = text.replace("\r\n", "\n").split("\n")
    method, target, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return method, target, headers


def echo_app(name):
    """A local app answering with JSON describing the request."""
    def app(method, target, headers, body):
        out = {"origin": name, "method": method, "path": target, "headers": headers,
               "body": body.decode("latin-1"), "body_length": len(body)}
        return 200, {"Content-Type": "application/json"}, json.dumps(out).encode()
    return app


def failing_app(message="dial tcp 127.0.0.1:1: connect: connection refused"):
    def app(method, target, headers, body):
        raise AppError(message)
    return app


class V1Agent:
    def __init__(self, addr, ca_path, token, subdomains, app, agent_id="v1-test-agent",
                 heartbeat=1.0):
        self.addr = addr
        self.ca_path = ca_path
        self.token = token
        self.subdomains = subdomains
        self.app = app
        self.agent_id = agent_id
        self.heartbeat = heartbeat
        self.sock = None
        self.auth_reply = None
        self.heartbeat_acks = 0
        self.requests_served = 0
        self.error = None
        self._streams = {}
        self._wlock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    # --- session ------------------------------------------------------------------------
    def connect(self, timeout=10.0):
        """TLS + AUTH. Returns the parsed AUTH reply; raises on failure (no ACK or
        success false)."""
        self.sock = connect_tls(self.addr, self.ca_path, timeout)
        auth = {"token": self.token, "agent_id": self.agent_id, "version": "1.0.0",
                "capabilities": ["http"], "metadata": {"subdomains": ",".join(self.subdomains)}}
        self.send(AUTH, 0, 0, json.dumps(auth).encode())
        ftype, flags, sid, payload = read_frame(self.sock)
        if ftype != AUTH or not flags & ACK:
            raise ConnectionError("expected AUTH|ACK, got type %d flags %#x: %r"
                                  % (ftype, flags, payload[:200]))
        self.auth_reply = json.loads(payload)
        if not self.auth_reply.get("success"):
            raise ConnectionError("auth refused: %r" % self.auth_reply)
        return self.auth_reply

    def send(self, ftype, flags, sid, payload=b""):
        with self._wlock:
            self.sock.sendall(encode(ftype, flags, sid, payload))

    def send_raw(self, data):
        with self._wlock:
            self.sock.sendall(data)

    def start(self):
        """Serves streams and sends heartbeats in one background thread (an SSL socket
        must not be read and written from two threads at once)."""
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def close(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.send(CLOSE, 0, 0)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def _loop(self):
        buf = bytearray()
        self.sock.settimeout(0.05)
        next_hb = time.monotonic() + self.heartbeat
        try:
            while not self._stop.is_set():
                if time.monotonic() >= next_hb:
                    self.send(HEARTBEAT, 0, 0)
                    next_hb = time.monotonic() + self.heartbeat
                try:
                    data = self.sock.recv(1 << 16)
                except (socket.timeout, ssl.SSLWantReadError):
                    continue
                if not data:
                    raise ConnectionError("connection closed by core")
                buf += data
                while len(buf) >= 4:
                    (length,) = struct.unpack(">I", buf[:4])
                    if length < 9 or length > MAX_FRAME:
                        raise ConnectionError("bad frame length %d" % length)
                    if len(buf) < 4 + length:
                        break
                    body = bytes(buf[4:4 + length])
                    del buf[:4 + length]
                    if body[:2] != MAGIC or body[2] != VERSION:
                        raise ConnectionError("bad frame magic/version %r" % body[:3])
                    self._on_frame(body[3], body[4], struct.unpack(">I", body[5:9])[0], body[9:])
        except (OSError, ConnectionError, ValueError) as e:
            if not self._stop.is_set():
                self.error = e

    def _on_frame(self, ftype, flags, sid, payload):
        if ftype == HEARTBEAT and flags & ACK:
            self.heartbeat_acks += 1
        elif ftype == HEARTBEAT:
            self.send(HEARTBEAT, ACK, 0)
        elif ftype == OPEN_STREAM:
            self._streams[sid] = [payload.decode("latin-1"), bytearray()]
        elif ftype == DATA and sid in self._streams:
            self._streams[sid][1] += payload
            if flags & END_STREAM:
                head, body = self._streams.pop(sid)
                self._serve(sid, head, bytes(body))
        elif ftype == CLOSE and sid == 0:
            self._stop.set()
        elif ftype == CLOSE:
            self._streams.pop(sid, None)

    def _serve(self, sid, head, body):
        method, target, headers = parse_head(head)
        try:
            status, rh, rbody = self.app(method, target, headers, body)
        except AppError as e:
            self.send(DATA, ERROR, sid, str(e).encode())
            return
        out = ["HTTP/1.1 %d %s" % (status, "OK" if status == 200 else "Status")]
        rh = dict(rh)
        rh["Content-Length"] = str(len(rbody))
        out += ["%s: %s" % kv for kv in rh.items()]
        data = ("\r\n".join(out) + "\r\n\r\n").encode() + rbody
        # Split into several DATA frames on purpose: the core must reassemble them.
        step = max(1, len(data) // 3)
        for i in range(0, len(data), step):
            self.send(DATA, 0, sid, data[i:i + step])
        self.send(DATA, END_STREAM, sid)
        self.requests_served += 1
