#!/usr/bin/python3
"""The benchmark suite (issue #4): starts every process it needs on 127.0.0.1, runs each
scenario against several paths in the same run, and writes bench/results/<date>.json and
.md. Standard library only; the tools it drives (nginx, wrk, sshd/ssh, curl, perf) come
from scripts/install-deps.sh.

Paths:   direct (client -> origin), nginx (one reverse-proxy hop), ssh -R (OpenSSH remote
         forwarding), tunnel (core + agent, TLS between them). tunnel-plain is reported as
         not available until the core and agent can run without TLS.
Origin:  its own nginx instance serving a fixed 612-byte body, a sparse file for downloads
         and WebDAV PUT into /dev/shm for uploads.

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
HOST = "bench.localhost"
BODY_SIZE = 612
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

PATHS = ["direct", "nginx", "ssh", "tunnel", "tunnel-plain"]
PATH_LABEL = {"direct": "direct", "nginx": "nginx", "ssh": "ssh -R", "tunnel": "tunnel",
              "tunnel-plain": "tunnel-plain"}
UNAVAILABLE = {"tunnel-plain": "not available: core and agent have no plain-TCP mode yet"}

MODES = {
    "quick": {"conns": [32, 256], "duration": 5, "warmup": 1, "rates": [1, 1000, 4000],
              "rate_duration": 3, "bulk_mib": 256, "agents": 200, "ttfr_runs": 3},
    "full": {"conns": [32, 256], "duration": 15, "warmup": 2, "rates": [1, 1000, 2000, 4000],
             "rate_duration": 10, "bulk_mib": 1024, "agents": 1000, "ttfr_runs": 5},
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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def wait_serving(name, port, timeout=20.0):
    wait_for("%s to serve the 612-byte page" % name,
             lambda: http_get(port)[0] == 200 and len(http_get(port)[1]) == BODY_SIZE, timeout)


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


class Bench:
    def __init__(self, args, mode):
        self.args = args
        self.mode = mode
        self.cfg = dict(MODES[mode])
        if args.conns:
            self.cfg["conns"] = [int(c) for c in args.conns.split(",")]
        if args.duration:
            self.cfg["duration"] = args.duration
        self.tmp = Path(tempfile.mkdtemp(prefix="tunnel-bench-"))
        self.shm = Path(tempfile.mkdtemp(prefix="tunnel-bench-", dir="/dev/shm"))
        self.procs = Procs(self.tmp)
        self.ports = {}      # path -> public port the client talks to
        self.pids = {}       # role -> pid, for CPU/RSS readings
        self.result = {"paths": {}, "scenarios": {}, "notes": []}
        self.bin = self.tmp / "bin"

    # --- setup ----------------------------------------------------------------------
    def setup(self):
        self.bin.mkdir()
        src = Path(self.args.bin_dir)
        for b in ("tunnel-core", "tunnel-agent"):
            # A private copy: others may rebuild build/release while the suite runs.
            shutil.copy2(src / b, self.bin / b)
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
        for path in self.args.paths:
            if path in UNAVAILABLE:
                self.result["paths"][path] = {"available": False, "why": UNAVAILABLE[path]}
                continue
            try:
                getattr(self, "start_" + path.replace("-", "_"))()
                self.result["paths"][path] = {"available": True, "port": self.ports[path]}
            except Exception as e:  # noqa: BLE001 - one broken path must not end the run
                log("path %s unavailable: %s" % (path, e))
                self.result["paths"][path] = {"available": False, "why": str(e)}

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

    def start_direct(self):
        self.ports["direct"] = self.origin_port

    def start_nginx(self):
        port = free_port()
        p = self.nginx("proxy", PROXY_SERVER.format(port=port, origin=self.origin_port),
                       self.args.nginx_workers)
        self.pids["nginx"] = p.pid
        self.ports["nginx"] = port
        wait_serving("nginx proxy", port)

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
        user = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True,
                                                       text=True).stdout.strip()
        c = self.procs.start("ssh", [
            "ssh", "-N", "-F", "/dev/null", "-R", "127.0.0.1:%d:127.0.0.1:%d" % (fport, self.origin_port),
            "-p", sport, "-i", self.tmp / "client_key", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "ExitOnForwardFailure=yes", "-o", "LogLevel=ERROR", "%s@127.0.0.1" % user])
        try:
            wait_serving("ssh -R forward", fport)
        except RuntimeError:
            raise RuntimeError("ssh -R did not forward: %s %s" % (
                self.procs.log_tail("ssh", 5), self.procs.log_tail("sshd", 5)))
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

    def start_tunnel(self):
        self.core_ports = {k: free_port() for k in ("agent", "http", "admin")}
        self.token = "bench-token-%d" % os.getpid()
        data = self.tmp / "core-data"
        argv = [self.bin / "tunnel-core", "--data-dir", data,
                "--agent-addr", "127.0.0.1:%d" % self.core_ports["agent"],
                "--http-addr", "127.0.0.1:%d" % self.core_ports["http"],
                "--admin-addr", "127.0.0.1:%d" % self.core_ports["admin"],
                "--config", self.tmp / "core.yaml", "--log-level", self.args.log_level]
        # One account with no agent limit: the idle-sessions scenario opens hundreds.
        (self.tmp / "core.yaml").write_text(
            'accounts:\n  - name: bench\n    tokens: ["%s"]\n    max_agents: 0\n' % self.token)
        if self.args.workers:
            argv += ["--workers", self.args.workers]
        core = self.procs.start("core", argv)
        self.pids["core"] = core.pid
        self.ca = data / "tls.crt"
        wait_for("tunnel-core to be ready", lambda: core.poll() is not None or (
            self.ca.exists() and http_get(self.core_ports["admin"], "127.0.0.1", "/healthz")[0] == 200))
        if core.poll() is not None:
            raise RuntimeError("tunnel-core exited: " + self.procs.log_tail("core"))
        time.sleep(0.5)
        self.result["memory_core_no_agent_kib"] = rss_kib(core.pid)
        agent = self.start_agent("bench")
        self.pids["agent"] = agent.pid
        self.ports["tunnel"] = self.core_ports["http"]
        wait_serving("the tunnel", self.ports["tunnel"])

    def start_agent(self, subdomain, name=None):
        return self.procs.start(name or "agent", [
            self.bin / "tunnel-agent", "--server", "127.0.0.1:%d" % self.core_ports["agent"],
            "--token", self.token, "--ca", self.ca, "--data-dir", self.tmp / "agent-data",
            "--log-level", self.args.log_level,
            "http", "127.0.0.1:%d" % self.origin_port, "--subdomain", subdomain])

    def available(self):
        return [p for p in self.args.paths if self.result["paths"].get(p, {}).get("available")]

    # --- load tools -----------------------------------------------------------------
    def wrk(self, port, conns, duration, delay_ms=0, threads=None):
        """Runs wrk; returns requests/s, latency percentiles (us) and error counts."""
        script = self.tmp / ("wrk-%d.lua" % delay_ms)
        script.write_text(WRK_LUA.replace("DELAY_MS", str(delay_ms)))
        threads = threads or max(1, min(conns, self.args.wrk_threads))
        cmd = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % duration, "--latency",
               "--timeout", "5s", "-H", "Host: %s" % HOST, "-s", str(script),
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

    def origin_accepts(self):
        st, body = http_get(self.origin_port, "127.0.0.1", "/origin_status")
        m = re.search(rb"\n\s*(\d+)\s+\d+\s+\d+", body) if st == 200 else None
        return int(m.group(1)) if m else 0

    def cpu_roles(self, path):
        return {"tunnel": ["core", "agent"], "nginx": ["nginx"], "ssh": ["sshd", "ssh"],
                "direct": []}.get(path, []) + ["origin"]

    def cpu_snapshot(self, path):
        return {r: cpu_seconds(self.pids[r]) for r in self.cpu_roles(path) if r in self.pids}

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
            mem["core_idle_kib"] = rss_kib(self.pids["core"])
            mem["agent_idle_kib"] = rss_kib(self.pids["agent"])
            mem["core_idle_detail"] = rss_detail(self.pids["core"])
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
            a = self.start_agent(sub, name="agent-ttfr")
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
        for conns in self.cfg["conns"]:
            for path in self.available():
                port = self.ports[path]
                self.wrk(port, conns, self.cfg["warmup"])
                before = self.cpu_snapshot(path)
                accepts = self.origin_accepts()
                profile = self.args.profile and path == "tunnel" and conns == max(self.cfg["conns"])
                perf = self.start_perf() if profile else []
                r = self.wrk(port, conns, self.cfg["duration"])
                self.finish_perf(perf)
                d = self.cpu_delta(before, self.cpu_snapshot(path))
                r["cpu_seconds"] = d
                # New TCP connections the origin accepted per 1000 requests: 0 when the path
                # keeps its upstream connections alive and reuses them.
                r["origin_conns_per_1k_requests"] = round(
                    (self.origin_accepts() - accepts - 1) * 1000 / max(1, r["requests"]), 2)
                r["cpu_s_per_10k_requests"] = {k: round(v * 1e4 / max(1, r["requests"]), 4)
                                               for k, v in d.items()}
                out.setdefault(path, {})[str(conns)] = r
                cpu.setdefault(path, {})["per_10k_requests_c%d" % conns] = r["cpu_s_per_10k_requests"]
                log("http %s c=%d: %.0f req/s p50 %dus p99 %dus p99.9 %dus errors %d" % (
                    path, conns, r["rps"], r["p50"], r["p99"], r["p999"], r["errors"]))

    def scenario_rate(self):
        out = self.result["scenarios"]["fixed_rate"] = {}
        for rate in self.cfg["rates"]:
            conns = 1 if rate < 100 else rate // 100     # every connection paced at 10 ms
            delay_ms = round(conns * 1000 / rate)
            for path in self.available():
                r = self.wrk(self.ports[path], conns, self.cfg["rate_duration"], delay_ms,
                             threads=min(conns, self.args.wrk_threads))
                r["target_rps"] = rate
                out.setdefault(path, {})[str(rate)] = r
                log("rate %s %d/s: got %.0f/s p50 %dus p99 %dus errors %d" % (
                    path, rate, r["rps"], r["p50"], r["p99"], r["errors"]))

    def scenario_bulk(self):
        out = self.result["scenarios"]["bulk"] = {}
        cpu = self.result["scenarios"].setdefault("cpu", {})
        size = self.cfg["bulk_mib"] << 20
        for path in self.available():
            port = self.ports[path]
            res = out[path] = {}
            before = self.cpu_snapshot(path)
            res["download"] = self.curl(["http://127.0.0.1:%d/big" % port], "speed_download",
                                        size)
            name = "up-%s" % path
            res["upload"] = self.curl(["-T", str(self.tmp / "upload.bin"), "-H", "Expect:",
                                       "http://127.0.0.1:%d/upload/%s" % (port, name)],
                                      "speed_upload", size)
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

    def curl(self, args, speed_field, size):
        fmt = "%{http_code} %{" + speed_field + "} %{size_download} %{size_upload} %{time_total}"
        cmd = ["curl", "-sS", "-o", "/dev/null", "--max-time", "300", "-H", "Host: %s" % HOST,
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

    def scenario_agents(self):
        """Core RSS with N idle agent sessions opened by bench/agents.py."""
        if "core" not in self.pids:
            return
        n = self.args.agents or self.cfg["agents"]
        core = self.pids["core"]
        time.sleep(0.5)
        before = rss_kib(core)
        p = self.procs.start("agents-load", [
            sys.executable, HERE / "agents.py", "--addr", "127.0.0.1:%d" % self.core_ports["agent"],
            "--token", self.token, "--count", n], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            line = p.stdout.readline().decode().split()  # READY ok failed seconds
            if not line or line[0] != "READY":
                raise RuntimeError("agents.py: " + self.procs.log_tail("agents-load"))
            ok, failed, secs = int(line[1]), int(line[2]), float(line[3])
            time.sleep(1.0)
            during = rss_kib(core)
            r = {"agents": n, "connected": ok, "failed": failed, "connect_seconds": secs,
                 "core_rss_before_kib": before, "core_rss_with_agents_kib": during,
                 "kib_per_session": round((during - before) / max(1, ok), 1)}
            if failed:
                r["error"] = self.procs.log_tail("agents-load", 3)
        finally:
            p.stdin.close()
            self.procs.stop(p)
        time.sleep(1.0)
        r["core_rss_after_close_kib"] = rss_kib(core)
        self.result["scenarios"]["agents"] = r
        log("agents: %s" % r)

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
            self.setup()
            steps = [("memory", self.scenario_memory_idle), ("ttfr", self.scenario_ttfr),
                     ("http", self.scenario_http), ("rate", self.scenario_rate),
                     ("bulk", self.scenario_bulk), ("memory-after", self.memory_after),
                     ("agents", self.scenario_agents)]
            for name, fn in steps:
                if self.args.only and name not in self.args.only:
                    continue
                try:
                    fn()
                except Exception as e:  # noqa: BLE001 - record and go on with the others
                    log("scenario %s failed: %s" % (name, e))
                    self.result["notes"].append("scenario %s failed: %s" % (name, e))
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

    def memory_after(self):
        mem = self.result["scenarios"].setdefault("memory", {})
        if "core" in self.pids:
            time.sleep(1.0)
            mem["core_after_load_kib"] = rss_kib(self.pids["core"])
            mem["agent_after_load_kib"] = rss_kib(self.pids["agent"])


WRK_LUA = r"""
local d = DELAY_MS
if d > 0 then
  function delay() return d end
