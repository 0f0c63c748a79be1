"""Zero-downtime upgrades of the core (issue #19): `tunnel-core upgrade` (and SIGUSR2) start the
new binary, hand it every listening socket, and the old process drains.

Under steady HTTP load and 20 open tcp streams with checksummed transfers the core is upgraded
twice: no request fails, every stream completes exactly, a streamed (server-sent events)
response that began before the upgrade ends complete (the old process holds it). A new binary
that fails leaves the old one serving, and `tunnel-core upgrade` says why (exit 1)."""
import hashlib
import os
import select
import signal
import socket
import ssl
import stat
import subprocess
import threading
import time

from harness import client, procs
from harness.raw import PortAgent, Server, core_config

GRACE = 10.0
STREAMS = 20
CHUNK, CHUNKS, PAUSE = 8192, 30, 0.1  # each tcp stream sends 240 KiB over ~3 s


def _alive(pid):
    """True while `pid` runs (a zombie counts as gone: after the old core exits, its
    children may be reparented to a PID 1 that does not reap)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _upgrade(core, *extra, timeout=60):
    return subprocess.run([str(procs.bin_dir() / "tunnel-core"), "upgrade", "--data-dir",
                           str(core.data_dir), *extra], capture_output=True, text=True,
                          timeout=timeout)


def _new_pid(result):
    assert result.returncode == 0, "upgrade failed: %s %s" % (result.stdout, result.stderr)
    return int(result.stdout.split("(pid ", 1)[1].split(")", 1)[0])


class Load(threading.Thread):
    """GET /echo in a loop, each on a fresh connection; counts answers and failures."""

    def __init__(self, core):
        super().__init__(daemon=True)
        self.core, self.stop, self.ok, self.failures = core, threading.Event(), 0, []

    def run(self):
        while not self.stop.is_set():
            try:
                r = self.core.request("app", path="/echo", timeout=10)
                if r.status == 200:
                    self.ok += 1
                else:
                    self.failures.append("status %d: %s" % (r.status, r.body[:200]))
            except OSError as e:
                self.failures.append(repr(e))


def _stream(port, seed, results):
    """Sends CHUNKS blocks with pauses, reads the echo as it comes, checks it whole."""
    data = hashlib.sha256(b"seed-%d" % seed).digest() * (CHUNK // 32)
    want = hashlib.sha256(data * CHUNKS).hexdigest()
    got = hashlib.sha256()
    n = 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            for _ in range(CHUNKS):
                s.sendall(data)
                deadline = time.monotonic() + PAUSE
                while True:  # read what came back meanwhile
                    left = deadline - time.monotonic()
                    if left <= 0 or not select.select([s], [], [], left)[0]:
                        break
                    b = s.recv(1 << 16)
                    if not b:
                        raise OSError("closed early")
                    got.update(b)
                    n += len(b)
            s.shutdown(socket.SHUT_WR)
            while True:
                b = s.recv(1 << 16)
                if not b:
                    break
                got.update(b)
                n += len(b)
        results[seed] = "ok" if got.hexdigest() == want else "mismatch: %d bytes" % n
    except OSError as e:
        results[seed] = "error after %d bytes: %r" % (n, e)


def _sse(core, out):
    """A server-sent events response of 8 events, 0.5 s apart (it outlives the upgrade)."""
    try:
        r = client.request(core.http_port, core.host("app"), path="/sse?events=8&interval=0.5",
                           timeout=20)
        out["status"], out["events"] = r.status, r.body.count(b"\ndata: ")
    except OSError as e:
        out["error"] = repr(e)


def test_two_upgrades_under_load_drop_nothing(tunnel, origin):
    tcp_port = client.free_port()
    core = tunnel.core(config_text=core_config(
        ["name: default\ntokens: [test-agent-token]"],
        "limits:\n  shutdown_grace: %ds\n" % GRACE))
    tunnel.agent(core, origin.addr, subdomain="app")
    echo = tunnel.add(Server(tunnel.workdir, "tcp-echo")).start()
    tunnel.add(PortAgent(core, "tcp", "127.0.0.1:%d" % echo.port, remote_port=tcp_port,
                         name="tcp-agent")).start().wait_forwarding("tcp")
    mode = stat.S_IMODE(os.stat(core.data_dir / "control.sock").st_mode)
    assert mode == 0o600, "control.sock has mode %o" % mode

    pids = [core.pid]
    load = Load(core)
    load.start()
    try:
        for round_ in range(2):
            results = {}
            streams = [threading.Thread(target=_stream, args=(tcp_port, i, results))
                       for i in range(STREAMS)]
            sse = {}
            sse_thread = threading.Thread(target=_sse, args=(core, sse))
            for t in streams + [sse_thread]:
                t.start()
            time.sleep(0.5)  # every stream open and sending, the events flowing
            old = pids[-1]
            started = time.monotonic()
            pids.append(_new_pid(_upgrade(core)))
            took = time.monotonic() - started
            for t in streams + [sse_thread]:
                t.join(30)
            assert results == {i: "ok" for i in range(STREAMS)}, results
            assert sse == {"status": 200, "events": 8}, sse
            client.wait_for(lambda: not _alive(old), GRACE + 5, what="the old core to exit")
            assert _alive(pids[-1])
            print("upgrade %d: %.2f s until the new process served; %d requests so far"
                  % (round_ + 1, took, load.ok))
        time.sleep(0.5)  # load on the second new process alone
    finally:
        load.stop.set()
        load.join(15)
        for pid in pids[1:]:
            if _alive(pid):
                os.kill(pid, signal.SIGTERM)
    assert load.failures == [], "%d of %d requests failed: %s" % (
        len(load.failures), load.ok + len(load.failures), load.failures[:5])
    assert load.ok > 20
    out = core.output()
    assert out.count("handed over and drained; exiting") == 2, core.tail(80)
    assert core.wait_exit(1) == 0


def test_a_new_binary_that_fails_leaves_the_old_serving(tunnel, origin):
    core = tunnel.core()
    tunnel.agent(core, origin.addr, subdomain="app")
    result = _upgrade(core, "--binary", "/bin/false")
    assert result.returncode == 1, (result.stdout, result.stderr)
    # It exits before it reads the sockets, or before it says it is ready.
    assert "exited with status 1" in result.stderr, result.stderr
    core.wait_output(r"upgrade failed, this process keeps serving: .*exited with status 1")
    assert core.alive()
    assert core.request("app").status == 200
    # A binary that is not there: refused before anything starts; then SIGUSR2 upgrades.
    result = _upgrade(core, "--binary", "/nonexistent/tunnel-core")
    assert result.returncode == 1 and "not executable" in result.stderr, result.stderr
    core.signal(signal.SIGUSR2)
    m = core.wait_output(r"upgrade: the new process \(pid (\d+)\) is serving")
    new = int(m.group(1))
    try:
        assert core.wait_exit(GRACE + 5) == 0
        assert core.request("app").status == 200
    finally:
        if _alive(new):
            os.kill(new, signal.SIGTERM)


HTTPS_CONFIG = """\
domain: localhost
listen: {{agent: "{agent}", http: "{http}", https: "{https}", admin: "{admin}"}}
tls:
  certificates:
    - {{hostnames: ["*.localhost"], cert: "%s", key: "%s"}}
