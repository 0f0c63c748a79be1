"""Load drivers: each runs one load tool once against a loopback port and returns what it
measured as a dict (the JSON results keep these keys). wrk (closed loop, keep-alive), our
bench/tools (openloop: fixed request rates; udpping: UDP round trips; agentflood: many agent
sessions, driven by Flood), iperf3 (TCP and UDP bulk) and curl (large bodies). None of them
knows about the paths: they get a port, a Host header and the tool's binary."""
import json
import re
import subprocess

from .common import HOST, UDP_BULK_LEN, UDP_PING_SIZE
from .procs import LineReader

# wrk prints its summary as one JSON line, which wrk() picks out of its output.
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


def wrk(tmp, port, conns, duration, host=HOST, max_threads=2):
    """Runs wrk (its Lua script written into the directory `tmp`); returns requests/s,
    latency percentiles (us) and error counts."""
    script = tmp / "wrk.lua"
    script.write_text(WRK_LUA)
    threads = max(1, min(conns, max_threads))
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


def openloop(tool, port, host, rate, duration, conns):
    """Runs bench/tools/openloop: a fixed schedule of `rate` requests/s; latency from each
    request's scheduled time (coordinated omission counted)."""
    cmd = [str(tool), "--port", str(port), "--host-header", host,
           "--rate", str(rate), "--duration", str(duration), "--connections", str(conns),
           "--timeout", "5"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30)
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError("openloop gave no result: %s %s" % (out.stdout[-300:],
                                                               out.stderr[-300:]))


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


def iperf(port, streams, reverse, seconds):
    """One iperf3 run; Gbit/s as counted by the receiver."""
    end = run_iperf(["-p", str(port), "-P", str(streams)], reverse, seconds)
    if end.get("error"):
        return end
    recv, sent = end.get("sum_received", {}), end.get("sum_sent", {})
    return {"gbit_s": round(recv.get("bits_per_second", 0) / 1e9, 3),
            "bytes": recv.get("bytes", 0), "seconds": round(recv.get("seconds", 0), 2),
            "retransmits": sent.get("retransmits")}


def iperf_udp(port, mbit, reverse, seconds):
    """One iperf3 -u run at an offered rate of `mbit` Mbit/s in UDP_BULK_LEN datagrams;
    what the receiver counted."""
    end = run_iperf(["-p", str(port), "-u", "-b", "%dM" % mbit, "-l", str(UDP_BULK_LEN)],
                    reverse, seconds)
    if end.get("error"):
        return end
    recv = end.get("sum_received") or end.get("sum", {})
    return {"offered_mbit_s": mbit, "mbit_s": round(recv.get("bits_per_second", 0) / 1e6, 1),
            "bytes": recv.get("bytes", 0), "datagrams": recv.get("packets", 0),
            "lost": recv.get("lost_packets", 0),
            "loss_pct": round(recv.get("lost_percent", 0.0), 3),
            "jitter_ms": round(recv.get("jitter_ms", 0.0), 3)}


def udpping(tool, port, rate, seconds, timeout, flows=4):
    """One bench/tools/udpping run: `rate` round trips per second over `flows` source ports;
    a datagram not back within `timeout` seconds counts as lost."""
    cmd = [str(tool), "--port", str(port), "--rate", str(rate),
           "--duration", str(seconds), "--size", str(UDP_PING_SIZE), "--flows", str(flows),
           "--timeout", str(timeout)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError("udpping gave no result: %s %s" % (out.stdout[-300:],
                                                              out.stderr[-300:]))


def curl(args, speed_field, size, host=HOST):
    """One curl transfer (`args`: the URL and upload options); MB/s from curl's
    `speed_field`, and an "error" when the status or the byte count is not the expected."""
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
