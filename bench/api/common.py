"""Shared by the control-plane benches: start a tunnel-core on free loopback ports, call its
API over one kept-alive connection, percentiles. Every process is stopped at the end."""
import http.client
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, p):
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100.0 * (len(ordered) - 1))))]


def summary_ms(values):
    return {"n": len(values), "p50_ms": round(percentile(values, 50) * 1000, 3),
            "p90_ms": round(percentile(values, 90) * 1000, 3),
            "p99_ms": round(percentile(values, 99) * 1000, 3),
            "max_ms": round(max(values) * 1000 if values else 0, 3)}


class Core:
    """tunnel-core with its own data dir; config_text may use {agent} {http} {admin}."""

    def __init__(self, bin_dir, workdir, name, config_text, extra_env=None):
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / (name + "-data")
        self.ports = {k: free_port() for k in ("agent", "http", "admin")}
        addrs = {k: "127.0.0.1:%d" % p for k, p in self.ports.items()}
        self.config = self.workdir / (name + ".yaml")
        self.config.write_text(config_text.format(**addrs))
        self.log = open(self.workdir / (name + ".log"), "wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUNNEL_")}
        env.update(extra_env or {})
        self.proc = subprocess.Popen(
            [str(Path(bin_dir) / "tunnel-core"), "--config", str(self.config), "--data-dir",
             str(self.data_dir), "--log-level", "warn"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 30
        while not (self.data_dir / "admin.key").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("%s did not start: see %s" % (name, self.log.name))
            time.sleep(0.05)
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.ports["admin"], timeout=2)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("%s does not answer /healthz" % name)
            time.sleep(0.05)
        self.key = (self.data_dir / "admin.key").read_text().strip()
        self.conn = None

    def call(self, method, path, body=None, timeout=30):
        """One API request on a kept-alive connection: (status, JSON, seconds)."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.ports["admin"],
                                                   timeout=timeout)
        headers = {"Authorization": "Bearer " + self.key}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        self.conn.request(method, path, body=data, headers=headers)
        r = self.conn.getresponse()
        raw = r.read()
        elapsed = time.perf_counter() - started
        return r.status, (json.loads(raw) if raw else None), elapsed

    def stop(self):
        if self.conn is not None:
            self.conn.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()


def temp_dir():
    return tempfile.mkdtemp(prefix="tunnel-api-bench-")