end
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
    """[(target, value, verdict)]; verdict is met, missed or not measured."""
    sc = res["scenarios"]
    http = sc.get("http_612", {})
    out = []

    def ratio(a, b):
        return a / b if a is not None and b else None

    for c in ("32", "256"):
        t = http.get("tunnel", {}).get(c)
        n = http.get("nginx", {}).get(c)
        s = http.get("ssh", {}).get(c)
        r = ratio(t and t["rps"], n and n["rps"])
        out.append(("req/s >= 0.7x nginx hop (c=%s)" % c, r, r is not None and r >= 0.7, "%.2fx"))
        r = ratio(t and t["rps"], s and s["rps"])
        out.append(("req/s >= 3x ssh -R (c=%s)" % c, r, r is not None and r >= 3.0, "%.2fx"))
        r = ratio(t and t["p99"], n and n["p99"])
        out.append(("p99 <= 2x nginx hop (c=%s)" % c, r, r is not None and r <= 2.0, "%.2fx"))
    mem = sc.get("memory", {})
    core, agent = mem.get("core_idle_kib"), mem.get("agent_idle_kib")
    out.append(("idle RSS core <= 8 MiB", core and core / 1024, core is not None and core <= 8192,
                "%.1f MiB"))
    out.append(("idle RSS agent <= 6 MiB", agent and agent / 1024,
                agent is not None and agent <= 6144, "%.1f MiB"))
    ag = sc.get("agents", {})
    k = ag.get("kib_per_session")
    out.append(("core memory per idle agent session <= 64 KiB (N=%s)" % ag.get("connected"), k,
                k is not None and k <= 64 and not ag.get("failed"), "%.1f KiB"))
    for name in ("10,000 agents on one core < 1 GiB", "flat RSS after connect/disconnect churn",
                 "TCP single stream with TLS >= 1.5x ssh -R", "tunnel-plain TCP >= 0.5x direct"):
        out.append((name, None, None, ""))
    rows = []
    for name, value, ok, fmt in out:
        if value is None:
            rows.append((name, "-", "not measured"))
        else:
            rows.append((name, fmt % value, "met" if ok else "MISSED"))
    return rows


