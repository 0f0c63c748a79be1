"""A local app that requires a PROXY protocol header (HAProxy spec, v1 or v2) at the start of
every connection, for the PROXY protocol tests. Run as a process:

    proxy_app.py tcp|http [--expect v1|v2|any]

It prints "listening PORT". Each connection must start with a valid header of the expected
version; otherwise the app logs "rejected: REASON" and closes the connection at once (as a
strict app such as nginx with proxy_protocol does).

tcp mode: answers "src=IP:PORT dst=IP:PORT version=N conn=K\\n", then echoes until EOF.
http mode: serves HTTP/1.1 keep-alive requests, each answered with JSON
{"src", "dst", "version", "conn", "request_no", "xff", "path"}.
"""
import argparse
import ipaddress
import json
import socket
import struct
import sys
import threading

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
counter_lock = threading.Lock()
counter = [0]


class Rejected(Exception):
    pass


def recv_exact(c, n, buf):
    while len(buf) < n:
        chunk = c.recv(65536)
        if not chunk:
            raise Rejected("connection closed inside the PROXY header")
        buf += chunk
    return buf


def read_header(c):
    """Returns (version, src, dst, rest_bytes)."""
    buf = recv_exact(c, 12, b"")
    if buf.startswith(V2_SIGNATURE):
        buf = recv_exact(c, 16, buf)
        ver_cmd, fam, length = buf[12], buf[13], struct.unpack("!H", buf[14:16])[0]
        if ver_cmd != 0x21:
            raise Rejected("v2 version/command byte 0x%02x" % ver_cmd)
        buf = recv_exact(c, 16 + length, buf)
        body, rest = buf[16:16 + length], buf[16 + length:]
        if fam == 0x11 and length >= 12:
            src = "%s:%d" % (ipaddress.IPv4Address(body[0:4]), struct.unpack("!H", body[8:10])[0])
            dst = "%s:%d" % (ipaddress.IPv4Address(body[4:8]), struct.unpack("!H", body[10:12])[0])
        elif fam == 0x21 and length >= 36:
            src = "[%s]:%d" % (ipaddress.IPv6Address(body[0:16]),
                               struct.unpack("!H", body[32:34])[0])
            dst = "[%s]:%d" % (ipaddress.IPv6Address(body[16:32]),
                               struct.unpack("!H", body[34:36])[0])
        elif fam == 0x00:
            src = dst = "unknown"
        else:
            raise Rejected("v2 family 0x%02x with length %d" % (fam, length))
        return 2, src, dst, rest
    if buf.startswith(b"PROXY "):
        while b"\r\n" not in buf:
            if len(buf) > 107:
                raise Rejected("v1 header longer than 107 bytes")
            chunk = c.recv(65536)
            if not chunk:
                raise Rejected("connection closed inside the v1 header")
            buf += chunk
        line, rest = buf.split(b"\r\n", 1)
        parts = line.decode("ascii").split(" ")
        if parts[1] == "UNKNOWN":
            return 1, "unknown", "unknown", rest
        if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
            raise Rejected("bad v1 line %r" % line)
        fmt = "%s:%s" if parts[1] == "TCP4" else "[%s]:%s"
        return 1, fmt % (parts[2], parts[4]), fmt % (parts[3], parts[5]), rest
    raise Rejected("no PROXY header: the connection starts with %r" % buf[:12])


def serve_tcp(c, version, src, dst, rest, conn_no):
    c.sendall(("src=%s dst=%s version=%d conn=%d\n" % (src, dst, version, conn_no)).encode())
    if rest:
        c.sendall(rest)
    while True:
        data = c.recv(65536)
        if not data:
            break
        c.sendall(data)
    c.shutdown(socket.SHUT_WR)


def serve_http(c, version, src, dst, rest, conn_no):
    buf = rest
    request_no = 0
    while True:
        while b"\r\n\r\n" not in buf:
            chunk = c.recv(65536)
            if not chunk:
                return
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0"))
        while len(buf) < length:
            buf += c.recv(65536)
        buf = buf[length:]
        request_no += 1
        body = json.dumps({"src": src, "dst": dst, "version": version, "conn": conn_no,
                           "request_no": request_no, "xff": headers.get("x-forwarded-for"),
                           "path": path}).encode()
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d"
                  b"\r\n\r\n" % len(body) + body)


def handle(c, mode, expect):
    with c:
        try:
            version, src, dst, rest = read_header(c)
            if expect != "any" and version != int(expect[1]):
                raise Rejected("expected a PROXY %s header, got v%d" % (expect, version))
        except (Rejected, ValueError, IndexError, UnicodeDecodeError) as e:
            print("rejected: %s" % e, flush=True)
            return
        with counter_lock:
            counter[0] += 1
            conn_no = counter[0]
        print("accepted conn=%d v%d src=%s dst=%s" % (conn_no, version, src, dst), flush=True)
        try:
            (serve_tcp if mode == "tcp" else serve_http)(c, version, src, dst, rest, conn_no)
        except OSError:
            pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["tcp", "http"])
    p.add_argument("--expect", default="any", choices=["v1", "v2", "any"])
    args = p.parse_args()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(256)
    print("listening %d" % s.getsockname()[1], flush=True)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c, args.mode, args.expect), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
