"""Process wrappers for tunnel-core, tunnel-agent and the origin. Each process writes
stdout+stderr to a log file (no pipe to fill up); tests wait on that log with a deadline."""
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from . import client

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def bin_dir() -> Path:
    return Path(os.environ.get("TUNNEL_BIN_DIR", REPO / "build" / "release" / "apps"))


def clean_env(extra=None):
    """The environment for a child: no TUNNEL_* from the caller (they would change defaults)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNNEL_")}
    env.update(extra or {})
    return env


class Proc:
    def __init__(self, name, argv, log_path, cwd=None, env=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.cwd = cwd
        self.env = env if env is not None else clean_env()
        self.popen = None

    def start(self):
        # Append, so a restarted process keeps the earlier log above a marker.
        with open(self.log_path, "ab") as log:
            log.write(("=== start: %s\n" % " ".join(self.argv)).encode())
            log.flush()
            self.popen = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, cwd=self.cwd, env=self.env)
        return self

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def returncode(self):
        return self.popen.poll() if self.popen else None

    def output(self):
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines=200):
        return "\n".join(self.output().splitlines()[-lines:])

    def wait_output(self, pattern, timeout=15.0, flags=re.I):
        """Waits until the log matches the regex; returns the match."""
        rx = re.compile(pattern, flags)
        return client.wait_for(lambda: rx.search(self.output()), timeout,
                               what="%s to print /%s/" % (self.name, pattern))

    def wait_exit(self, timeout=15.0):
        """Waits for the process to exit; returns its exit code or raises TimeoutError."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError("%s still running after %.1fs" % (self.name, timeout)) from None

    def signal(self, sig):
        if self.alive():
            self.popen.send_signal(sig)

    def kill(self):
        if self.alive():
            self.popen.kill()
        if self.popen is not None:
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL after timeout. Returns the exit code."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        return self.returncode()



class ListeningProc(Proc):
    """A helper server that prints "listening PORT" once it accepts; start() waits for that
    line and sets self.port."""

    port = None

    def start(self):
        super().start()
        self.port = int(self.wait_output(r"^listening (\d+)$", timeout=15, flags=re.M).group(1))
        return self


class Origin(Proc):
    """The test origin app (harness/origin.py) in its own process, so a busy test client
    does not compete with it for the GIL."""

    def __init__(self, name, log_path):
        super().__init__("origin-" + name,
                         [sys.executable, "-u", str(HERE / "origin.py"), "--name", name],
                         log_path, env=clean_env({"PYTHONDONTWRITEBYTECODE": "1"}))
        self.label = name
        self.port = None

    def start(self):
        super().start()
        m = self.wait_output(r"^listening (\d+)$", timeout=15, flags=re.M)
        self.port = int(m.group(1))
        return self

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port


class Core(Proc):
    """tunnel-core on free loopback ports with its own data dir.

    With config_text, the core is started with --config (the text may use {agent}, {http},
    {https} and {admin} placeholders for the chosen addresses); otherwise with flags and
    --token for each of tokens."""

    def __init__(self, workdir, name="core", tokens=("test-agent-token",), config_text=None,
                 extra_args=(), ports=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / ("%s-data" % name)
        self.tokens = list(tokens)
        self._config_text = config_text
        self._extra_args = list(extra_args)
        self._ports_given = ports is not None
        self.ports = ports or self._pick_ports()
        super().__init__(name, self._argv(name), self.workdir / ("%s.log" % name),
                         cwd=self.workdir)

    @staticmethod
    def _pick_ports():
        return {k: client.free_port() for k in ("agent", "http", "https", "admin")}

    def _argv(self, name):
        addrs = {k: "127.0.0.1:%d" % p for k, p in self.ports.items()}
        argv = [bin_dir() / "tunnel-core", "--data-dir", self.data_dir]
        if self._config_text is not None:
            self.config_path = self.workdir / ("%s.yaml" % name)
            self.config_path.write_text(self._config_text.format(**addrs))
            argv += ["--config", self.config_path]
        else:
            self.config_path = None
            argv += ["--agent-addr", addrs["agent"], "--http-addr", addrs["http"],
                     "--https-addr", addrs["https"], "--admin-addr", addrs["admin"]]
            for t in self.tokens:
                argv += ["--token", t]
        return [str(a) for a in argv + self._extra_args]

    @property
    def http_port(self):
        return self.ports["http"]

    @property
    def agent_addr(self):
        return "127.0.0.1:%d" % self.ports["agent"]

    @property
    def admin_port(self):
        return self.ports["admin"]

    @property
    def ca(self):
        return self.data_dir / "tls.crt"

    def host(self, name):
        return "%s.localhost" % name

    def url(self, name, path="/"):
        return "http://%s.localhost:%d%s" % (name, self.http_port, path)

    def start(self, timeout=30.0):
        first_start = self.popen is None
        for attempt in range(3):
            super().start()
            try:
                self.wait_ready(timeout)
                return self
            except AssertionError:
                # Another process on this machine may have bound one of the ports picked
                # between the pick and the core's bind. On a first start with ports of our
                # choosing, pick again; a restart keeps its ports (agents know them).
                if (not first_start or self._ports_given or attempt == 2
                        or "Address already in use" not in self.tail(5)):
                    raise
                self.ports = self._pick_ports()
                self.argv = self._argv(self.name)
        return self

    def wait_ready(self, timeout=30.0):
        """Ready = alive, tls.crt written, admin /healthz answers 200."""
        def ready():
            if not self.alive():
                raise AssertionError("%s exited with %s during start:\n%s"
                                     % (self.name, self.returncode(), self.tail()))
            if not self.ca.exists():
                return False
            return client.request(self.admin_port, "127.0.0.1", "GET", "/healthz",
                                  timeout=2).status == 200
        client.wait_for(ready, timeout, what="%s to be ready" % self.name)

    def request(self, name, method="GET", path="/echo", body=None, headers=None, timeout=30.0):
        return client.request(self.http_port, self.host(name), method, path, body, headers,
                              timeout)

    def admin(self, path, timeout=10.0):
        return client.request(self.admin_port, "127.0.0.1", "GET", path, timeout=timeout)

    def wait_routed(self, name, path="/echo", timeout=30.0, agent=None):
        return client.wait_routed(self.http_port, self.host(name), path, timeout, agent)


class Agent(Proc):
    """tunnel-agent http TARGET against a Core, with --ca and --token given explicitly
    (token="" gives no --token: the test passes --token-file or relies on the data dir)."""

    def __init__(self, core, target, subdomain=None, token=None, name="agent", extra_args=(),
                 use_ca=True, server=None):
        token = token if token is not None else core.tokens[0]
        argv = [bin_dir() / "tunnel-agent", "http", target,
                "--server", server or core.agent_addr,
                "--data-dir", core.workdir / ("%s-data" % name)]
        if token:
            argv += ["--token", token]
        if use_ca:
            argv += ["--ca", core.ca]
        if subdomain:
            argv += ["--subdomain", subdomain]
        argv += list(extra_args)
        super().__init__(name, argv, core.workdir / ("%s.log" % name), cwd=core.workdir)
        self.core = core
        self.subdomain = subdomain

