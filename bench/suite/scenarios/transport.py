"""TCP and UDP tunnels against the other paths: TCP bulk (iperf3), UDP round trips at
fixed rates (udpping) and UDP bulk at fixed offered rates (iperf3 -u)."""
import time

from .. import drivers
from ..common import TCP_PATHS, UDP_PATHS, log
from ..procs import cpu_delta
from .rounds import keep_best, round_label


def tcp(rig):
    """TCP bulk through each path with iperf3: 1 and 8 streams, both directions."""
    if not rig.iperf_port:
        return
    out = rig.result["scenarios"]["tcp"] = {}
    cpu = rig.result["scenarios"].setdefault("cpu_tcp", {})
    secs = rig.cfg["tcp_seconds"]
    rounds = rig.cfg["rounds"]
    for rnd, streams, reverse in ((r, n, rev) for r in range(rounds) for n in (1, 8)
                                  for rev in (False, True)):
        direction = "down" if reverse else "up"
        for path in TCP_PATHS:
            port = rig.tcp_ports.get(path)
            if path not in rig.available() or not port:
                continue
            before = rig.cpu_snapshot(path, tcp=True)
            r = drivers.iperf(port, streams, reverse, secs)
            if r.get("error"):
                # iperf3 -s serves one test at a time and can be left busy by a
                # failed one: one retry.
                log("tcp %s P=%d %s: %s; retrying" % (path, streams, direction, r["error"]))
                time.sleep(1)
                before = rig.cpu_snapshot(path, tcp=True)
                r = drivers.iperf(port, streams, reverse, secs)
            d = cpu_delta(before, rig.cpu_snapshot(path, tcp=True))
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


def udp(rig):
    """UDP through each path: round trips at fixed rates (udpping, 4 flows), then iperf3 -u
    at fixed offered rates in both directions; loss, latency, jitter, CPU."""
    out = rig.result["scenarios"]["udp"] = {"ping": {}, "bulk": {}}
    for path in UDP_PATHS:
        if path in rig.args.paths and path not in rig.udp_ports and \
                path not in rig.udp_iperf_ports:
            out.setdefault("unavailable", {})[path] = (
                rig.result["paths"].get(path, {}).get("why") or "no udp path set up")
    for rate in rig.cfg["udp_rates"]:
        for path in UDP_PATHS:
            port = rig.udp_ports.get(path)
            if not port:
                continue
            before = rig.cpu_snapshot(path, udp="ping")
            r = drivers.udpping(rig.tools["udpping"], port, rate, rig.cfg["udp_seconds"],
                                "0.5" if rig.mode == "quick" else "1")
            d = cpu_delta(before, rig.cpu_snapshot(path, udp="ping"))
            if r["received"]:
                # CPU-us per round trip (a datagram each way)
                r["cpu_us_per_round_trip"] = {k: round(v * 1e6 / r["received"], 1)
                                              for k, v in d.items()}
            out["ping"].setdefault(path, {})[str(rate)] = r
            log("udp ping %s %d/s: p50 %dus p99 %dus p99.9 %dus lost %.2f%% (send lag p99 %dus)"
                % (path, rate, r["p50"], r["p99"], r["p999"], r["loss_pct"],
                   r["send_lag_p99"]))
    secs = rig.cfg["udp_bulk_seconds"]
    for mbit in rig.cfg["udp_mbit"]:
        for reverse in (False, True):
            key = "%s_%d" % ("down" if reverse else "up", mbit)
            for path in UDP_PATHS:
                port = rig.udp_iperf_ports.get(path)
                if not port:
                    continue
                before = rig.cpu_snapshot(path, udp="bulk")
                r = drivers.iperf_udp(port, mbit, reverse, secs)
                if r.get("error"):
                    log("udp bulk %s %s: %s; retrying" % (path, key, r["error"]))
                    time.sleep(1)
                    before = rig.cpu_snapshot(path, udp="bulk")
                    r = drivers.iperf_udp(port, mbit, reverse, secs)
                d = cpu_delta(before, rig.cpu_snapshot(path, udp="bulk"))
                gib = r.get("bytes", 0) / float(1 << 30)
                if gib > 0:
                    r["cpu_s_per_gib"] = {k: round(v / gib, 3) for k, v in d.items()}
                out["bulk"].setdefault(path, {})[key] = r
                log("udp bulk %s %s: %s Mbit/s, lost %s%%%s" % (
                    path, key, r.get("mbit_s"), r.get("loss_pct"),
                    " (%s)" % r["error"] if r.get("error") else ""))