accounts:
  - {{name: default, tokens: ["test-agent-token"]}}
"""


def _make_cert(crt, key, cn):
    """A self-signed certificate for `cn` written over crt/key (renamed into place)."""
    tmp_crt, tmp_key = str(crt) + ".new", str(key) + ".new"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", tmp_key, "-out",
                    tmp_crt, "-days", "2", "-subj", "/CN=" + cn, "-addext",
                    "subjectAltName=DNS:" + cn], check=True, capture_output=True)
    os.replace(tmp_key, key)
    os.replace(tmp_crt, crt)
    with open(crt) as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


def _tls(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(s, server_hostname="app.localhost")


def _served(port):
    with _tls(port) as t:
        return hashlib.sha256(t.getpeercert(binary_form=True)).hexdigest()


def _get(t, f):
    t.sendall(b"GET /echo HTTP/1.1\r\nHost: app.localhost\r\n\r\n")
    return client.read_response(f)


def test_sighup_reads_the_certificates_again(tunnel, origin):
    crt, key = tunnel.workdir / "public.crt", tunnel.workdir / "public.key"
    first = _make_cert(crt, key, "app.localhost")
    core = tunnel.core(config_text=HTTPS_CONFIG % (crt, key))
    tunnel.agent(core, origin.addr, subdomain="app")
    https = core.ports["https"]
    assert _served(https) == first
    kept = _tls(https)  # a connection open across the reload
    kept_file = kept.makefile("rb")
    try:
        assert _get(kept, kept_file).status == 200
        second = _make_cert(crt, key, "app.localhost")
        core.signal(signal.SIGHUP)
        core.wait_output(r"SIGHUP: 2 certificates read again; new TLS handshakes use them")
        assert _served(https) == second
        assert _get(kept, kept_file).status == 200, "the open connection broke"
        # A broken certificate: logged with what is wrong, the running one stays.
        crt.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        core.signal(signal.SIGHUP)
        core.wait_output(r"SIGHUP: tls\.certificates\[0\]: .*; the running certificates stay")
        assert _served(https) == second
        assert _get(kept, kept_file).status == 200
        # A key that needs a restart is named; the rest of the reload goes on.
        _make_cert(crt, key, "app.localhost")
        core.config_path.write_text(core.config_path.read_text()
                                    + "trusted_proxies: [10.0.0.1]\n")
        core.signal(signal.SIGHUP)
        core.wait_output(r"SIGHUP: trusted_proxies changed in .*: it takes effect after a restart")
        # A configuration that does not load: its error with the line, nothing changes.
        core.config_path.write_text(core.config_path.read_text() + "limits: [\n")
        core.signal(signal.SIGHUP)
        core.wait_output(r"SIGHUP: .*core\.yaml:\d+.*the running configuration and certificates stay")
        assert core.alive() and core.request("app").status == 200
    finally:
        kept_file.close()
        kept.close()
