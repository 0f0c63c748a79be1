#!/usr/bin/python3
"""The benchmark suite (issue #4): starts every process it needs on 127.0.0.1, runs each
scenario against several paths in the same run, and writes bench/results/<date>.json and
.md. Standard library only; the tools it drives (nginx, wrk, sshd/ssh, curl, iperf3, perf)
come from scripts/install-deps.sh, and our own load tools (bench/tools: openloop,
agentflood) from `make build` (build/release/bench/tools, or --tools-dir).

Paths:   direct (client -> origin), nginx (one reverse-proxy hop), ssh -R (OpenSSH remote
         forwarding), tunnel (core + agent, TLS between them), tunnel-plain (core + agent
         over plain TCP: used when `tunnel-core --help` shows --agent-plain-addr, reported as
         not available otherwise).
Origin:  its own nginx instance serving a fixed 612-byte body, a sparse file for downloads
         and WebDAV PUT into /dev/shm for uploads; an iperf3 server for the TCP scenario.

    python3 bench/run.py --quick          # < 3 minutes
    python3 bench/run.py                  # full
    python3 bench/run.py --profile        # also perf-record core and agent (256 conns)
See docs/performance.md for what each number means.
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# The loopback port picker of the integration tests (never the same port twice in one run).
sys.path.insert(0, str(REPO / "tests" / "integration"))
from harness.client import free_port  # noqa: E402
HOST = "bench.localhost"
BODY_SIZE = 612
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

PATHS = ["direct", "nginx", "ssh", "tunnel", "tunnel-plain"]
# nginx forwards TCP and UDP with its stream module (a second nginx, "nginx-stream").
TCP_PATHS = ["direct", "nginx", "ssh", "tunnel", "tunnel-plain"]
UDP_PATHS = ["direct", "nginx", "tunnel", "tunnel-plain"]  # OpenSSH forwards TCP only
UDP_PING_SIZE = 128    # bytes per round-trip datagram: a DNS query, a game or VoIP packet
UDP_BULK_LEN = 1400    # bytes per iperf3 datagram: fits an Internet path's 1500-byte MTU
NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"  # libnginx-mod-stream
PATH_LABEL = {"direct": "direct", "nginx": "nginx", "ssh": "ssh -R", "tunnel": "tunnel",
              "tunnel-plain": "tunnel-plain"}
PLAIN_HOST = "plain.localhost"  # tunnel-plain's agent serves its own name on the same core

MODES = {
    # agent_levels: idle sessions held by agentflood (the first level stays for streams and
    # churn); streams: held requests and over how many sessions; churn: reconnects per second
    # for churn_seconds; rounds: the HTTP and TCP runs are repeated this many times, all paths
    # in turn each round, and each path keeps its best run (the load of this VM's neighbours
    # moves the baselines by up to a third between runs of the same path); churn_settle: seconds
    # before the churn's "before" and "after" RSS readings (35 in full mode: the core trims its
    # heap every 30 s, so both readings come after one trim); udp_rates: round trips per second
    # (udpping), udp_mbit: iperf3 -u offered rates, each direction, one round.
    "quick": {"conns": [32, 256], "duration": 2, "warmup": 1, "rates": [1, 1000, 4000],
              "rate_duration": 1, "tcp_seconds": 1, "bulk_mib": 128,
              "agent_levels": [1000], "streams": 2000, "stream_sessions": 4,
              "churn_rate": 20, "churn_seconds": 15, "agents_plain": True,
              "ttfr_runs": 3, "rounds": 1, "churn_settle": 1,
              "udp_rates": [10000], "udp_seconds": 2, "udp_mbit": [1000],
              "udp_bulk_seconds": 1, "agent_streams": 200, "stalled": (10, 48, 24)},
    "full": {"conns": [32, 256], "duration": 15, "warmup": 2, "rates": [1, 1000, 2000, 4000],
             "rate_duration": 10, "tcp_seconds": 10, "bulk_mib": 1024,
             "agent_levels": [1000, 10000], "agents_plain": True, "streams": 10000,
             "stream_sessions": 20,
             "churn_rate": 20, "churn_seconds": 600, "ttfr_runs": 5, "rounds": 2,
             "churn_settle": 35,
             "udp_rates": [1000, 10000, 20000], "udp_seconds": 10, "udp_mbit": [100, 300, 1000],
             "udp_bulk_seconds": 5, "agent_streams": 1000, "stalled": (30, 96, 48)},
}


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# Processes: every child is tracked and stopped (with its descendants) at the end.

def proc_stat(pid):
    """(ppid, utime+stime ticks, rss KiB) of a live pid, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[21]) * PAGE_KIB


