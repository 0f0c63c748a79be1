#!/usr/bin/python3
"""Opens N idle agent sessions on a tunnel-core and holds them: the load tool behind the
"core RSS with N connected agents" number of bench/run.py.

Each session is one TLS connection to the agent port that speaks the v1 AUTH exchange
(docs/protocol.md section 3) with its own subdomain (PREFIX0, PREFIX1, ...), then stays
idle, sending a v1 HEARTBEAT every few seconds so the core keeps it. Standard library only.

Prints `READY <connected> <failed> <seconds>` once every session has been tried, then holds
until stdin reaches EOF or SIGTERM/SIGINT arrives, and closes everything.

    python3 bench/agents.py --addr 127.0.0.1:8443 --ca data/tls.crt --token T --count 1000
"""
import argparse
import json
import resource
import signal
import socket
import ssl
import struct
import sys
import threading
import time

AUTH, HEARTBEAT = 1, 5
ACK = 0x02


def frame(ftype, flags, payload=b""):
    body = b"RT" + bytes([1, ftype, flags]) + struct.pack(">I", 0) + payload
    return struct.pack(">I", len(body)) + body


def recv_frame(sock):
    def exact(n):
        buf = bytearray()
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed by core")
            buf += chunk
        return bytes(buf)

    (length,) = struct.unpack(">I", exact(4))
    if length < 9 or length > 1 << 20:
        raise ConnectionError("bad frame length %d" % length)
    body = exact(length)
    return body[3], body[4], body[9:]


def open_session(ctx, host, port, token, name, timeout):
    raw = socket.create_connection((host, port), timeout=timeout)
    sock = ctx.wrap_socket(raw, server_hostname=host)
    auth = {"token": token, "agent_id": "bench-" + name, "version": "1.0.0",
            "capabilities": ["http"], "metadata": {"subdomains": name}}
    sock.sendall(frame(AUTH, 0, json.dumps(auth).encode()))
    ftype, flags, payload = recv_frame(sock)
    if ftype != AUTH or not flags & ACK:
        sock.close()
        raise ConnectionError("expected AUTH|ACK, got type %d" % ftype)
    reply = json.loads(payload)
    if not reply.get("success"):
        sock.close()
        raise ConnectionError("refused: %s" % reply.get("error"))
    return sock


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--addr", required=True, help="core agent address HOST:PORT")
    ap.add_argument("--token", required=True)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--prefix", default="idle")
    ap.add_argument("--threads", type=int, default=4, help="parallel connectors")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--deadline", type=float, default=120.0,
                    help="give up opening sessions after this many seconds")
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.count + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.count + 1024), hard))

    host, port = args.addr.rsplit(":", 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # load tool: the benchmark owns the core it talks to

    socks, errors = [], []
    lock = threading.Lock()
    next_index = [0]
    start = time.monotonic()

    def worker():
        while True:
            with lock:
                i = next_index[0]
                if i >= args.count or time.monotonic() - start > args.deadline:
                    return
                next_index[0] += 1
            try:
                s = open_session(ctx, host, int(port), args.token, "%s%d" % (args.prefix, i),
                                 args.timeout)
                with lock:
                    socks.append(s)
            except (OSError, ConnectionError, ValueError) as e:
                with lock:
                    errors.append(str(e))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    print("READY %d %d %.3f" % (len(socks), args.count - len(socks), elapsed), flush=True)
    if errors:
        print("first error: %s" % errors[0], file=sys.stderr, flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()

    # Hold: answer nothing (the core's heartbeats just wait in the socket buffers), send
    # our own heartbeat every 5 s so the core does not time the sessions out.
    for s in socks:
        s.setblocking(False)
    hb = frame(HEARTBEAT, 0)
    while not stop.wait(5.0):
        for s in list(socks):
            try:
                s.send(hb)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                pass
            except OSError:
                socks.remove(s)
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


if __name__ == "__main__":
    main()
