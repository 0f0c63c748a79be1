"""The origin: a threaded HTTP/1.1 keep-alive app the agent forwards to.

Run as a process (`python3 -m harness.origin --name A`); it prints "listening PORT" once
bound. Every response carries `X-Origin: <name>` so a test can tell which origin served it.

Endpoints:
  /echo               JSON: origin, method, path, headers, body (latin-1), body sha256/length
  /headers            JSON: origin, headers
  /status/N           status N, small text body
  /chunked            chunked response made of payload.chunked_body_parts()
  /download?bytes=N&seed=S   N deterministic bytes (payload.blocks), Content-Length
  /upload             JSON: sha256 and length of the body read (content-length or chunked)
  /slow-stream?chunks=N&interval=S   chunked, one part every S seconds
  /sleep?s=N          answers after N seconds
  anything else       same as /echo
"""
import argparse
import hashlib
import http.server
import json
import os
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from harness import payload  # noqa: E402


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "origin/1"
    origin_name = "origin"

    def log_message(self, fmt, *args):  # quiet: 500-request tests would flood the log
        pass

    # --- request body -------------------------------------------------------------------
    def _body_chunks(self):
        """Yields the request body as it arrives, for content-length or chunked bodies."""
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("eof in chunk size")
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while True:  # trailers until the empty line
                        t = self.rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            return
                left = size
                while left > 0:
                    data = self.rfile.read(min(left, 1 << 20))
                    if not data:
                        raise ConnectionError("eof in chunk")
                    left -= len(data)
                    yield data
                self.rfile.readline(3)
        else:
            left = int(self.headers.get("Content-Length", "0") or 0)
            while left > 0:
                data = self.rfile.read(min(left, 1 << 20))
                if not data:
                    raise ConnectionError("eof in body")
                left -= len(data)
                yield data

    # --- responses ----------------------------------------------------------------------
    def _send(self, status, body: bytes, ctype="application/json", extra=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Origin", self.origin_name)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, status=200):
        self._send(status, json.dumps(obj).encode())

    def _start_chunked(self, ctype="text/plain"):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("X-Origin", self.origin_name)
        self.end_headers()

    def _chunk(self, data: bytes):
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _end_chunked(self):
        self.wfile.write(b"0\r\n\r\n")

    def _headers_obj(self):
        return {k.lower(): v for k, v in self.headers.items()}

    # --- dispatch -----------------------------------------------------------------------
    def _handle(self):
        url = urllib.parse.urlsplit(self.path)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        route = url.path

        if route == "/upload":
            h = hashlib.sha256()
            n = 0
            for data in self._body_chunks():
                h.update(data)
                n += len(data)
            return self._json({
                "origin": self.origin_name, "sha256": h.hexdigest(), "length": n,
                "chunked": "chunked" in self.headers.get("Transfer-Encoding", "").lower(),
                "expect": self.headers.get("Expect"),
            })

        body = b"".join(self._body_chunks())
        if route == "/headers":
            return self._json({"origin": self.origin_name, "headers": self._headers_obj()})
        if route.startswith("/status/"):
            code = int(route.split("/")[2])
            return self._send(code, b"status %d from %s\n" % (code, self.origin_name.encode()),
                              "text/plain")
        if route == "/chunked":
            self._start_chunked()
            for part in payload.chunked_body_parts():
                self._chunk(part)
                self.wfile.flush()
            return self._end_chunked()
        if route == "/download":
            n = int(q.get("bytes", "0"))
            seed = int(q.get("seed", "0"))
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.send_header("X-Origin", self.origin_name)
            self.end_headers()
            for b in payload.blocks(n, seed):
                self.wfile.write(b)
            return None
        if route == "/slow-stream":
            n = int(q.get("chunks", "5"))
            interval = float(q.get("interval", "0.5"))
            self._start_chunked()
            for i in range(n):
                if i:
                    time.sleep(interval)
                self._chunk(payload.slow_stream_part(i, n))
                self.wfile.flush()
            return self._end_chunked()
        if route == "/sse":
            # Server-sent events: one event every `interval` s, each flushed at once; the
            # event carries the time it was sent so clients can see any buffering.
            n = int(q.get("events", "5"))
            interval = float(q.get("interval", "0.5"))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            for i in range(n):
                if i:
                    time.sleep(interval)
                self.wfile.write(b"id: %d\ndata: {\"i\": %d, \"sent\": %.6f}\n\n"
                                 % (i, i, time.time()))
                self.wfile.flush()
            self.close_connection = True
            return None
        if route == "/sleep":
            time.sleep(float(q.get("s", "1")))
            return self._send(200, b"slept\n", "text/plain")

        return self._json({
            "origin": self.origin_name, "method": self.command, "path": self.path,
            "headers": self._headers_obj(),
            "header_list": [[k, v] for k, v in self.headers.items()],
            "body": body.decode("latin-1"), "body_length": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
        })

    def do_GET(self):
        try:
            self._handle()
        except (ConnectionError, BrokenPipeError, ValueError) as e:
            sys.stderr.write("origin %s: %s %s: %r\n" % (self.origin_name, self.command, self.path, e))
            self.close_connection = True

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True


def serve(name: str, host: str = "127.0.0.1", port: int = 0) -> Server:
    handler = type("NamedHandler", (Handler,), {"origin_name": name})
    return Server((host, port), handler)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", default="origin")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    srv = serve(a.name, a.host, a.port)
    print("listening %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