def descendants(pid):
    """pid and every live descendant of it."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st:
                children.setdefault(st[0], []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        if proc_stat(p) is not None:
            out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid):
    """CPU (user+system) seconds of pid and its live descendants."""
    return sum((proc_stat(p) or (0, 0, 0))[1] for p in descendants(pid)) / CLK_TCK


def rss_kib(pid, tree=False):
    """VmRSS of pid (from /proc/PID/status), or the sum over its tree."""
    if tree:
        return sum((proc_stat(p) or (0, 0, 0))[2] for p in descendants(pid))
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_detail(pid):
    """RssAnon (the process's own heap and stacks), RssFile (mapped binaries and libraries,
    shared with other processes) and Pss from /proc, in KiB."""
    out = {}
    for fname, keys in (("status", ("RssAnon", "RssFile")), ("smaps_rollup", ("Pss",))):
        try:
            with open("/proc/%d/%s" % (pid, fname)) as f:
                for line in f:
                    k = line.split(":", 1)[0]
                    if k in keys:
                        out[k.lower() + "_kib"] = int(line.split()[1])
        except OSError:
            pass
    return out


class Procs:
    def __init__(self, tmp):
        self.tmp = tmp
        self.started = []  # (name, Popen, log file)

    def start(self, name, argv, stdin=subprocess.DEVNULL, stdout=None, env=None):
        logf = open(self.tmp / ("%s.log" % name), "ab")
        p = subprocess.Popen([str(a) for a in argv], stdin=stdin,
                             stdout=stdout if stdout is not None else logf, stderr=logf,
                             cwd=self.tmp, env=env, start_new_session=True)
        self.started.append((name, p, logf))
        return p

    def log_tail(self, name, lines=20):
        try:
            text = (self.tmp / ("%s.log" % name)).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, p, timeout=10.0):
        """SIGTERM to the process and its descendants (sshd's session children leave its
        process group), SIGKILL what is left after timeout."""
        pids = descendants(p.pid) if p.poll() is None else []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p.poll()
            if all(proc_stat(pid) is None or pid == p.pid and p.returncode is not None
                   for pid in pids):
                break
            time.sleep(0.05)
        for pid in pids:
            if proc_stat(pid) is not None and not (pid == p.pid and p.poll() is not None):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def stop_all(self):
        for name, p, logf in reversed(self.started):
            self.stop(p)
            logf.close()
        self.started = []


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


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return 0


class LineReader:
    """Reads lines from a child's stdout with a timeout (select on the raw fd)."""

    def __init__(self, f):
        self.fd = f.fileno()
        self.buf = b""

    def readline(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    return None
                self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode(errors="replace")


# ---------------------------------------------------------------------------------------
# The paths under test.

NGINX_COMMON = """daemon off;
{user}
master_process on;
worker_processes {workers};
pid {dir}/{name}.pid;
error_log {dir}/{name}-error.log warn;
worker_rlimit_nofile 16384;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_timeout 75s; keepalive_requests 100000000;
  default_type application/octet-stream;
  client_body_temp_path {shm}/{name}-body;
  proxy_temp_path {dir}/{name}-proxy; fastcgi_temp_path {dir}/{name}-fcgi;
  uwsgi_temp_path {dir}/{name}-uwsgi; scgi_temp_path {dir}/{name}-scgi;
{server}
}}
"""

ORIGIN_SERVER = """  server {{
    listen 127.0.0.1:{port} backlog=4096;
    root {dir}/www;
    location = / {{ try_files /index.html =404; }}
    location = /big {{ }}
    location = /origin_status {{ stub_status; }}
    location /upload/ {{
      root {shm}; dav_methods PUT; create_full_put_path on; client_max_body_size 0;
    }}
  }}"""

PROXY_SERVER = """  upstream origin {{ server 127.0.0.1:{origin}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    client_max_body_size 0;
    location / {{
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering off;
      proxy_max_temp_file_size 0;
    }}
  }}"""

NGINX_STREAM = """daemon off;
{user}
master_process on;
worker_processes {workers};
pid {dir}/{name}.pid;
error_log {dir}/{name}-error.log warn;
load_module {module};
worker_rlimit_nofile 16384;
events {{ worker_connections 8192; }}
stream {{
{servers}
}}
"""

SSHD_CONFIG = """Port {port}
ListenAddress 127.0.0.1
HostKey {dir}/ssh_host_ed25519_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
GatewayPorts no
UsePAM no
StrictModes no
PrintMotd no
"""


class Flood:
    """bench/tools/agentflood as a child: one command per line on its stdin, one JSON line
    back on its stdout per command."""

    def __init__(self, procs, argv):
        self.procs = procs
        self.p = procs.start("agentflood", argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.lines = LineReader(self.p.stdout)

    def send(self, line):
        self.p.stdin.write((line + "\n").encode())
        self.p.stdin.flush()

    def read(self, timeout):
        got = self.lines.readline(timeout)
        if got is None:
            return None
        ev = json.loads(got)
        if ev.get("event") == "error":
            raise RuntimeError("agentflood: %s" % ev.get("error"))
        return ev

    def command(self, line, timeout):
        self.send(line)
        ev = self.read(timeout)
        if ev is None:
            raise RuntimeError("agentflood: no answer to %r within %d s: %s" % (
                line, timeout, self.procs.log_tail("agentflood", 3)))
        return ev

    def stop(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        self.procs.stop(self.p)


def best_of(settings):
    rounds = settings.get("rounds", 1)
    return ", best of %d rounds taken in turn" % rounds if rounds > 1 else ""


def keep_best(results, key, r, metric):
    """Stores run `r` under results[key] if it beats the run already there on `metric`; every
    round's value stays listed in "rounds". Returns whether `r` was kept."""
    prev = results.get(key)
    r["rounds"] = (prev.get("rounds", []) if prev else []) + [r.get(metric)]
    if prev is None or (r.get(metric) or 0) > (prev.get(metric) or 0):
        results[key] = r
        return True
    prev["rounds"] = r["rounds"]
    return False


def round_label(rnd, rounds):
    return " (round %d/%d)" % (rnd + 1, rounds) if rounds > 1 else ""


class Bench:
    def __init__(self, args, mode):
        self.args = args
        self.mode = mode
        self.cfg = dict(MODES[mode])
        if args.conns:
            self.cfg["conns"] = [int(c) for c in args.conns.split(",")]
        if args.duration:
            self.cfg["duration"] = args.duration
        if args.agents:
            self.cfg["agent_levels"] = [int(a) for a in args.agents.split(",")]
        if args.churn_seconds is not None:
            self.cfg["churn_seconds"] = args.churn_seconds
        if args.rounds:
            self.cfg["rounds"] = args.rounds
        self.tmp = Path(tempfile.mkdtemp(prefix="tunnel-bench-"))
        self.shm = Path(tempfile.mkdtemp(prefix="tunnel-bench-", dir="/dev/shm"))
        self.procs = Procs(self.tmp)
        self.ports = {}      # path -> public HTTP port the client talks to
        self.hosts = {}      # path -> Host header for that port
        self.tcp_ports = {}  # path -> port that reaches the iperf3 server
        self.udp_ports = {}  # path -> UDP port that reaches the udpping echo server
        self.udp_iperf_ports = {}  # path -> port reaching iperf3 over both TCP and UDP (iperf3 -u)
        self.udp_echo_port = None
        self.pids = {}       # role -> pid, for CPU/RSS readings
        self.result = {"paths": {}, "scenarios": {}, "notes": []}
        self.bin = self.tmp / "bin"
        self.tools = {}      # openloop/agentflood -> private copy, when built
        self.iperf_port = None
        self.core = None     # the tunnel-core Popen once started (tunnel and tunnel-plain)

    # --- setup ----------------------------------------------------------------------
    def setup(self):
        self.bin.mkdir()
        src = Path(self.args.bin_dir)
        for b in ("tunnel-core", "tunnel-agent"):
            # A private copy: others may rebuild build/release while the suite runs.
            shutil.copy2(src / b, self.bin / b)
        for t in TOOLS:
            f = Path(self.args.tools_dir) / t
            if f.exists():
                shutil.copy2(f, self.bin / t)
                self.tools[t] = self.bin / t
            else:
                self.result["notes"].append(
                    "%s not found in %s (run `make build`): the scenarios using it are skipped"
                    % (t, self.args.tools_dir))
        self.plain_why = self.plain_support()
        www = self.tmp / "www"
        www.mkdir()
        page = (b"<!DOCTYPE html>\n<html><head><title>bench</title></head><body>\n"
                + b"<p>tunnel benchmark page</p>\n")
        page += b"x" * (BODY_SIZE - len(page) - len(b"\n</body></html>\n")) + b"\n</body></html>\n"
        assert len(page) == BODY_SIZE
        (www / "index.html").write_bytes(page)
        with open(www / "big", "wb") as f:
            f.truncate(self.cfg["bulk_mib"] << 20)  # sparse: no disk, pages come from cache
        with open(self.tmp / "upload.bin", "wb") as f:
            f.truncate(self.cfg["bulk_mib"] << 20)

        self.start_origin()
        if self.want("tcp") or self.want("udp"):
            self.start_iperf()
        if self.want("udp"):
            self.start_udp_echo()
        for path in self.args.paths:
            if path == "tunnel-plain" and self.plain_why:
                self.result["paths"][path] = {"available": False, "why": self.plain_why}
                continue
            try:
                getattr(self, "start_" + path.replace("-", "_"))()
                self.hosts.setdefault(path, HOST)
                self.result["paths"][path] = {"available": True, "port": self.ports[path]}
            except Exception as e:  # noqa: BLE001 - one broken path must not end the run
                log("path %s unavailable: %s" % (path, e))
                self.result["paths"][path] = {"available": False, "why": str(e)}

    def want(self, scenario):
        return not self.args.only or scenario in self.args.only

    def plain_support(self):
        """None when core and agent have the plain-TCP agent mode, else why not. Detected at
        run time from --help, so the suite picks it up as soon as it lands."""
        def helptext(cmd):
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
                return r.stdout + r.stderr
            except (OSError, subprocess.TimeoutExpired):
                return ""
        core = helptext([str(self.bin / "tunnel-core"), "--help"])
        agent = helptext([str(self.bin / "tunnel-agent"), "--help"])
        if "--agent-plain-addr" not in core:
            return "not available: this tunnel-core has no --agent-plain-addr (no plain-TCP agent mode)"
        if "--plain" not in agent:
            return "not available: this tunnel-agent has no --plain"
        return None

    def nginx(self, name, server, workers):
        conf = self.tmp / ("%s.conf" % name)
        conf.write_text(NGINX_COMMON.format(
            workers=workers, dir=self.tmp, shm=self.shm, name=name, server=server,
            user="user root;" if os.getuid() == 0 else ""))  # workers must read the 0700 temp dir
        (self.shm / ("%s-body" % name)).mkdir(exist_ok=True)
        return self.procs.start(name, ["nginx", "-c", conf, "-p", self.tmp])

    def start_origin(self):
        port = free_port()
        p = self.nginx("origin", ORIGIN_SERVER.format(port=port, dir=self.tmp, shm=self.shm),
                       self.args.nginx_workers)
        self.pids["origin"] = p.pid
        self.origin_port = port
        wait_serving("origin nginx", port)

    def start_iperf(self):
        if not shutil.which("iperf3"):
            self.result["notes"].append("iperf3 not installed (scripts/install-deps.sh): no TCP scenario")
            return
        port = free_port()
        p = self.procs.start("iperf3", ["iperf3", "-s", "-B", "127.0.0.1", "-p", port])
        wait_for("iperf3 -s to listen", lambda: listening(port) or p.poll() is not None)
        if p.poll() is not None:
            self.result["notes"].append("iperf3 -s exited: " + self.procs.log_tail("iperf3", 3))
            return
        self.iperf_port = port
        self.pids["iperf3"] = p.pid
        self.result["iperf3_version"] = subprocess.run(
            ["iperf3", "--version"], capture_output=True, text=True).stdout.splitlines()[0]

    def start_udp_echo(self):
        if "udpping" not in self.tools:
            self.result["notes"].append("udpping not built: no UDP round trips")
            return
        port = free_port(socket.SOCK_DGRAM)
        p = self.procs.start("udp-echo", [self.tools["udpping"], "--echo", "--port", port])
        wait_for("the udpping echo server", lambda: udp_bound(port) or p.poll() is not None)
        if p.poll() is not None:
            self.result["notes"].append("udpping --echo exited: " + self.procs.log_tail("udp-echo", 3))
            return
        self.udp_echo_port = port
        self.pids["udp-echo"] = p.pid

    def start_direct(self):
        self.ports["direct"] = self.origin_port
        if self.iperf_port:
            self.tcp_ports["direct"] = self.iperf_port
            self.udp_iperf_ports["direct"] = self.iperf_port
        if self.udp_echo_port:
            self.udp_ports["direct"] = self.udp_echo_port

    def start_nginx(self):
        port = free_port()
        p = self.nginx("proxy", PROXY_SERVER.format(port=port, origin=self.origin_port),
                       self.args.nginx_workers)
        self.pids["nginx"] = p.pid
        self.ports["nginx"] = port
        wait_serving("nginx proxy", port)
        if self.want("udp") or self.want("tcp"):
            try:
                self.start_nginx_stream()
            except RuntimeError as e:
                self.result["notes"].append("nginx stream proxy (TCP and UDP): %s" % e)

    def start_nginx_stream(self):
        """nginx's stream module as the TCP and UDP proxy hop: one server to the echo server,
        one on a port that proxies TCP and UDP alike to iperf3 (the TCP scenario, and iperf3 -u,
        which runs its control connection over TCP on the same port)."""
        if not os.path.exists(NGINX_STREAM_MODULE):
            raise RuntimeError("not available: %s missing (libnginx-mod-stream, "
                               "scripts/install-deps.sh)" % NGINX_STREAM_MODULE)
        servers, echo, iport = [], None, None
        if self.udp_echo_port:
            echo = free_port(socket.SOCK_DGRAM)
            servers.append("  server { listen 127.0.0.1:%d udp reuseport; proxy_pass 127.0.0.1:%d;"
                           " proxy_timeout 60s; }" % (echo, self.udp_echo_port))
        if self.iperf_port:
            iport = free_port()
            servers.append("  server { listen 127.0.0.1:%d; listen 127.0.0.1:%d udp reuseport;"
                           " proxy_pass 127.0.0.1:%d; proxy_timeout 60s; }"
                           % (iport, iport, self.iperf_port))
        conf = self.tmp / "stream.conf"
        conf.write_text(NGINX_STREAM.format(
            workers=self.args.nginx_workers, dir=self.tmp, name="stream",
            module=NGINX_STREAM_MODULE, servers="\n".join(servers),
            user="user root;" if os.getuid() == 0 else ""))
        p = self.procs.start("nginx-stream", ["nginx", "-c", conf, "-p", self.tmp])
        ports = [x for x in (echo, iport) if x]
        wait_for("nginx stream to listen", lambda: p.poll() is not None or all(
            udp_bound(x) for x in ports))
        if p.poll() is not None:
            raise RuntimeError("nginx (stream) exited: " + self.procs.log_tail("nginx-stream", 3))
        self.pids["nginx-stream"] = p.pid
        if echo:
            self.udp_ports["nginx"] = echo
        if iport:
            self.udp_iperf_ports["nginx"] = iport
            self.tcp_ports["nginx"] = iport

    def start_ssh(self):
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        if not os.path.exists(sshd) or not shutil.which("ssh"):
            raise RuntimeError("sshd/ssh not installed (scripts/install-deps.sh)")
        if os.getuid() == 0 and not os.path.isdir("/run/sshd"):
            os.makedirs("/run/sshd", mode=0o755)  # sshd's privilege-separation directory
        for key in ("ssh_host_ed25519_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                            str(self.tmp / key)], check=True)
        shutil.copy(self.tmp / "client_key.pub", self.tmp / "authorized_keys")
        sport = free_port()
        (self.tmp / "sshd_config").write_text(SSHD_CONFIG.format(port=sport, dir=self.tmp))
        d = self.procs.start("sshd", [sshd, "-f", self.tmp / "sshd_config", "-D", "-e"])
        wait_for("sshd to listen", lambda: self._connects(sport) or d.poll() is not None)
        if d.poll() is not None:
            raise RuntimeError("sshd exited: " + self.procs.log_tail("sshd"))
        fport = free_port()
        forwards = ["-R", "127.0.0.1:%d:127.0.0.1:%d" % (fport, self.origin_port)]
        tport = None
        if self.iperf_port:
            # The same ssh connection also forwards the iperf3 port (TCP scenario).
            tport = free_port()
            forwards += ["-R", "127.0.0.1:%d:127.0.0.1:%d" % (tport, self.iperf_port)]
        user = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True,
                                                       text=True).stdout.strip()
        c = self.procs.start("ssh", [
            "ssh", "-N", "-F", "/dev/null"] + forwards + [
            "-p", sport, "-i", self.tmp / "client_key", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "ExitOnForwardFailure=yes", "-o", "LogLevel=ERROR", "%s@127.0.0.1" % user])
        try:
            wait_serving("ssh -R forward", fport)
        except RuntimeError:
            raise RuntimeError("ssh -R did not forward: %s %s" % (
                self.procs.log_tail("ssh", 5), self.procs.log_tail("sshd", 5)))
        if tport:
            try:
                wait_for("ssh -R iperf3 forward", lambda: listening(tport), timeout=10)
                self.tcp_ports["ssh"] = tport
            except RuntimeError as e:
                self.result["notes"].append("ssh -R of the iperf3 port: %s" % e)
        self.pids["sshd"] = d.pid
        self.pids["ssh"] = c.pid
        self.ports["ssh"] = fport
        self.result["ssh_version"] = subprocess.run(["ssh", "-V"], capture_output=True,
                                                    text=True).stderr.strip()

    @staticmethod
    def _connects(port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def ensure_core(self):
        """Starts tunnel-core once (TLS agent port, and the plain one when supported)."""
        if self.core is not None:
            return
        self.core_ports = {k: free_port() for k in ("agent", "http", "admin")}
        self.token = "bench-token-%d" % os.getpid()
        data = self.tmp / "core-data"
        argv = [self.bin / "tunnel-core", "--data-dir", data,
                "--agent-addr", "127.0.0.1:%d" % self.core_ports["agent"],
                "--http-addr", "127.0.0.1:%d" % self.core_ports["http"],
                "--admin-addr", "127.0.0.1:%d" % self.core_ports["admin"],
                "--config", self.tmp / "core.yaml", "--log-level", self.args.log_level]
        if "tunnel-plain" in self.args.paths and not self.plain_why:
            self.core_ports["agent_plain"] = free_port()
            argv += ["--agent-plain-addr", "127.0.0.1:%d" % self.core_ports["agent_plain"]]
        # One account with no agent limit: the agents scenario opens thousands.
        (self.tmp / "core.yaml").write_text(
            'accounts:\n  - name: bench\n    tokens: ["%s"]\n    max_agents: 0\n' % self.token)
        if self.args.workers:
            argv += ["--workers", self.args.workers]
        core = self.procs.start("core", argv)
        self.core = core
        self.pids["core"] = core.pid
        self.ca = data / "tls.crt"
        wait_for("tunnel-core to be ready", lambda: core.poll() is not None or (
            self.ca.exists() and http_get(self.core_ports["admin"], "127.0.0.1", "/healthz")[0] == 200))
        if core.poll() is not None:
            raise RuntimeError("tunnel-core exited: " + self.procs.log_tail("core"))
        time.sleep(0.5)
        self.result["memory_core_no_agent_kib"] = rss_kib(core.pid)

    def start_tunnel(self):
        self.ensure_core()
        agent = self.start_agent(["http", "127.0.0.1:%d" % self.origin_port, "--subdomain", "bench"])
        self.pids["agent"] = agent.pid
        self.ports["tunnel"] = self.core_ports["http"]
        self.hosts["tunnel"] = HOST
        wait_serving("the tunnel", self.ports["tunnel"])
        # The idle targets are for a core with one agent that served a request: read it now,
        # before the other bench agents (tcp, plain) connect.
        time.sleep(1.0)
        self.result["memory_core_one_agent_kib"] = rss_kib(self.pids["core"])
        self.result["memory_core_one_agent_detail"] = rss_detail(self.pids["core"])
        if self.iperf_port:
            self.start_tcp_agent("tunnel")
        if self.want("udp"):
            self.start_udp_agent("tunnel")

    def start_tunnel_plain(self):
        self.ensure_core()
        agent = self.start_agent(["http", "127.0.0.1:%d" % self.origin_port, "--subdomain",
                                  PLAIN_HOST.split(".")[0]], name="agent-plain", plain=True)
        self.pids["agent-plain"] = agent.pid
        self.ports["tunnel-plain"] = self.core_ports["http"]
        self.hosts["tunnel-plain"] = PLAIN_HOST
        wait_serving("the plain tunnel", self.ports["tunnel-plain"], host=PLAIN_HOST)
        if self.iperf_port:
            self.start_tcp_agent("tunnel-plain")
        if self.want("udp"):
            self.start_udp_agent("tunnel-plain")

    def start_tcp_agent(self, path):
        """A tcp tunnel to the iperf3 server (`tunnel-agent tcp PORT --remote-port P`)."""
        plain = path == "tunnel-plain"
        role = "agent-tcp-plain" if plain else "agent-tcp"
        rport = free_port()
        a = self.start_agent(["tcp", "127.0.0.1:%d" % self.iperf_port, "--remote-port", rport],
                             name=role, plain=plain)
        try:
            wait_for("the %s tcp tunnel port" % path, lambda: listening(rport) or a.poll() is not None,
                     timeout=15)
            if a.poll() is not None:
                raise RuntimeError("tunnel-agent tcp exited: " + self.procs.log_tail(role, 3))
        except RuntimeError as e:
            self.result["notes"].append("%s tcp tunnel: %s" % (path, e))
            return
        self.pids[role] = a.pid
        self.tcp_ports[path] = rport

    def start_udp_agent(self, path):
        """One agent with two udp tunnels (`tunnel-agent start --config`): to the udpping echo
        server, and to iperf3 on the same port number as the path's tcp tunnel to it (iperf3 -u
        needs both: tcp and udp ports are separate claims on the core)."""
        plain = path == "tunnel-plain"
        role = "agent-udp-plain" if plain else "agent-udp"
        tunnels, echo, iport = [], None, None
        if self.udp_echo_port:
            echo = free_port(socket.SOCK_DGRAM)
            tunnels.append((self.udp_echo_port, echo))
        if self.iperf_port and self.tcp_ports.get(path):
            iport = self.tcp_ports[path]
            tunnels.append((self.iperf_port, iport))
        if not tunnels:
            return
        cfg = self.tmp / ("%s.yaml" % role)
        cfg.write_text("tunnels:\n" + "".join(
            "  - type: udp\n    local: 127.0.0.1:%d\n    remote_port: %d\n" % t for t in tunnels))
        a = self.start_agent(["start", "--config", cfg], name=role, plain=plain)
        try:
            wait_for("the %s udp tunnel ports" % path, lambda: a.poll() is not None or all(
                udp_bound(p) for _, p in tunnels), timeout=15)
            if a.poll() is not None:
                raise RuntimeError("tunnel-agent start exited: " + self.procs.log_tail(role, 3))
        except RuntimeError as e:
            self.result["notes"].append("%s udp tunnels: %s" % (path, e))
            return
        self.pids[role] = a.pid
        if echo:
            self.udp_ports[path] = echo
        if iport:
            self.udp_iperf_ports[path] = iport

    def start_agent(self, tunnel_args, name="agent", plain=False, core=None):
        """A tunnel-agent for the paths' core, or over TLS for `core` = (agent port, CA file)."""
        argv = [self.bin / "tunnel-agent", "--token", self.token,
                "--data-dir", self.tmp / "agent-data", "--log-level", self.args.log_level]
        if core:
            argv += ["--server", "127.0.0.1:%d" % core[0], "--ca", core[1]]
        elif plain:
            argv += ["--server", "127.0.0.1:%d" % self.core_ports["agent_plain"], "--plain"]
        else:
            argv += ["--server", "127.0.0.1:%d" % self.core_ports["agent"], "--ca", self.ca]
        return self.procs.start(name, argv + list(tunnel_args))

    def available(self):
        return [p for p in self.args.paths if self.result["paths"].get(p, {}).get("available")]

    # --- load tools -----------------------------------------------------------------
    def wrk(self, port, conns, duration, host=HOST, threads=None):
        """Runs wrk; returns requests/s, latency percentiles (us) and error counts."""
        script = self.tmp / "wrk.lua"
        script.write_text(WRK_LUA)
        threads = threads or max(1, min(conns, self.args.wrk_threads))
        cmd = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % duration, "--latency",
               "--timeout", "5s", "-H", "Host: %s" % host, "-s", str(script),
               "http://127.0.0.1:%d/" % port]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
        m = re.search(r"^BENCHJSON (.*)$", out.stdout, re.M)
        if not m:
            raise RuntimeError("wrk gave no result: %s %s" % (out.stdout[-500:], out.stderr[-500:]))
        r = json.loads(m.group(1))
        secs = r.pop("duration_us") / 1e6
        r["rps"] = round(r["requests"] / secs, 1) if secs else 0.0
        r["errors"] = sum(r.pop(k) for k in ("e_connect", "e_read", "e_write", "e_status",
                                             "e_timeout"))
        r["bytes_per_request"] = round(r.pop("bytes") / max(1, r["requests"]), 1)
        return r

    def openloop(self, port, host, rate, duration, conns):
        """Runs bench/tools/openloop: a fixed schedule of `rate` requests/s; latency from each
        request's scheduled time (coordinated omission counted)."""
        cmd = [str(self.tools["openloop"]), "--port", str(port), "--host-header", host,
               "--rate", str(rate), "--duration", str(duration), "--connections", str(conns),
               "--timeout", "5"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30)
        try:
            return json.loads(out.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise RuntimeError("openloop gave no result: %s %s" % (out.stdout[-300:],
                                                                   out.stderr[-300:]))

    @staticmethod
    def run_iperf(args, reverse, seconds):
        """Runs `iperf3 -c 127.0.0.1 ARGS -t SECONDS -J [-R]`; its JSON `end` object, or
        {"error": ...}."""
        cmd = ["iperf3", "-c", "127.0.0.1"] + args + [
            "-t", str(seconds), "-J", "--connect-timeout", "5000"] + (["-R"] if reverse else [])
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            return {"error": "%s did not finish within %d s" % (" ".join(cmd[:2] + args[2:3]),
                                                                seconds + 30)}
        try:
            j = json.loads(out.stdout)
        except ValueError:
            return {"error": (out.stdout + out.stderr).strip()[-300:] or "no output"}
        if j.get("error"):
            return {"error": j["error"]}
        return j.get("end", {})

    def iperf(self, port, streams, reverse, seconds):
        """One iperf3 run; Gbit/s as counted by the receiver."""
        end = self.run_iperf(["-p", str(port), "-P", str(streams)], reverse, seconds)
        if end.get("error"):
            return end
        recv, sent = end.get("sum_received", {}), end.get("sum_sent", {})
        return {"gbit_s": round(recv.get("bits_per_second", 0) / 1e9, 3),
                "bytes": recv.get("bytes", 0), "seconds": round(recv.get("seconds", 0), 2),
                "retransmits": sent.get("retransmits")}

    def iperf_udp(self, port, mbit, reverse, seconds):
        """One iperf3 -u run at an offered rate of `mbit` Mbit/s in UDP_BULK_LEN datagrams;
        what the receiver counted."""
        end = self.run_iperf(["-p", str(port), "-u", "-b", "%dM" % mbit, "-l", str(UDP_BULK_LEN)],
                             reverse, seconds)
        if end.get("error"):
            return end
        recv = end.get("sum_received") or end.get("sum", {})
        return {"offered_mbit_s": mbit, "mbit_s": round(recv.get("bits_per_second", 0) / 1e6, 1),
                "bytes": recv.get("bytes", 0), "datagrams": recv.get("packets", 0),
                "lost": recv.get("lost_packets", 0),
                "loss_pct": round(recv.get("lost_percent", 0.0), 3),
                "jitter_ms": round(recv.get("jitter_ms", 0.0), 3)}

    def udpping(self, port, rate, seconds, flows=4):
        """One udpping run: `rate` round trips per second over `flows` source ports."""
        cmd = [str(self.tools["udpping"]), "--port", str(port), "--rate", str(rate),
               "--duration", str(seconds), "--size", str(UDP_PING_SIZE), "--flows", str(flows),
               "--timeout", "0.5" if self.mode == "quick" else "1"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
        try:
            return json.loads(out.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise RuntimeError("udpping gave no result: %s %s" % (out.stdout[-300:],
                                                                  out.stderr[-300:]))

    def origin_accepts(self):
        st, body = http_get(self.origin_port, "127.0.0.1", "/origin_status")
        m = re.search(rb"\n\s*(\d+)\s+\d+\s+\d+", body) if st == 200 else None
        return int(m.group(1)) if m else 0

    def cpu_roles(self, path, tcp=False, udp=None):
        """The processes whose CPU a run through `path` counts; udp: "ping" or "bulk"."""
        if udp:
            roles = {"tunnel": ["core", "agent-udp"], "tunnel-plain": ["core", "agent-udp-plain"],
                     "nginx": ["nginx-stream"]}.get(path, [])
            return roles + ["udp-echo" if udp == "ping" else "iperf3"]
        roles = {"tunnel": ["core", "agent-tcp" if tcp else "agent"],
                 "tunnel-plain": ["core", "agent-tcp-plain" if tcp else "agent-plain"],
                 "nginx": ["nginx-stream" if tcp else "nginx"], "ssh": ["sshd", "ssh"],
                 "direct": []}.get(path, [])
        return roles + ["iperf3" if tcp else "origin"]

    def cpu_snapshot(self, path, tcp=False, udp=None):
        return {r: cpu_seconds(self.pids[r]) for r in self.cpu_roles(path, tcp, udp)
                if r in self.pids}

    @staticmethod
    def cpu_delta(before, after):
        return {r: round(after[r] - before[r], 3) for r in before}

    # --- scenarios ------------------------------------------------------------------
    def scenario_memory_idle(self):
        """Idle RSS of core and agent (one agent connected, one request served, at rest),
        and of the other paths' forwarding processes for comparison."""
        time.sleep(1.0)
        mem = {}
        if "core" in self.pids:
            mem["core_no_agent_kib"] = self.result.pop("memory_core_no_agent_kib", None)
            mem["core_idle_kib"] = self.result.pop("memory_core_one_agent_kib", None)
            mem["core_idle_detail"] = self.result.pop("memory_core_one_agent_detail", None)
            mem["core_all_agents_kib"] = rss_kib(self.pids["core"])
            mem["core_all_agents_connected"] = sum(1 for r in self.pids if r.startswith("agent"))
        if "agent" in self.pids:
            mem["agent_idle_kib"] = rss_kib(self.pids["agent"])
            mem["agent_idle_detail"] = rss_detail(self.pids["agent"])
        if "nginx" in self.pids:
            mem["nginx_proxy_tree_kib"] = rss_kib(self.pids["nginx"], tree=True)
        if "sshd" in self.pids:
            mem["sshd_tree_kib"] = rss_kib(self.pids["sshd"], tree=True)
            mem["ssh_client_kib"] = rss_kib(self.pids["ssh"])
        self.result["scenarios"]["memory"] = mem
        log("memory idle: %s" % mem)

    def scenario_ttfr(self):
        """Time from starting a fresh agent to the first request answered through it."""
        if "core" not in self.pids:
            return
        runs = []
        for i in range(self.cfg["ttfr_runs"]):
            sub = "ttfr%d" % i
            t0 = time.monotonic()
            a = self.start_agent(["http", "127.0.0.1:%d" % self.origin_port, "--subdomain", sub],
                                 name="agent-ttfr")
            try:
                def served():
                    st, body = http_get(self.core_ports["http"], "%s.localhost" % sub, "/", 1.0)
                    return st == 200 and len(body) == BODY_SIZE
                wait_for("agent %s to serve" % sub, served, timeout=20, interval=0.002)
                runs.append(round((time.monotonic() - t0) * 1000, 1))
            finally:
                self.procs.stop(a)
        self.result["scenarios"]["time_to_first_request_ms"] = {
            "runs": runs, "median": sorted(runs)[len(runs) // 2], "min": min(runs)}
        log("time to first request (ms): %s" % runs)

    def scenario_http(self):
        out = self.result["scenarios"]["http_612"] = {}
        cpu = self.result["scenarios"].setdefault("cpu", {})
        rounds = self.cfg["rounds"]
        for rnd, conns, path in ((r, c, p) for r in range(rounds) for c in self.cfg["conns"]
                                 for p in self.available()):
            port, host = self.ports[path], self.hosts[path]
            self.wrk(port, conns, self.cfg["warmup"], host)
            before = self.cpu_snapshot(path)
            accepts = self.origin_accepts()
            profile = (self.args.profile and rnd == 0 and path == "tunnel"
                       and conns == max(self.cfg["conns"]))
            perf = self.start_perf() if profile else []
            r = self.wrk(port, conns, self.cfg["duration"], host)
            self.finish_perf(perf)
            d = self.cpu_delta(before, self.cpu_snapshot(path))
            r["cpu_seconds"] = d
            # New TCP connections the origin accepted per 1000 requests: 0 when the path
            # keeps its upstream connections alive and reuses them.
            r["origin_conns_per_1k_requests"] = round(
                (self.origin_accepts() - accepts - 1) * 1000 / max(1, r["requests"]), 2)
            r["cpu_s_per_10k_requests"] = {k: round(v * 1e4 / max(1, r["requests"]), 4)
                                           for k, v in d.items()}
            if keep_best(out.setdefault(path, {}), str(conns), r, "rps"):
                cpu.setdefault(path, {})["per_10k_requests_c%d" % conns] = \
                    r["cpu_s_per_10k_requests"]
            log("http %s c=%d%s: %.0f req/s p50 %dus p99 %dus p99.9 %dus errors %d" % (
                path, conns, round_label(rnd, rounds), r["rps"], r["p50"], r["p99"],
                r["p999"], r["errors"]))

    def scenario_rate(self):
        """Fixed request rates with openloop (open loop: latency from the schedule)."""
        if "openloop" not in self.tools:
            self.result["notes"].append("fixed rates skipped: openloop not built")
            return
        out = self.result["scenarios"]["fixed_rate"] = {}
        for rate in self.cfg["rates"]:
            # Enough connections that each has 50 ms per request at the target rate; a path
            # slower than that makes requests queue, which the latency then shows.
            conns = max(1, min(256, rate // 20))
            # At 1 req/s a short run has too few samples: at least 10 s (2 s in quick mode).
            duration = self.cfg["rate_duration"] if rate >= 100 else max(
                self.cfg["rate_duration"], 2 if self.mode == "quick" else 10)
            for path in self.available():
                r = self.openloop(self.ports[path], self.hosts[path], rate, duration, conns)
                out.setdefault(path, {})[str(rate)] = r
                log("rate %s %d/s: got %.0f/s p50 %dus p99 %dus p99.9 %dus errors %d (send lag p99 %dus)" % (
                    path, rate, r["achieved_rps"], r["p50"], r["p99"], r["p999"], r["errors"],
                    r["send_lag_p99"]))

    def scenario_tcp(self):
        """TCP bulk through each path with iperf3: 1 and 8 streams, both directions."""
        if not self.iperf_port:
            return
        out = self.result["scenarios"]["tcp"] = {}
        cpu = self.result["scenarios"].setdefault("cpu_tcp", {})
        secs = self.cfg["tcp_seconds"]
        rounds = self.cfg["rounds"]
        for rnd, streams, reverse in ((r, n, rev) for r in range(rounds) for n in (1, 8)
                                      for rev in (False, True)):
            direction = "down" if reverse else "up"
            for path in TCP_PATHS:
                port = self.tcp_ports.get(path)
                if path not in self.available() or not port:
                    continue
                before = self.cpu_snapshot(path, tcp=True)
                r = self.iperf(port, streams, reverse, secs)
                if r.get("error"):
                    # iperf3 -s serves one test at a time and can be left busy by a
                    # failed one: one retry.
                    log("tcp %s P=%d %s: %s; retrying" % (path, streams, direction, r["error"]))
                    time.sleep(1)
                    before = self.cpu_snapshot(path, tcp=True)
                    r = self.iperf(port, streams, reverse, secs)
                d = self.cpu_delta(before, self.cpu_snapshot(path, tcp=True))
                gib = r.get("bytes", 0) / float(1 << 30)
                r["cpu_seconds"] = d
                if gib > 0:
                    r["cpu_s_per_gib"] = {k: round(v / gib, 3) for k, v in d.items()}
                key = "%s_%d" % (direction, streams)
                if keep_best(out.setdefault(path, {}), key, r, "gbit_s") and gib > 0:
                    cpu.setdefault(path, {})[key] = r["cpu_s_per_gib"]
                log("tcp %s P=%d %s%s: %s Gbit/s%s" % (
                    path, streams, direction, round_label(rnd, rounds), r.get("gbit_s"),
                    " (%s)" % r["error"] if r.get("error") else ""))

    def scenario_udp(self):
        """UDP through each path: round trips at fixed rates (udpping, 4 flows), then iperf3 -u
        at fixed offered rates in both directions; loss, latency, jitter, CPU."""
        out = self.result["scenarios"]["udp"] = {"ping": {}, "bulk": {}}
        for path in UDP_PATHS:
            if path in self.args.paths and path not in self.udp_ports and \
                    path not in self.udp_iperf_ports:
                out.setdefault("unavailable", {})[path] = (
                    self.result["paths"].get(path, {}).get("why") or "no udp path set up")
        for rate in self.cfg["udp_rates"]:
            for path in UDP_PATHS:
                port = self.udp_ports.get(path)
                if not port:
                    continue
                before = self.cpu_snapshot(path, udp="ping")
                r = self.udpping(port, rate, self.cfg["udp_seconds"])
                d = self.cpu_delta(before, self.cpu_snapshot(path, udp="ping"))
                if r["received"]:
                    # CPU-us per round trip (a datagram each way)
                    r["cpu_us_per_round_trip"] = {k: round(v * 1e6 / r["received"], 1)
                                                  for k, v in d.items()}
                out["ping"].setdefault(path, {})[str(rate)] = r
                log("udp ping %s %d/s: p50 %dus p99 %dus p99.9 %dus lost %.2f%% (send lag p99 %dus)"
                    % (path, rate, r["p50"], r["p99"], r["p999"], r["loss_pct"],
                       r["send_lag_p99"]))
        secs = self.cfg["udp_bulk_seconds"]
        for mbit in self.cfg["udp_mbit"]:
            for reverse in (False, True):
                key = "%s_%d" % ("down" if reverse else "up", mbit)
                for path in UDP_PATHS:
                    port = self.udp_iperf_ports.get(path)
                    if not port:
                        continue
                    before = self.cpu_snapshot(path, udp="bulk")
                    r = self.iperf_udp(port, mbit, reverse, secs)
                    if r.get("error"):
                        log("udp bulk %s %s: %s; retrying" % (path, key, r["error"]))
                        time.sleep(1)
                        before = self.cpu_snapshot(path, udp="bulk")
                        r = self.iperf_udp(port, mbit, reverse, secs)
                    d = self.cpu_delta(before, self.cpu_snapshot(path, udp="bulk"))
                    gib = r.get("bytes", 0) / float(1 << 30)
                    if gib > 0:
                        r["cpu_s_per_gib"] = {k: round(v / gib, 3) for k, v in d.items()}
                    out["bulk"].setdefault(path, {})[key] = r
                    log("udp bulk %s %s: %s Mbit/s, lost %s%%%s" % (
                        path, key, r.get("mbit_s"), r.get("loss_pct"),
                        " (%s)" % r["error"] if r.get("error") else ""))

    def scenario_bulk(self):
        out = self.result["scenarios"]["bulk"] = {}
        cpu = self.result["scenarios"].setdefault("cpu", {})
        size = self.cfg["bulk_mib"] << 20
        for path in self.available():
            port, host = self.ports[path], self.hosts[path]
            res = out[path] = {}
            before = self.cpu_snapshot(path)
            res["download"] = self.curl(["http://127.0.0.1:%d/big" % port], "speed_download",
                                        size, host)
            name = "up-%s" % path
            res["upload"] = self.curl(["-T", str(self.tmp / "upload.bin"), "-H", "Expect:",
                                       "http://127.0.0.1:%d/upload/%s" % (port, name)],
                                      "speed_upload", size, host)
            got = (self.shm / "upload" / name)
            res["upload"]["bytes_stored"] = got.stat().st_size if got.exists() else 0
            if got.exists():
                got.unlink()
            if res["upload"]["bytes_stored"] != size:
                res["upload"]["error"] = "origin stored %d of %d bytes" % (
                    res["upload"]["bytes_stored"], size)
            d = self.cpu_delta(before, self.cpu_snapshot(path))
            gib = 2 * size / float(1 << 30)
            res["cpu_seconds"] = d
            cpu.setdefault(path, {})["per_gib"] = {k: round(v / gib, 3) for k, v in d.items()}
            log("bulk %s: down %.0f MB/s up %.0f MB/s" % (
                path, res["download"]["mb_s"], res["upload"]["mb_s"]))

    def curl(self, args, speed_field, size, host=HOST):
        fmt = "%{http_code} %{" + speed_field + "} %{size_download} %{size_upload} %{time_total}"
        cmd = ["curl", "-sS", "-o", "/dev/null", "--max-time", "300", "-H", "Host: %s" % host,
               "-w", fmt] + args
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=320)
        try:
            code, speed, down, up, total = out.stdout.split()
        except ValueError:
            return {"mb_s": 0.0, "error": out.stderr.strip()[-300:]}
        r = {"http_code": int(code), "mb_s": round(float(speed) / 1e6, 1),
             "seconds": float(total), "bytes": int(float(down if "download" in speed_field else up))}
        if r["bytes"] != size or int(code) >= 300:
            r["error"] = "status %s, %d of %d bytes %s" % (code, r["bytes"], size, out.stderr.strip())
        return r

    def start_fresh_core(self, name, plain=False, extra_config=""):
        """A new tunnel-core (same settings as the paths' one, plus `extra_config` YAML) on its
        own ports; returns the process and its ports. With `plain`, ports["agent"] is its
        plain-TCP agent listener."""
        ports = {k: free_port() for k in ("agent", "http", "admin")}
        config = self.tmp / "core.yaml"
        if extra_config:
            config = self.tmp / ("%s.yaml" % name)
            config.write_text((self.tmp / "core.yaml").read_text() + extra_config)
        argv = [self.bin / "tunnel-core", "--data-dir", self.tmp / ("%s-data" % name),
                "--agent-addr", "127.0.0.1:%d" % ports["agent"],
                "--http-addr", "127.0.0.1:%d" % ports["http"],
                "--admin-addr", "127.0.0.1:%d" % ports["admin"],
                "--config", config, "--log-level", self.args.log_level]
        if plain:
            ports["agent"] = free_port()
            argv += ["--agent-plain-addr", "127.0.0.1:%d" % ports["agent"]]
        if self.args.workers:
            argv += ["--workers", self.args.workers]
        cp = self.procs.start(name, argv)
        cp.admin_port = ports["admin"]
        wait_for("tunnel-core %s" % name, lambda: cp.poll() is not None or
                 http_get(ports["admin"], "127.0.0.1", "/healthz")[0] == 200)
        if cp.poll() is not None:
            raise RuntimeError("tunnel-core exited: " + self.procs.log_tail(name))
        return cp, ports

    def fresh_core(self, name, plain=False):
        """A new tunnel-core for one memory measurement, with agentflood attached: no earlier
        load leaves freed memory behind for the measured sessions to reuse. With `plain`,
        agentflood connects to its plain-TCP agent listener instead of TLS."""
        cp, ports = self.start_fresh_core(name, plain)
        flood = Flood(self.procs, [
            self.tools["agentflood"], "--server", "127.0.0.1:%d" % ports["agent"],
            "--http", "127.0.0.1:%d" % ports["http"], "--token", self.token,
            "--prefix", "flood", "--max-seconds", self.cfg["churn_seconds"] + 900]
            + (["--plain"] if plain else []))
        time.sleep(0.5)
        return cp, flood

    def wait_fds(self, pid, limit, what):
        """The core notices disconnects on its own time: wait (bounded) until its fd count is
        down to `limit`; the seconds it took, or None."""
        t0 = time.monotonic()
        try:
            wait_for(what, lambda: fd_count(pid) <= limit, timeout=180, interval=0.2)
            return round(time.monotonic() - t0, 1)
        except RuntimeError as e:
            self.result["notes"].append(str(e))
            return None

    @staticmethod
    def settle(pid, seconds=1.0):
        time.sleep(seconds)
        return rss_kib(pid)

    def scenario_agents(self):
        """Core memory with many idle agent sessions, with many streams in flight, and across
        a connect/disconnect churn; each measured on its own fresh tunnel-core, with
        bench/tools/agentflood holding real agent sessions (TLS, AUTH v2 with an http tunnel
        each, mux sessions that answer PINGs)."""
        if "core" not in self.pids:
            return
        if "agentflood" not in self.tools:
            self.result["notes"].append("agents scenario skipped: agentflood not built")
            return
        r = self.result["scenarios"]["agents"] = {"levels": []}
        cp, flood = self.fresh_core("core-agents")
        core = cp.pid
        try:
            base = r["core_rss_before_kib"] = self.settle(core)
            fds0 = fd_count(core)
            ev = None
            for n in self.cfg["agent_levels"]:
                cpu0 = cpu_seconds(core)
                ev = flood.command("open %d" % n, 900)
                lv = self.agent_level(ev, base, self.settle(core), cpu_seconds(core) - cpu0)
                if r["levels"]:
                    prev = r["levels"][-1]
                    lv["marginal_kib_per_session"] = round(
                        (lv["core_rss_kib"] - prev["core_rss_kib"]) /
                        max(1, lv["agents"] - prev["agents"]), 1)
                r["levels"].append(lv)
                log("agents: %s" % lv)
            live = ev["live"]
            t0 = time.monotonic()
            flood.command("close 0", 300)
            secs = self.wait_fds(core, fds0 + 16, "the core to drop %d sessions" % live)
            r["close_all"] = {"sessions": live, "seconds": None if secs is None else
                              round(time.monotonic() - t0, 1),
                              "core_rss_after_kib": self.settle(core)}
            log("agents: closed: %s" % r["close_all"])
        finally:
            flood.stop()
            self.procs.stop(cp)
        if self.cfg.get("agents_plain") and not self.plain_why:
            self.agent_plain_level(r)
        if self.cfg["streams"] > 0:
            self.agent_streams(r)
        if self.cfg["churn_seconds"] > 0:
            self.agent_churn(r)

    def agent_plain_level(self, r):
        """The first level again over plain TCP: what TLS adds to an idle session."""
        cp, flood = self.fresh_core("core-agents-plain", plain=True)
        try:
            base = self.settle(cp.pid)
            cpu0 = cpu_seconds(cp.pid)
            ev = flood.command("open %d" % self.cfg["agent_levels"][0], 600)
            lv = self.agent_level(ev, base, self.settle(cp.pid), cpu_seconds(cp.pid) - cpu0)
            lv["plain"] = True
            r["plain_level"] = lv
            log("agents over plain TCP: %s" % lv)
        finally:
            flood.stop()
            self.procs.stop(cp)

    @staticmethod
    def agent_level(ev, base, rss, cpu_s):
        live = ev["live"]
        return {"agents": live, "opened": ev["opened"], "failed": ev["failed"],
                "lost": ev.get("lost", 0), "open_seconds": round(ev["seconds"], 1),
                "sessions_per_second": round(ev["opened"] / ev["seconds"]) if ev["seconds"] else None,
                "core_cpu_ms_per_open": round(cpu_s * 1000 / max(1, ev["opened"]), 2),
                "core_rss_kib": rss, "core_rss_delta_kib": rss - base,
                "kib_per_session": round((rss - base) / max(1, live), 1),
                "first_error": ev.get("first_error") or None}

    def agent_streams(self, r):
        """M requests held in flight at once (each on its own public TCP connection, answered
        only on release) over a few agent sessions of a fresh core: its RSS per open stream."""
        m, over = self.cfg["streams"], self.cfg["stream_sessions"]
        cp, flood = self.fresh_core("core-streams")
        core = cp.pid
        try:
            flood.command("open %d" % over, 60)
            before = self.settle(core)
            flood.command("hold on", 10)
            ev = flood.command("streams %d %d" % (m, over), 120)
            during = self.settle(core)
            rel = flood.command("release", 120)
            after = self.settle(core)
        finally:
            flood.stop()
            self.procs.stop(cp)
        held = ev.get("held") or 0
        r["streams"] = {"requested": m, "over_sessions": ev.get("over_sessions"),
                        "held": held, "client_errors": ev.get("client_errors"),
                        "seconds_to_hold": round(ev.get("seconds", 0), 1),
                        "core_rss_before_kib": before, "core_rss_during_kib": during,
                        "core_rss_after_kib": after,
                        "kib_per_stream": round((during - before) / max(1, held), 1),
                        "answered_ok": rel.get("clients_ok"),
                        "answer_errors": rel.get("client_errors"),
                        "first_error": ev.get("first_error") or rel.get("first_error") or None}
        log("streams: %s" % r["streams"])

    def agent_churn(self, r):
        """N sessions on a fresh core, then close and reopen them at a fixed rate; the core's
        RSS sampled every second."""
        rate, secs = self.cfg["churn_rate"], self.cfg["churn_seconds"]
        n = self.cfg["agent_levels"][0]
        cp, flood = self.fresh_core("core-churn")
        core = cp.pid
        try:
            opened = flood.command("open %d" % n, 600)
            before = self.settle(core, self.cfg["churn_settle"])
            samples = []
            flood.send("churn %s %s" % (rate, secs))
            t0 = time.monotonic()
            ev = None
            # Sample while agentflood churns; its answer comes when the churn is over.
            while time.monotonic() < t0 + secs + 60:
                got = flood.read(1.0)
                samples.append((round(time.monotonic() - t0, 1), rss_kib(core)))
                if got is not None:
                    ev = got
                    break
            if ev is None:
                raise RuntimeError("agentflood churn did not finish")
            after = self.settle(core, self.cfg["churn_settle"])
            # Sanity: the core's own count of connected agents after the churn.
            st, body = http_get(cp.admin_port, "127.0.0.1", "/metrics")
            m = re.search(rb"^tunnel_agents_connected(?:\{[^}]*\})? (\d+)", body, re.M) \
                if st == 200 else None
            connected = int(m.group(1)) if m else None
        finally:
            flood.stop()
            self.procs.stop(cp)
        half = [kib for t, kib in samples if t >= secs / 2]
        r["churn"] = {"rate_per_s": rate, "seconds": secs, "sessions": opened["live"],
                      "settle_seconds": self.cfg["churn_settle"],
                      "closed": ev.get("closed"), "reopened": ev.get("reopened"),
                      "failed": ev.get("failed"), "live_after": ev.get("live"),
                      "core_agents_connected_after": connected,
                      "core_rss_before_kib": before, "core_rss_after_kib": after,
                      "growth_kib": after - before,
                      "core_rss_max_kib": max(k for _, k in samples),
                      "growth_second_half_kib": (half[-1] - half[0]) if len(half) > 1 else None,
                      "samples": samples[::max(1, len(samples) // 60)],
                      "first_error": ev.get("first_error") or None}
        log("churn: %s" % {k: v for k, v in r["churn"].items() if k != "samples"})

    # --- profiling ------------------------------------------------------------------
    def start_perf(self):
        if not shutil.which("perf"):
            self.result["notes"].append("--profile: perf not installed")
            return []
        procs = []
        for role in ("core", "agent"):
            out = self.args.out_dir / ("perf-%s-%s.data" % (self.stamp, role))
            procs.append((role, out, self.procs.start("perf-" + role, [
                "perf", "record", "-F", "299", "--call-graph", "dwarf,8192", "-o", out,
                "-p", self.pids[role]])))  # dwarf: the release build has no frame pointers
        return procs

    def finish_perf(self, procs):
        for role, out, p in procs:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.procs.stop(p)
            try:
                rep = subprocess.run(["perf", "report", "-i", str(out), "--stdio", "--no-children",
                                      "--percent-limit", "0.7", "-g", "none", "--sort",
                                      "dso,symbol"], capture_output=True, text=True, timeout=300)
            except subprocess.TimeoutExpired:
                self.result["notes"].append("perf report of %s timed out" % out)
                continue
            txt = self.args.out_dir / ("perf-%s-%s.txt" % (self.stamp, role))
            # perf pads every line to the terminal width; keep the text readable.
            txt.write_text("\n".join(strip_perf_padding(ln) for ln in rep.stdout.splitlines())
                           + "\n")
            self.result.setdefault("profiles", {})[role] = str(txt.relative_to(REPO)) \
                if txt.is_relative_to(REPO) else str(txt)
            log("perf report for %s: %s" % (role, txt))

    # --- driver ---------------------------------------------------------------------
    def run(self):
        self.stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M%S")
        self.result.update({
            "date": datetime.datetime.now().isoformat(timespec="seconds"), "mode": self.mode,
            "machine": {"cpus": os.cpu_count(), "cpu": cpu_model(), "kernel": platform.release(),
                        "loadavg_at_start": os.getloadavg()},
            "settings": dict(self.cfg, log_level=self.args.log_level,
                             nginx_workers=self.args.nginx_workers, wrk_threads=self.args.wrk_threads,
                             core_workers=self.args.workers or "default"),
            "versions": tool_versions(), "git": git_rev()})
        t0 = time.monotonic()
        self.wait_quiet()
        self.result["machine"]["loadavg_at_start"] = os.getloadavg()
        try:
            t1 = time.monotonic()
            self.setup()
            self.result.setdefault("scenario_seconds", {})["setup"] = round(time.monotonic() - t1, 1)
            steps = [("memory", self.scenario_memory_idle), ("ttfr", self.scenario_ttfr),
                     ("http", self.scenario_http), ("rate", self.scenario_rate),
                     ("tcp", self.scenario_tcp), ("udp", self.scenario_udp),
                     ("bulk", self.scenario_bulk),
                     ("agent-streams", self.scenario_agent_streams),
                     ("stalled", self.scenario_stalled),
                     ("memory-after", self.memory_after), ("agents", self.scenario_agents)]
            for name, fn in steps:
                if self.args.only and name not in self.args.only:
                    continue
                t1 = time.monotonic()
                try:
                    fn()
                except Exception as e:  # noqa: BLE001 - record and go on with the others
                    log("scenario %s failed: %s" % (name, e))
                    self.result["notes"].append("scenario %s failed: %s" % (name, e))
                self.result.setdefault("scenario_seconds", {})[name] = round(time.monotonic() - t1, 1)
        finally:
            self.procs.stop_all()
            self.result["seconds"] = round(time.monotonic() - t0, 1)
            self.result["machine"]["loadavg_at_end"] = os.getloadavg()
            shutil.rmtree(self.shm, ignore_errors=True)
            if not self.args.keep_tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)
            else:
                log("kept %s" % self.tmp)
        return self.result

    def wait_quiet(self):
        """Other work on the machine skews every number; wait (bounded) for it to calm down
        and record the load either way."""
        cpus = os.cpu_count() or 1
        deadline = time.monotonic() + self.args.wait_quiet
        while os.getloadavg()[0] > 0.5 * cpus and time.monotonic() < deadline:
            time.sleep(5)
        load = os.getloadavg()[0]
        if load > 0.5 * cpus:
            note = ("machine busy: load average %.2f on %d CPUs at start; absolute numbers are "
                    "low and noisy, compare the ratios of this run" % (load, cpus))
            self.result["notes"].append(note)
            log(note)

    def scenario_agent_streams(self):
        """Memory of a real agent (and of the core) with many requests in flight through it:
        a fresh TLS agent to an origin that holds every request, N public connections with one
        request each, RSS read while all N are held, then all answered."""
        if self.core is None:
            return
        n = self.cfg["agent_streams"]
        port = free_port()
        origin = self.procs.start("hold-origin", [sys.executable, "-u", "-c", HOLD_ORIGIN,
                                                  str(port), "all"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE)
        lines = LineReader(origin.stdout)
        if lines.readline(10) != "listening":
            raise RuntimeError("the holding origin did not start: " +
                               self.procs.log_tail("hold-origin", 3))
        host = "hold.localhost"
        agent = self.start_agent(["http", "127.0.0.1:%d" % port, "--subdomain", "hold"],
                                 name="agent-hold")
        request = ("GET /hold HTTP/1.1\r\nHost: %s\r\n\r\n" % host).encode()
        core_http = ("127.0.0.1", self.core_ports["http"])
        r = {"streams": n}
        socks = []
        try:
            # Until the agent serves the name the core answers 404 at once; then the origin
            # holds the probe (it stays open, the first of the n).
            deadline = time.monotonic() + 20
            while not socks:
                if agent.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the holding agent did not come up: " +
                                       self.procs.log_tail("agent-hold", 3))
                probe = socket.create_connection(core_http, timeout=10)
                probe.sendall(request)
                line = lines.readline(0.5)
                if line and line.startswith("held "):
                    socks.append(probe)
                else:
                    probe.close()
            time.sleep(1.0)
            r["agent_rss_before_kib"] = rss_kib(agent.pid)
            r["core_rss_before_kib"] = rss_kib(self.core.pid)
            held = 1
            for _ in range(n - 1):
                c = socket.create_connection(core_http, timeout=10)
                c.sendall(request)
                socks.append(c)
            deadline = time.monotonic() + 30
            while held < n and time.monotonic() < deadline:
                line = lines.readline(max(0.1, deadline - time.monotonic()))
                if line and line.startswith("held "):
                    held = int(line.split()[1])
            r["held"] = held
            time.sleep(0.5)
            r["agent_rss_during_kib"] = rss_kib(agent.pid)
            r["agent_detail_during"] = rss_detail(agent.pid)
            r["core_rss_during_kib"] = rss_kib(self.core.pid)
            origin.stdin.write(b"go\n")
            origin.stdin.flush()
            ok = 0
            for c in socks:
                try:
                    c.settimeout(10)
                    data = b""
                    while not data.endswith(b"ok"):
                        chunk = c.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    ok += data.startswith(b"HTTP/1.1 200")
                except OSError:
                    pass
            r["answered_ok"] = ok
            time.sleep(1.0)
            r["agent_rss_after_kib"] = rss_kib(agent.pid)
            # "before" was read with the probe already held: the growth is the other n - 1.
            added = max(1, r["held"] - 1)
            r["agent_kib_per_stream"] = round(
                (r["agent_rss_during_kib"] - r["agent_rss_before_kib"]) / added, 1)
            r["core_kib_per_stream"] = round(
                (r["core_rss_during_kib"] - r["core_rss_before_kib"]) / added, 1)
            self.result["scenarios"]["agent_streams"] = r
            log("agent streams: %s" % r)
        finally:
            for c in socks:
                c.close()
            self.procs.stop(agent)
            self.procs.stop(origin)

    def scenario_stalled(self):
        """Memory with bodies in flight whose readers stopped taking them. Downloads: N public
        clients fetch a body through a fresh core and agent, read its first part fast (their
        streams' windows grow), then stop reading, so the core buffers for them; run with the
        default limits.window_budget_per_agent and with 4 GiB (no bound in practice: each
        window may grow to 16 MiB, as before the budget). Uploads: N clients PUT a body to an
        app that reads nothing until told, so the agent buffers for it. Then every reader reads
        again and each body's byte count is checked."""
        if self.core is None:
            return
        n, body_mib, fast_mib = self.cfg["stalled"]
        with open(self.tmp / "www" / "stall", "wb") as f:
            f.truncate(body_mib << 20)
        r = self.result["scenarios"]["stalled"] = {
            "clients": n, "body_mib": body_mib, "fast_mib": fast_mib, "runs": []}
        for budget in (None, 4 << 30):
            run = self.stalled_downloads(n, body_mib << 20, fast_mib << 20, budget)
            r["runs"].append(run)
            log("stalled downloads: %s" % run)
        run = self.stalled_uploads(n, body_mib << 20)
        r["runs"].append(run)
        log("stalled uploads: %s" % run)

    def stalled_core(self, name, budget=None):
        """A fresh core (with `budget` as limits.window_budget_per_agent, and as much for all
        agents together) and its CA file."""
        extra = "" if budget is None else (
            "limits:\n  window_budget_per_agent: %d\n  window_budget_total: %d\n"
            % (budget, budget))
        cp, ports = self.start_fresh_core(name, extra_config=extra)
        return cp, ports, self.tmp / ("%s-data" % name) / "tls.crt"

    @staticmethod
    def window_growth(admin_port):
        st, body = http_get(admin_port, "127.0.0.1", "/metrics")
        m = re.search(rb"^tunnel_stream_window_growth_bytes (\S+)$", body or b"", re.M)
        return int(float(m.group(1))) if st == 200 and m else None

    def stalled_downloads(self, n, size, fast, budget):
        name = "core-stall-%s" % ("default" if budget is None else budget)
        cp, ports, ca = self.stalled_core(name, budget)
        agent, socks = None, []
        run = {"bodies": "downloads", "budget": budget}
        try:
            agent = self.start_agent(["http", "127.0.0.1:%d" % self.origin_port, "--subdomain",
                                      "bench"], name="agent-" + name, core=(ports["agent"], ca))
            wait_serving("the tunnel of " + name, ports["http"])
            run["core_rss_before_kib"] = self.settle(cp.pid)
            run["agent_rss_before_kib"] = rss_kib(agent.pid)
            request = b"GET /stall HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST.encode()
            for _ in range(n):
                s = socket.create_connection(("127.0.0.1", ports["http"]), timeout=30)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
                s.sendall(request)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = s.recv(65536)
                    if not chunk:
                        raise RuntimeError("a stalled download got no response head")
                    data += chunk
                got = len(data.partition(b"\r\n\r\n")[2])
                while got < fast:
                    chunk = s.recv(1 << 20)
                    if not chunk:
                        break
                    got += len(chunk)
                socks.append([s, got])
            run["core_rss_during_kib"] = self.settle(cp.pid, 2.0)
            run["agent_rss_during_kib"] = rss_kib(agent.pid)
            run["window_growth_kib"] = (self.window_growth(ports["admin"]) or 0) // 1024
            for c in socks:
                s = c[0]
                s.settimeout(30)
                try:
                    while c[1] < size:
                        chunk = s.recv(1 << 20)
                        if not chunk:
                            break
                        c[1] += len(chunk)
                except OSError:
                    pass
            counts = [c[1] for c in socks]
        finally:
            for c in socks:
                c[0].close()
            if agent:
                self.procs.stop(agent)
            self.procs.stop(cp)
        return self.stalled_result(run, n, size, counts)

    @staticmethod
    def stalled_result(run, n, size, counts):
        """Adds to `run` how many of the n bodies arrived whole (`counts`: bytes each), the
        bytes missing, and each side's RSS growth per body."""
        run["complete"] = sum(c == size for c in counts)
        run["bytes_lost"] = sum(max(0, size - c) for c in counts)
        for side in ("core", "agent"):
            run["%s_kib_per_body" % side] = round(
                (run["%s_rss_during_kib" % side] - run["%s_rss_before_kib" % side]) / n, 1)
        return run

    def stalled_uploads(self, n, size):
        cp, ports, ca = self.stalled_core("core-stall-up")
        port = free_port()
        origin = self.procs.start("stall-origin", [sys.executable, "-u", "-c", HOLD_ORIGIN,
                                                   str(port), "put"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE)
        agent, socks = None, []
        run = {"bodies": "uploads", "budget": None}
        try:
            lines = LineReader(origin.stdout)
            if lines.readline(10) != "listening":
                raise RuntimeError("the stalling origin did not start: " +
                                   self.procs.log_tail("stall-origin", 3))
            agent = self.start_agent(["http", "127.0.0.1:%d" % port, "--subdomain", "bench"],
                                     name="agent-stall-up", core=(ports["agent"], ca))
            wait_for("the uploads' tunnel", lambda: http_get(ports["http"])[0] == 200)
            run["core_rss_before_kib"] = self.settle(cp.pid)
            run["agent_rss_before_kib"] = rss_kib(agent.pid)
            head = b"PUT /up HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n" % (
                HOST.encode(), size)
            block = bytes(1 << 16)
            for _ in range(n):
                s = socket.create_connection(("127.0.0.1", ports["http"]), timeout=30)
                s.sendall(head)
                s.setblocking(False)
                sent, last = 0, time.monotonic()
                while sent < size and time.monotonic() - last < 0.3:  # until it blocks
                    try:
                        sent += s.send(block[:min(len(block), size - sent)])
                        last = time.monotonic()
                    except BlockingIOError:
                        time.sleep(0.005)
                socks.append([s, sent])
            held, deadline = 0, time.monotonic() + 30
            while held < n and time.monotonic() < deadline:
                line = lines.readline(max(0.1, deadline - time.monotonic()))
                if line and line.startswith("held "):
                    held = int(line.split()[1])
            run["core_rss_during_kib"] = self.settle(cp.pid)
            run["agent_rss_during_kib"] = rss_kib(agent.pid)
            run["window_growth_kib"] = (self.window_growth(ports["admin"]) or 0) // 1024
            run["sent_before_stall_mib"] = round(sum(c[1] for c in socks) / n / (1 << 20), 1)
            origin.stdin.write(b"go\n")
            origin.stdin.flush()
            counts = []
            for s, sent in socks:
                got = 0
                try:
                    s.settimeout(60)
                    while sent < size:
                        sent += s.send(block[:min(len(block), size - sent)])
                    data = b""
                    while b"\r\n\r\n" not in data or not data.endswith(b" ok"):
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    m = re.search(rb"\r\n\r\n(\d+) ok$", data)
                    got = int(m.group(1)) if m else 0
                except OSError:
                    pass
                counts.append(got)
        finally:
            for c in socks:
                c[0].close()
            if agent:
                self.procs.stop(agent)
            self.procs.stop(origin)
            self.procs.stop(cp)
        return self.stalled_result(run, n, size, counts)

    def memory_after(self):
        mem = self.result["scenarios"].setdefault("memory", {})
        if "core" in self.pids:
            time.sleep(1.0)
            mem["core_after_load_kib"] = rss_kib(self.pids["core"])
            if "agent" in self.pids:
                mem["agent_after_load_kib"] = rss_kib(self.pids["agent"])


# An origin that holds requests until told (argv[2] "all": every request; "put": PUTs only,
# reading nothing of their bodies): prints "held N" as they arrive. When a line comes on stdin
# it reads each held request's body and answers 200 with "<body bytes> ok".
HOLD_ORIGIN = r"""
import asyncio, sys
held = 0
hold_all = sys.argv[2] == "all"  # "put": only PUTs are held, anything else is answered at once
release = asyncio.Event()
async def serve(reader, writer):
    global held
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v)
            if hold_all or head.startswith(b"PUT"):
                held += 1
                print("held %d" % held, flush=True)
                await release.wait()
            got = 0  # the body is read only now: until then the agent buffers it
            while got < length:
                chunk = await reader.read(min(1 << 20, length - got))
                if not chunk:
                    break
                got += len(chunk)
            body = b"%d ok" % got
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]), backlog=4096,
                                        limit=65536)
    print("listening", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    release.set()
    await asyncio.sleep(3600)
asyncio.run(main())
"""

WRK_LUA = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"e_connect":%d,"e_read":%d,' ..
    '"e_write":%d,"e_status":%d,"e_timeout":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d,' ..
    '"mean":%.1f,"max":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max))
end
"""


def strip_perf_padding(line):
    """perf report pads each line with spaces and two '-' columns (no regex: a padded line
    is thousands of characters and backtracking on it never ends)."""
    line = line.rstrip()
    for _ in range(2):
        if line.endswith(" -"):
            line = line[:-2].rstrip()
    return line


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def tool_versions():
    def first(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None
    return {"nginx": first(["nginx", "-v"]), "wrk": first(["wrk", "-v"]),
            "curl": first(["curl", "--version"])}


def git_rev():
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return None


# ---------------------------------------------------------------------------------------
# Report: markdown tables, ratios against nginx and ssh -R, targets met/missed.

def targets(res):
    """[(target, value, verdict)]; verdict is met, MISSED, not measured or not judged."""
    sc = res["scenarios"]
    http = sc.get("http_612", {})
    out = []

    def ratio(a, b):
        return a / b if a is not None and b else None

    for c in [str(x) for x in res["settings"]["conns"]]:
        t = http.get("tunnel", {}).get(c)
        n = http.get("nginx", {}).get(c)
        s = http.get("ssh", {}).get(c)
        r = ratio(t and t["rps"], n and n["rps"])
        out.append(("req/s >= 0.7x nginx hop (c=%s)" % c, r, r is not None and r >= 0.7, "%.2fx"))
        r = ratio(t and t["rps"], s and s["rps"])
        out.append(("req/s >= 3x ssh -R (c=%s)" % c, r, r is not None and r >= 3.0, "%.2fx"))
        r = ratio(t and t["p99"], n and n["p99"])
        out.append(("p99 <= 2x nginx hop (c=%s)" % c, r, r is not None and r <= 2.0, "%.2fx"))
    tcp = sc.get("tcp", {})

    def gbit(path, key):
        v = tcp.get(path, {}).get(key, {})
        return v.get("gbit_s") if not v.get("error") else None
    for key, label in (("up_1", "client to app"), ("down_1", "app to client")):
        r = ratio(gbit("tunnel", key), gbit("ssh", key))
        out.append(("TCP single stream with TLS >= 1.5x ssh -R (%s)" % label, r,
                    r is not None and r >= 1.5, "%.2fx"))
    for key, label in (("up_1", "client to app"), ("down_1", "app to client")):
        r = ratio(gbit("tunnel-plain", key), gbit("direct", key))
        out.append(("tunnel-plain TCP >= 0.5x direct (single stream, %s)" % label, r,
                    r is not None and r >= 0.5, "%.2fx"))
    mem = sc.get("memory", {})
    core, agent = mem.get("core_idle_kib"), mem.get("agent_idle_kib")
    out.append(("idle RSS core <= 8 MiB", core and core / 1024, core is not None and core <= 8192,
                "%.1f MiB"))
    out.append(("idle RSS agent <= 6 MiB", agent and agent / 1024,
                agent is not None and agent <= 6144, "%.1f MiB"))
    ag = sc.get("agents", {})
    for lv in ag.get("levels", []):
        k = lv["kib_per_session"]
        out.append(("core memory per idle agent session <= 64 KiB (N=%d)" % lv["agents"], k,
                    k <= 64 and not lv["failed"], "%.1f KiB"))
    big = [lv for lv in ag.get("levels", []) if lv["agents"] >= 10000]
    if big:
        v = big[0]["core_rss_kib"] / 1024.0
        out.append(("10,000 agents on one core < 1 GiB", v, v < 1024 and not big[0]["failed"],
                    "%.0f MiB"))
    else:
        out.append(("10,000 agents on one core < 1 GiB", None, None, ""))
    ch = ag.get("churn")
    if ch:
        # The target is for a 10-minute churn whose RSS readings both come after one of the
        # core's heap trims (every 30 s); a shorter churn (--quick: 15 s, read 1 s after) shows
        # the heap before it settles, so it is reported but not judged.
        judged = ch["seconds"] >= 600 and ch.get("settle_seconds", 1) > 30
        not_judged = "not judged (a %d s churn; the target is for 600 s, full mode)" % ch["seconds"]
        # Flat: the RSS after the churn within 2% (at least 1 MiB) of the RSS before it.
        allow = max(1024, 0.02 * ch["core_rss_before_kib"])
        out.append(("flat RSS after connect/disconnect churn (%d s, %s/s): after - before" % (
            ch["seconds"], ch["rate_per_s"]), ch["growth_kib"] / 1024.0,
            (ch["growth_kib"] <= allow and not ch.get("failed")) if judged else not_judged,
            "%+.1f MiB"))
        # Does it keep growing? The second half of the churn within 1% of the RSS before.
        g2 = ch.get("growth_second_half_kib")
        if g2 is not None:
            out.append(("... and no growth in the churn's second half (<= 1%)", g2 / 1024.0,
                        g2 <= 0.01 * ch["core_rss_before_kib"] if judged else not_judged,
                        "%+.1f MiB"))
    else:
        out.append(("flat RSS after connect/disconnect churn", None, None, ""))
    rows = []
    for name, value, ok, fmt in out:
        if value is None:
            rows.append((name, "-", "not measured"))
        elif isinstance(ok, str):
            rows.append((name, fmt % value, ok))
        else:
            rows.append((name, fmt % value, "met" if ok else "MISSED"))
    return rows


def fmt_us(v):
    return "-" if v is None else ("%.0f us" % v if v < 10000 else "%.1f ms" % (v / 1000))


def fmt_x(a, b):
    return "%.2fx" % (a / b) if a is not None and b else "-"


def markdown_udp(udp, st):
    """The UDP scenario's tables (round trips, then bulk)."""
    if not udp:
        return []
    L = []
    ping, bulk = udp.get("ping", {}), udp.get("bulk", {})
    if ping:
        L += ["## UDP round trips at fixed rates (udpping: %d-byte datagrams over 4 flows, %d s "
              "per run; round trip from the send)" % (UDP_PING_SIZE, st["udp_seconds"]), "",
              "| path | target/s | achieved | p50 | p90 | p99 | p99.9 | max | lost | p99 vs nginx "
              "| send lag p99 | CPU-us per round trip |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for rt in [str(x) for x in st["udp_rates"]]:
            for p in UDP_PATHS:
                r = ping.get(p, {}).get(rt)
                if not r:
                    continue
                n = ping.get("nginx", {}).get(rt)
                cpu = ", ".join("%s %s" % (k, v) for k, v in r.get("cpu_us_per_round_trip",
                                                                   {}).items())
                L.append("| %s | %s | %.0f | %s | %s | %s | %s | %s | %.2f%% | %s | %s | %s |" % (
                    PATH_LABEL[p], rt, r["achieved_rate"], fmt_us(r["p50"]), fmt_us(r["p90"]),
                    fmt_us(r["p99"]), fmt_us(r["p999"]), fmt_us(r["max"]), r["loss_pct"],
                    fmt_x(r["p99"], n and n["p99"]), fmt_us(r["send_lag_p99"]), cpu or "-"))
        L.append("")
    if bulk:
        keys = ["%s_%d" % (d, m) for m in st["udp_mbit"] for d in ("up", "down")]
        L += ["## UDP bulk (iperf3 -u, %d-byte datagrams at a fixed offered rate, %d s per run): "
              "Mbit/s at the receiver, loss, jitter" % (UDP_BULK_LEN, st["udp_bulk_seconds"]), "",
              "| path | " + " | ".join("%s Mbit/s %s" % (k.split("_")[1], "client to app" if
                                                          k.startswith("up") else "app to client")
                                       for k in keys) + " |",
              "|---|" + "---|" * len(keys)]
        for p in UDP_PATHS:
            row = bulk.get(p)
            if not row:
                continue
            cells = []
            for k in keys:
                v = row.get(k, {})
                cells.append("error: %s" % v["error"][:60] if v.get("error") else
                             "%.0f, %.2f%% lost, %.3f ms" % (v["mbit_s"], v["loss_pct"],
                                                              v["jitter_ms"]) if v else "-")
            L.append("| %s | %s |" % (PATH_LABEL[p], " | ".join(cells)))
        L += ["", "CPU seconds per GiB received, at the highest offered rate:", "",
              "| path | client to app | app to client |", "|---|---|---|"]
        top = max(st["udp_mbit"])
        for p in UDP_PATHS:
            row = bulk.get(p)
            if not row:
                continue
            cells = [", ".join("%s %.2f" % (k, v) for k, v in
                               row.get("%s_%d" % (d, top), {}).get("cpu_s_per_gib", {}).items())
                     or "-" for d in ("up", "down")]
            L.append("| %s | %s |" % (PATH_LABEL[p], " | ".join(cells)))
        L.append("")
    for p, why in udp.get("unavailable", {}).items():
        L.append("- UDP through %s: not measured (%s)" % (PATH_LABEL[p], why))
    if udp.get("unavailable"):
        L.append("")
    L.append("- UDP through ssh -R: not available (OpenSSH forwards TCP only).")
    L.append("")
    return L


def markdown(res):
    sc = res["scenarios"]
    paths = [p for p in PATHS if p in res["paths"]]
    avail = [p for p in paths if res["paths"][p].get("available")]
    st = res["settings"]
    L = ["# Benchmark results %s (%s mode)" % (res["date"], res["mode"]), "",
         "Machine: %d CPUs (%s), kernel %s; load average at start %s, at end %s; commit %s; %.0f s." % (
             res["machine"]["cpus"], res["machine"]["cpu"], res["machine"]["kernel"],
             " ".join("%.2f" % x for x in res["machine"]["loadavg_at_start"]),
             " ".join("%.2f" % x for x in res["machine"].get("loadavg_at_end", ())), res.get("git"),
             res.get("seconds", 0)), ""]
    for p in paths:
        if not res["paths"][p].get("available"):
            L.append("- `%s`: %s" % (PATH_LABEL[p], res["paths"][p]["why"]))
    L.append("")

    http = sc.get("http_612", {})
    if http:
        L += ["## HTTP, 612-byte response, keep-alive (wrk, %d s per run%s)" % (
            st["duration"], best_of(st)), "",
              "| path | conns | req/s | p50 | p99 | p99.9 | errors | vs nginx | vs ssh -R "
              "| origin conns / 1k req |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for c in [str(x) for x in st["conns"]]:
            for p in paths:
                r = http.get(p, {}).get(c)
                if r is None:
                    L.append("| %s | %s | not available | | | | | | | |" % (PATH_LABEL[p], c))
                    continue
                n = http.get("nginx", {}).get(c)
                s = http.get("ssh", {}).get(c)
                L.append("| %s | %s | %.0f | %s | %s | %s | %d | %s | %s | %s |" % (
                    PATH_LABEL[p], c, r["rps"], fmt_us(r["p50"]), fmt_us(r["p99"]),
                    fmt_us(r["p999"]), r["errors"], fmt_x(r["rps"], n and n["rps"]),
                    fmt_x(r["rps"], s and s["rps"]), r.get("origin_conns_per_1k_requests", "-")))
        L.append("")
    rate = sc.get("fixed_rate", {})
    if rate:
        L += ["## HTTP at fixed rates (openloop: open loop, latency from the scheduled time)", "",
              "| path | target req/s | conns | achieved | p50 | p90 | p99 | p99.9 | max | errors "
              "| p99 vs nginx | send lag p99 |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for rt in [str(x) for x in st["rates"]]:
            for p in avail:
                r = rate.get(p, {}).get(rt)
                if r:
                    n = rate.get("nginx", {}).get(rt)
                    L.append("| %s | %s | %d | %.0f | %s | %s | %s | %s | %s | %d | %s | %s |" % (
                        PATH_LABEL[p], rt, r["connections"], r["achieved_rps"], fmt_us(r["p50"]),
                        fmt_us(r["p90"]), fmt_us(r["p99"]), fmt_us(r["p999"]), fmt_us(r["max"]),
                        r["errors"], fmt_x(r["p99"], n and n["p99"]), fmt_us(r["send_lag_p99"])))
        L.append("")
    tcp = sc.get("tcp", {})
    if tcp:
        keys = [("up_1", "1 stream, client to app"), ("down_1", "1 stream, app to client"),
                ("up_8", "8 streams, client to app"), ("down_8", "8 streams, app to client")]
        L += ["## TCP bulk (iperf3, %d s per run%s), Gbit/s at the receiver" % (
            st["tcp_seconds"], best_of(st)), "",
              "| path | " + " | ".join(lbl for _, lbl in keys) + " |",
              "|---|" + "---|" * len(keys)]
        for p in TCP_PATHS:
            if p not in res["paths"]:
                continue
            row = tcp.get(p)
            if not row:
                L.append("| %s | not available |%s" % (PATH_LABEL[p], " |" * (len(keys) - 1)))
                continue
            cells = []
            for k, _ in keys:
                v = row.get(k, {})
                cells.append("error: %s" % v["error"][:60] if v.get("error") else
                             "%.2f" % v["gbit_s"] if "gbit_s" in v else "-")
            L.append("| %s | %s |" % (PATH_LABEL[p], " | ".join(cells)))
        L += ["", "| path | vs direct (1 up / 1 down / 8 up / 8 down) | vs ssh -R (same order) |",
              "|---|---|---|"]
        for p in TCP_PATHS:
            row = tcp.get(p)
            if not row:
                continue

            def rel(o):
                return " / ".join(fmt_x(row.get(k, {}).get("gbit_s"),
                                        tcp.get(o, {}).get(k, {}).get("gbit_s")) for k, _ in keys)
            L.append("| %s | %s | %s |" % (PATH_LABEL[p], rel("direct"), rel("ssh")))
        L.append("")
    L += markdown_udp(sc.get("udp"), st)
    bulk = sc.get("bulk", {})
    if bulk:
        L += ["## Large bodies: %d MiB through each path (curl), MB/s (10^6 bytes/s)"
              % st["bulk_mib"], "",
              "| path | download MB/s | upload MB/s | vs nginx (down/up) | vs ssh -R (down/up) |",
              "|---|---|---|---|---|"]
        for p in paths:
            b = bulk.get(p)
            if not b:
                L.append("| %s | not available | | | |" % PATH_LABEL[p])
                continue

            def rel(o):
                ob = bulk.get(o)
                if not ob or not ob["download"].get("mb_s") or not ob["upload"].get("mb_s"):
                    return "-"
                return "%.2fx / %.2fx" % (b["download"]["mb_s"] / ob["download"]["mb_s"],
                                          b["upload"]["mb_s"] / ob["upload"]["mb_s"])
            err = "; ".join(b[k]["error"] for k in ("download", "upload") if b[k].get("error"))
            L.append("| %s | %.0f | %.0f%s | %s | %s |" % (
                PATH_LABEL[p], b["download"]["mb_s"], b["upload"]["mb_s"],
                " (%s)" % err if err else "", rel("nginx"), rel("ssh")))
        L.append("")
    cpu = sc.get("cpu", {})
    if cpu:
        L += ["## CPU seconds (user+system, from /proc/PID/stat)", "",
              "| path | process | per 10k requests (c=%s) | per 10k requests (c=%s) | per GiB moved (HTTP bodies) |"
              % tuple((st["conns"] + st["conns"])[:2]),
              "|---|---|---|---|---|"]
        for p in avail:
            c = cpu.get(p, {})
            roles = sorted({r for v in c.values() for r in v}, key=lambda r: (r == "origin", r))
            for role in roles:
                def g(key):
                    v = c.get(key, {}).get(role)
                    return "-" if v is None else "%.3f" % v
                L.append("| %s | %s | %s | %s | %s |" % (
                    PATH_LABEL[p], role, g("per_10k_requests_c%d" % st["conns"][0]),
                    g("per_10k_requests_c%d" % st["conns"][-1]), g("per_gib")))
        L.append("")
    ctcp = sc.get("cpu_tcp", {})
    if ctcp:
        L += ["### CPU seconds per GiB through TCP tunnels (iperf3)", "",
              "| path | process | 1 stream up | 1 stream down | 8 streams up | 8 streams down |",
              "|---|---|---|---|---|---|"]
        for p in TCP_PATHS:
            c = ctcp.get(p, {})
            roles = sorted({r for v in c.values() for r in v}, key=lambda r: (r == "iperf3", r))
            for role in roles:
                L.append("| %s | %s | %s |" % (PATH_LABEL[p], role, " | ".join(
                    "-" if c.get(k, {}).get(role) is None else "%.2f" % c[k][role]
                    for k in ("up_1", "down_1", "up_8", "down_8"))))
        L.append("")
    mem = sc.get("memory", {})
    if mem:
        L += ["## Memory (VmRSS)", "", "| what | KiB |", "|---|---|"]
        names = [("core_no_agent_kib", "core, started, no agent"),
                 ("core_idle_kib", "core idle, 1 agent connected, 1 request served"),
                 ("core_all_agents_kib", "core idle, all %s bench agents connected (http, tcp; "
                  "TLS and plain)" % mem.get("core_all_agents_connected", "")),
                 ("agent_idle_kib", "agent (http) idle, connected"),
                 ("core_after_load_kib", "core idle after the load runs"),
                 ("agent_after_load_kib", "agent idle after the load runs"),
                 ("nginx_proxy_tree_kib", "nginx proxy (master + workers), idle"),
                 ("sshd_tree_kib", "sshd (listener + session), idle"),
                 ("ssh_client_kib", "ssh -R client, idle")]
        for k, label in names:
            if mem.get(k) is not None:
                L.append("| %s | %d |" % (label, mem[k]))
            for role in ("core", "agent"):
                d = mem.get("%s_idle_detail" % role) if k == "%s_idle_kib" % role else None
                if d:
                    L.append("| ... of which anonymous (heap, stacks) / file-backed (libraries) / PSS "
                             "| %s / %s / %s |" % (d.get("rssanon_kib"), d.get("rssfile_kib"),
                                                   d.get("pss_kib")))
        L.append("")
    ag = sc.get("agents", {})
    if ag.get("levels"):
        L += ["## Many agents on one core (agentflood: TLS, AUTH v2, one http tunnel each, idle "
              "mux sessions answering PINGs)", "",
              "Each part of this scenario (sessions, streams, churn) runs on its own fresh "
              "tunnel-core; RSS of this one before the first session: %d KiB."
              % ag["core_rss_before_kib"], "",
              "| agents | opened / failed | seconds to open | sessions/s | core CPU ms per session "
              "opened | core RSS KiB | growth KiB | **KiB per session** | marginal KiB per session |",
              "|---|---|---|---|---|---|---|---|---|"]
        for lv in ag["levels"]:
            L.append("| %d | %d / %d | %.1f | %s | %.2f | %d | %d | **%.1f** | %s |" % (
                lv["agents"], lv["opened"], lv["failed"], lv["open_seconds"],
                lv["sessions_per_second"], lv["core_cpu_ms_per_open"], lv["core_rss_kib"],
                lv["core_rss_delta_kib"], lv["kib_per_session"],
                lv.get("marginal_kib_per_session", "-")))
        lv = ag.get("plain_level")
        if lv:
            L.append("| %d over plain TCP (`--plain`) | %d / %d | %.1f | %s | %.2f | %d | %d | **%.1f** | - |" % (
                lv["agents"], lv["opened"], lv["failed"], lv["open_seconds"],
                lv["sessions_per_second"], lv["core_cpu_ms_per_open"], lv["core_rss_kib"],
                lv["core_rss_delta_kib"], lv["kib_per_session"]))
        L.append("")
        for key, what in (("close_all", "Closing the %d sessions"),):
            c = ag.get(key)
            if c:
                L.append("- %s: the core needed %s to drop them (its fd count back down); "
                         "core RSS after: %d KiB." % (
                             what % c["sessions"],
                             "%.1f s" % c["seconds"] if c["seconds"] is not None else
                             "more than 180 s", c["core_rss_after_kib"]))
        L.append("")
    s = ag.get("streams")
    if s:
        L += ["### Streams in flight", "",
              "%d HTTP requests held open at once through %s agent sessions (each request on its "
              "own public TCP connection; the agent reads the request and answers only when all "
              "are in flight), on a fresh core." % (s["requested"], s["over_sessions"]), "",
              "| held | client errors | core RSS before | during | after answering | **KiB per "
              "stream** | answered 200 |",
              "|---|---|---|---|---|---|---|",
              "| %d | %s | %d | %d | %d | **%.1f** | %s |" % (
                  s["held"], s["client_errors"], s["core_rss_before_kib"], s["core_rss_during_kib"],
                  s["core_rss_after_kib"], s["kib_per_stream"], s["answered_ok"]), ""]
    ch = ag.get("churn")
    if ch:
        L += ["### Connect/disconnect churn", "",
              "%d s at %s reconnects/s over %d live sessions (every other close abrupt, no "
              "CLOSE frame; each session reopens at once with the same name). RSS before and "
              "after: %s s after the sessions opened and after the churn ended%s." % (
                  ch["seconds"], ch["rate_per_s"], ch.get("sessions", 0),
                  ch.get("settle_seconds", 1),
                  " (the core trims its heap every 30 s: both readings come after a trim)"
                  if ch.get("settle_seconds", 1) > 30 else ""), "",
              "| closed | reopened | failed | core RSS before | max during | after | **growth** "
              "| growth in the second half |",
              "|---|---|---|---|---|---|---|---|",
              "| %s | %s | %s | %d | %d | %d | **%+d KiB** | %s |" % (
                  ch["closed"], ch["reopened"], ch["failed"], ch["core_rss_before_kib"],
                  ch["core_rss_max_kib"], ch["core_rss_after_kib"], ch["growth_kib"],
                  "-" if ch["growth_second_half_kib"] is None else
                  "%+d KiB" % ch["growth_second_half_kib"]), ""]
    a = sc.get("agent_streams")
    if a:
        L += ["## Requests in flight through one real agent", "",
              "%d HTTP requests held at once by the origin, through one tunnel-agent (TLS) and "
              "the core, each on its own public connection (the agent opens one connection to "
              "the app per request in flight); RSS while all are held." % a["streams"], "",
              "| held | answered 200 | agent RSS before | during | after | **agent KiB per "
              "request** | core KiB per request |",
              "|---|---|---|---|---|---|---|",
              "| %d | %d | %d | %d | %d | **%.1f** | %.1f |" % (
                  a["held"], a["answered_ok"], a["agent_rss_before_kib"],
                  a["agent_rss_during_kib"], a["agent_rss_after_kib"], a["agent_kib_per_stream"],
                  a["core_kib_per_stream"]), ""]
    st = sc.get("stalled")
    if st:
        L += ["## Bodies in flight whose readers stopped", "",
              "%d public clients at once, each with a %d MiB body, on a fresh core and agent "
              "per row. Downloads: each client reads the first %d MiB fast (its stream's window "
              "grows), then stops reading; the core buffers for it. Uploads: each client sends "
              "until it blocks, to an app that reads nothing yet; the agent buffers for it. "
              "RSS read while all are stalled; then every reader reads again and each body's "
              "byte count is checked. Window budget: `limits.window_budget_per_agent` (default "
              "32 MiB); 4 GiB bounds nothing here, as before the budget." % (
                  st["clients"], st["body_mib"], st["fast_mib"]), "",
              "| bodies | window budget | core RSS before | during | **core KiB per body** | "
              "agent RSS before | during | **agent KiB per body** | window growth (core) | "
              "complete | bytes lost |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
        for run in st["runs"]:
            if "core_rss_during_kib" not in run:
                continue
            L.append("| %s | %s | %d | %d | **%.1f** | %d | %d | **%.1f** | %d KiB | %d/%d | %d |"
                     % (run["bodies"], "default" if run["budget"] is None else
                        "%d MiB" % (run["budget"] >> 20), run["core_rss_before_kib"],
                        run["core_rss_during_kib"], run["core_kib_per_body"],
                        run["agent_rss_before_kib"], run["agent_rss_during_kib"],
                        run["agent_kib_per_body"], run["window_growth_kib"], run["complete"],
                        st["clients"], run["bytes_lost"]))
        L.append("")
    tt = sc.get("time_to_first_request_ms")
    if tt:
        L += ["## Time from agent start to first request served", "",
              "median %.1f ms, min %.1f ms (runs: %s)" % (
                  tt["median"], tt["min"], ", ".join("%.1f" % x for x in tt["runs"])), ""]
    L += ["## Targets (issue #4)", "", "| target | this run | verdict |", "|---|---|---|"]
    for name, value, verdict in targets(res):
        L.append("| %s | %s | %s |" % (name, value, verdict))
    L.append("")
    if res.get("notes"):
        L += ["## Notes", ""] + ["- %s" % n for n in res["notes"]] + [""]
    return "\n".join(L)


TOOLS = ("openloop", "agentflood", "udpping")


def find_tools(args):
    """The directory with bench/tools' binaries: --tools-dir, else the release build's, else
    our own build directory, which is configured and built here when needed."""
    if args.tools_dir:
        return Path(args.tools_dir)
    own = REPO / "build/benchtools"
    for d in (REPO / "build/release/bench/tools", own / "bench/tools"):
        if all((d / t).exists() for t in TOOLS):
            return d
    if args.no_build_tools:
        return own / "bench/tools"
    log("bench/tools not built: building %s in %s (once)" % (", ".join(TOOLS), own))
    conf = ["cmake", "-S", str(REPO), "-B", str(own), "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
            "-DTUNNEL_TESTS=OFF", "-DTUNNEL_BENCH_TOOLS=ON"]
    if shutil.which("ninja"):
        conf += ["-G", "Ninja"]
    if shutil.which("ccache"):
        conf += ["-DCMAKE_CXX_COMPILER_LAUNCHER=ccache", "-DCMAKE_C_COMPILER_LAUNCHER=ccache"]
    try:
        subprocess.run(conf, check=True, stdout=subprocess.DEVNULL, timeout=300)
        subprocess.run(["cmake", "--build", str(own), "-j", "2", "--target"] + list(TOOLS),
                       check=True, stdout=subprocess.DEVNULL, timeout=1800)
    except (OSError, subprocess.SubprocessError) as e:
        log("building bench/tools failed (%s); their scenarios are skipped" % e)
    return own / "bench/tools"


def main():
    ap = argparse.ArgumentParser(description="tunnel benchmark suite (issue #4)")
    ap.add_argument("--quick", action="store_true", help="short runs, < 3 minutes")
    ap.add_argument("--bin-dir", default=os.environ.get("TUNNEL_BIN_DIR",
                                                        str(REPO / "build/release/apps")),
                    help="where tunnel-core and tunnel-agent are (copied before use)")
    ap.add_argument("--tools-dir", default=os.environ.get("TUNNEL_BENCH_TOOLS_DIR"),
                    help="where openloop and agentflood are (default: build/release/bench/tools "
                         "from `make build`, else build/benchtools/bench/tools, which the suite "
                         "builds itself when neither has them)")
    ap.add_argument("--no-build-tools", action="store_true",
                    help="do not build bench/tools when they are missing (skip their scenarios)")
    ap.add_argument("--out-dir", type=Path, default=HERE / "results")
    ap.add_argument("--paths", default="direct,nginx,ssh,tunnel,tunnel-plain",
                    help="comma-separated subset of %s" % ",".join(PATHS))
    ap.add_argument("--only", default="",
                    help="comma-separated scenarios: memory,ttfr,http,rate,tcp,udp,bulk,"
                         "agent-streams,stalled,memory-after,agents")
    ap.add_argument("--conns", default="", help="comma-separated wrk connection counts (default 32,256)")
    ap.add_argument("--rounds", type=int, default=0,
                    help="repeat the HTTP and TCP runs this many times, each path keeping its "
                         "best (default: 2 in full mode, 1 in --quick)")
    ap.add_argument("--duration", type=int, default=0, help="seconds per wrk run (default 15, quick 2)")
    ap.add_argument("--agents", default="",
                    help="comma-separated idle-session levels for agentflood (default 1000,10000; "
                         "quick 1000); streams and churn run on the first level")
    ap.add_argument("--churn-seconds", type=int, default=None,
                    help="length of the connect/disconnect churn (default 600, quick 15; 0 = skip)")
    ap.add_argument("--workers", default="", help="tunnel-core --workers (default: one per core)")
    ap.add_argument("--nginx-workers", default="auto")
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--log-level", default="warn", help="core and agent --log-level")
    ap.add_argument("--profile", action="store_true",
                    help="perf record core and agent during the 256-connection tunnel run")
    ap.add_argument("--keep-tmp", action="store_true")
    ap.add_argument("--wait-quiet", type=float, default=0,
                    help="wait up to this many seconds for the load average to drop below "
                         "half the CPUs before starting")
    args = ap.parse_args()
    args.paths = [p for p in args.paths.split(",") if p]
    bad = [p for p in args.paths if p not in PATHS]
    if bad:
        ap.error("unknown path(s) %s" % bad)
    args.only = [s for s in args.only.split(",") if s]
    for tool in ("nginx", "wrk", "curl"):
        if not shutil.which(tool):
            sys.exit("bench: %s is not installed; run scripts/install-deps.sh" % tool)
    for b in ("tunnel-core", "tunnel-agent"):
        if not (Path(args.bin_dir) / b).exists():
            sys.exit("bench: %s/%s missing; run `make build` or pass --bin-dir" % (args.bin_dir, b))
    args.tools_dir = str(find_tools(args))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # children inherit it
    args.out_dir.mkdir(parents=True, exist_ok=True)

    bench = Bench(args, "quick" if args.quick else "full")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_signal)
    res = bench.run()
    md = markdown(res)
    base = args.out_dir / (bench.stamp + ("-quick" if args.quick else ""))
    base.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    base.with_suffix(".md").write_text(md)
    print(md)
    log("wrote %s.json and .md" % base)


if __name__ == "__main__":
    main()