def fmt_us(v):
    return "-" if v is None else ("%.0f us" % v if v < 10000 else "%.1f ms" % (v / 1000))


def markdown(res):
    sc = res["scenarios"]
    paths = [p for p in PATHS if p in res["paths"]]
    avail = [p for p in paths if res["paths"][p].get("available")]
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
        L += ["## HTTP, 612-byte response, keep-alive (wrk)", "",
              "| path | conns | req/s | p50 | p99 | p99.9 | errors | vs nginx | vs ssh -R "
              "| origin conns / 1k req |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for c in [str(x) for x in res["settings"]["conns"]]:
            for p in paths:
                r = http.get(p, {}).get(c)
                if r is None:
                    L.append("| %s | %s | not available | | | | | | | |" % (PATH_LABEL[p], c))
                    continue
                n = http.get("nginx", {}).get(c)
                s = http.get("ssh", {}).get(c)
                L.append("| %s | %s | %.0f | %s | %s | %s | %d | %s | %s | %s |" % (
                    PATH_LABEL[p], c, r["rps"], fmt_us(r["p50"]), fmt_us(r["p99"]),
                    fmt_us(r["p999"]), r["errors"],
                    "%.2fx" % (r["rps"] / n["rps"]) if n and n["rps"] else "-",
                    "%.2fx" % (r["rps"] / s["rps"]) if s and s["rps"] else "-",
                    r.get("origin_conns_per_1k_requests", "-")))
        L.append("")
    rate = sc.get("fixed_rate", {})
    if rate:
        L += ["## HTTP at fixed rates (wrk, paced connections)", "",
              "| path | target req/s | achieved | p50 | p99 | p99.9 | errors |",
              "|---|---|---|---|---|---|---|"]
        for rt in [str(x) for x in res["settings"]["rates"]]:
            for p in avail:
                r = rate.get(p, {}).get(rt)
                if r:
                    L.append("| %s | %s | %.0f | %s | %s | %s | %d |" % (
                        PATH_LABEL[p], rt, r["rps"], fmt_us(r["p50"]), fmt_us(r["p99"]),
                        fmt_us(r["p999"]), r["errors"]))
        L.append("")
    bulk = sc.get("bulk", {})
    if bulk:
        L += ["## Large bodies: %d MiB through each path (curl), MB/s (10^6 bytes/s)"
              % res["settings"]["bulk_mib"], "",
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
              "| path | process | per 10k requests (c=32) | per 10k requests (c=256) | per GiB moved |",
              "|---|---|---|---|---|"]
        for p in avail:
            c = cpu.get(p, {})
            roles = sorted({r for v in c.values() for r in v}, key=lambda r: (r == "origin", r))
            for role in roles:
                def g(key):
                    v = c.get(key, {}).get(role)
                    return "-" if v is None else "%.3f" % v
                L.append("| %s | %s | %s | %s | %s |" % (
                    PATH_LABEL[p], role, g("per_10k_requests_c32"), g("per_10k_requests_c256"),
                    g("per_gib")))
        L.append("")
    mem = sc.get("memory", {})
    ag = sc.get("agents", {})
    if mem or ag:
        L += ["## Memory (VmRSS)", "", "| what | KiB |", "|---|---|"]
        names = [("core_no_agent_kib", "core, started, no agent"),
                 ("core_idle_kib", "core idle, 1 agent connected"),
                 ("agent_idle_kib", "agent idle, connected"),
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
        if ag:
            L.append("| core before the idle sessions | %d |" % ag["core_rss_before_kib"])
            L.append("| core with %d idle agent sessions (%d failed) | %d |" % (
                ag["connected"], ag["failed"], ag["core_rss_with_agents_kib"]))
            L.append("| core after they disconnected | %d |" % ag["core_rss_after_close_kib"])
            L.append("| **per idle agent session** | **%.1f** |" % ag["kib_per_session"])
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


def main():
    ap = argparse.ArgumentParser(description="tunnel benchmark suite (issue #4)")
    ap.add_argument("--quick", action="store_true", help="short runs, < 3 minutes")
    ap.add_argument("--bin-dir", default=os.environ.get("TUNNEL_BIN_DIR",
                                                        str(REPO / "build/release/apps")),
                    help="where tunnel-core and tunnel-agent are (copied before use)")
    ap.add_argument("--out-dir", type=Path, default=HERE / "results")
    ap.add_argument("--paths", default="direct,nginx,ssh,tunnel,tunnel-plain",
                    help="comma-separated subset of %s" % ",".join(PATHS))
    ap.add_argument("--only", default="",
                    help="comma-separated scenarios: memory,ttfr,http,rate,bulk,memory-after,agents")
    ap.add_argument("--conns", default="", help="comma-separated wrk connection counts (default 32,256)")
    ap.add_argument("--duration", type=int, default=0, help="seconds per wrk run (default 15, quick 5)")
    ap.add_argument("--agents", type=int, default=0, help="idle agent sessions (default 1000, quick 200)")
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
