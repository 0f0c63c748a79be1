"""Processes and paths: starts everything a run measures on 127.0.0.1 (each port chosen
free at run time) and keeps the ports, Host names and pids the scenarios need."""
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .common import (BODY_SIZE, HOST, MODES, NGINX_STREAM_MODULE, PLAIN_HOST, TOOLS, free_port,
                     log)
from .configs import NGINX_COMMON, NGINX_STREAM, ORIGIN_SERVER, PROXY_SERVER, SSHD_CONFIG
from .net import connects, http_get, listening, udp_bound, wait_for, wait_serving
from .procs import Procs, cpu_seconds, rss_detail, rss_kib


class Rig:
    """The processes of one run and where to reach them: the origin, the comparison paths
    (direct, nginx, ssh -R), the tunnel's core and agents, and fresh cores for the scenarios
    that measure one on its own. `result` is the run's JSON result, which setup and the
    scenarios fill in."""

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
        self.stamp = None    # set by runner.run: names the result files

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
        wait_for("sshd to listen", lambda: connects(sport) or d.poll() is not None)
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

    def ensure_core(self):
        """Starts tunnel-core once (TLS agent port, and the plain one when supported)."""
        if self.core is not None:
            return
        self.core_ports = {k: free_port() for k in ("agent", "http", "admin")}
        self.token = "bench-token-%08d" % os.getpid()
        data = self.tmp / "core-data"
        argv = [self.bin / "tunnel-core", "--data-dir", data,
                "--agent-addr", "127.0.0.1:%d" % self.core_ports["agent"],
                "--http-addr", "127.0.0.1:%d" % self.core_ports["http"],
                "--admin-addr", "127.0.0.1:%d" % self.core_ports["admin"],
                "--config", self.tmp / "core.yaml", "--log-level", self.args.log_level]
        if "tunnel-plain" in self.args.paths and not self.plain_why:
            self.core_ports["agent_plain"] = free_port()
            argv += ["--agent-plain-addr", "127.0.0.1:%d" % self.core_ports["agent_plain"]]
        # One account with no agent limit: the agents scenario opens thousands, all from
        # 127.0.0.1 and up to 64 handshakes at once (agentflood --concurrency).
        (self.tmp / "core.yaml").write_text(
            'accounts:\n  - name: bench\n    tokens: ["%s"]\n    max_agents: 0\n'
            'limits:\n  max_tunnels_per_account: 0\n  max_agent_handshakes_per_address: 128\n'
            % self.token)
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
