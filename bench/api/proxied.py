#!/usr/bin/env python3
"""Proxied HTTP requests per second with 1,000 API-created tunnels in the store, against a
core that has only its YAML file (issue 17: within 3 %). Both cores run side by side with
the same settings (1 worker each), each with one agent serving `app` from the same origin
nginx; on the store core `app` is one of the API-made tunnels (1,000 in all, `app` and 999
others; its route then carries usage counters). wrk (1 thread, keep-alive) alternates between
the two for --rounds rounds; the best run of each counts, and the ratio is printed.

    bench/api/proxied.py [--tunnels 1000] [--conns 32] [--duration 5] [--rounds 3]

Bounded: every run is --duration seconds; every process it starts is stopped."""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from suite import drivers  # noqa: E402
from suite.configs import NGINX_COMMON, ORIGIN_SERVER  # noqa: E402

from common import ROOT, Core, free_port, temp_dir  # noqa: E402

TOKEN = "bench-token-0123456789abcdef0123456789abcdef"
CONFIG = """workers: 1
listen:
  agent: "{agent}"
  http: "{http}"
  https: ""
  admin: "{admin}"
accounts:
  - name: default
    tokens: ["%s"]
""" % TOKEN


def start_origin(tmp):
    port = free_port()
    (Path(tmp) / "www").mkdir()
    (Path(tmp) / "www" / "index.html").write_text("ok\n")
    shm = Path(tmp) / "shm"
    shm.mkdir()
    (shm / "origin-body").mkdir()
    conf = Path(tmp) / "origin.conf"
    conf.write_text(NGINX_COMMON.format(
        workers=1, dir=tmp, shm=shm, name="origin",
        server=ORIGIN_SERVER.format(port=port, dir=tmp, shm=shm),
        user="user root;" if os.getuid() == 0 else ""))
    proc = subprocess.Popen(["nginx", "-p", str(tmp), "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    return proc, port


def start_agent(bin_dir, core, tmp, name, origin_port):
    log = open(Path(tmp) / (name + ".log"), "wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNNEL_")}
    env["TUNNEL_TOKEN"] = TOKEN
    return subprocess.Popen(
        [str(Path(bin_dir) / "tunnel-agent"), "http", str(origin_port), "--subdomain", "app",
         "--server", "127.0.0.1:%d" % core.ports["agent"], "--ca",
         str(core.data_dir / "tls.crt"), "--data-dir", str(Path(tmp) / (name + "-data")),
         "--log-level", "warn"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_served(port, timeout=30):
    import http.client
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/", headers={"Host": "app.localhost"})
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("app.localhost not served on port %d" % port)


def stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tunnels", type=int, default=1000)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bin-dir", default=str(ROOT / "build/release/apps"))
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()

    tmp = Path(temp_dir())
    procs, cores = [], []
    try:
        origin, origin_port = start_origin(tmp)
        procs.append(origin)
        yaml_core = Core(args.bin_dir, tmp, "yaml", CONFIG)
        cores.append(yaml_core)
        store_core = Core(args.bin_dir, tmp, "store", CONFIG)
        cores.append(store_core)
        # The store core's tunnels: `app` for account default (served), then the others.
        status, accounts, _ = store_core.call("GET", "/api/v1/accounts")
        default = [a for a in accounts["items"] if a["name"] == "default"][0]["id"]
        for i in range(args.tunnels):
            name = "app" if i == 0 else "t%05d" % i
            status, body, _ = store_core.call("POST", "/api/v1/tunnels",
                                              {"name": name, "type": "http", "account": default})
            if status != 201:
                raise RuntimeError("create %s: %d %s" % (name, status, body))
        for core in cores:
            procs.append(start_agent(args.bin_dir, core, tmp, "agent-" + core.config.stem,
                                     origin_port))
            wait_served(core.ports["http"])

        best = {"yaml": None, "store": None}
        runs = {"yaml": [], "store": []}
        for _ in range(args.rounds):
            for name, core in (("yaml", yaml_core), ("store", store_core)):
                r = drivers.wrk(tmp, core.ports["http"], args.conns, args.duration,
                                host="app.localhost", max_threads=1)
                if r["errors"]:
                    raise RuntimeError("%s: %d errors" % (name, r["errors"]))
                runs[name].append(r["rps"])
                if best[name] is None or r["rps"] > best[name]["rps"]:
                    best[name] = r
                print("  %-5s %10.1f req/s  p99 %d us" % (name, r["rps"], r["p99"]),
                      file=sys.stderr)
        results = {
            "tunnels_in_store": args.tunnels, "conns": args.conns, "duration_s": args.duration,
            "rounds": args.rounds, "yaml_rps": runs["yaml"], "store_rps": runs["store"],
            "yaml_best": best["yaml"], "store_best": best["store"],
            "ratio_store_to_yaml": round(best["store"]["rps"] / best["yaml"]["rps"], 4)}
    finally:
        for p in reversed(procs):
            stop(p)
        for c in cores:
            c.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
