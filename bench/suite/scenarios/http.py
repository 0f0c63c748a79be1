"""HTTP through every path: keep-alive load (wrk), fixed request rates (openloop) and
large bodies (curl)."""
from .. import drivers, perf as perf_record
from ..common import log
from ..procs import cpu_delta
from .rounds import keep_best, round_label


def keepalive(rig):
    """wrk against every path at each connection count (keep-alive, the 612-byte page),
    `rounds` times with the paths in turn; each path keeps its best run."""
    out = rig.result["scenarios"]["http_612"] = {}
    cpu = rig.result["scenarios"].setdefault("cpu", {})
    rounds = rig.cfg["rounds"]
    for rnd, conns, path in ((r, c, p) for r in range(rounds) for c in rig.cfg["conns"]
                             for p in rig.available()):
        port, host = rig.ports[path], rig.hosts[path]
        drivers.wrk(rig.tmp, port, conns, rig.cfg["warmup"], host, rig.args.wrk_threads)
        before = rig.cpu_snapshot(path)
        accepts = rig.origin_accepts()
        profile = (rig.args.profile and rnd == 0 and path == "tunnel"
                   and conns == max(rig.cfg["conns"]))
        perf = perf_record.start(rig) if profile else []
        r = drivers.wrk(rig.tmp, port, conns, rig.cfg["duration"], host, rig.args.wrk_threads)
        perf_record.finish(rig, perf)
        d = cpu_delta(before, rig.cpu_snapshot(path))
        r["cpu_seconds"] = d
        # New TCP connections the origin accepted per 1000 requests: 0 when the path
        # keeps its upstream connections alive and reuses them.
        r["origin_conns_per_1k_requests"] = round(
            (rig.origin_accepts() - accepts - 1) * 1000 / max(1, r["requests"]), 2)
        r["cpu_s_per_10k_requests"] = {k: round(v * 1e4 / max(1, r["requests"]), 4)
                                       for k, v in d.items()}
        if keep_best(out.setdefault(path, {}), str(conns), r, "rps"):
            cpu.setdefault(path, {})["per_10k_requests_c%d" % conns] = \
                r["cpu_s_per_10k_requests"]
        log("http %s c=%d%s: %.0f req/s p50 %dus p99 %dus p99.9 %dus errors %d" % (
            path, conns, round_label(rnd, rounds), r["rps"], r["p50"], r["p99"],
            r["p999"], r["errors"]))


def fixed_rate(rig):
    """Fixed request rates with openloop (open loop: latency from the schedule)."""
    if "openloop" not in rig.tools:
        rig.result["notes"].append("fixed rates skipped: openloop not built")
        return
    out = rig.result["scenarios"]["fixed_rate"] = {}
    for rate in rig.cfg["rates"]:
        # Enough connections that each has 50 ms per request at the target rate; a path
        # slower than that makes requests queue, which the latency then shows.
        conns = max(1, min(256, rate // 20))
        # At 1 req/s a short run has too few samples: at least 10 s (2 s in quick mode).
        duration = rig.cfg["rate_duration"] if rate >= 100 else max(
            rig.cfg["rate_duration"], 2 if rig.mode == "quick" else 10)
        for path in rig.available():
            r = drivers.openloop(rig.tools["openloop"], rig.ports[path], rig.hosts[path], rate,
                                 duration, conns)
            out.setdefault(path, {})[str(rate)] = r
            log("rate %s %d/s: got %.0f/s p50 %dus p99 %dus p99.9 %dus errors %d (send lag p99 %dus)" % (
                path, rate, r["achieved_rps"], r["p50"], r["p99"], r["p999"], r["errors"],
                r["send_lag_p99"]))


def bulk(rig):
    """A large download and a large upload (curl) through every path."""
    out = rig.result["scenarios"]["bulk"] = {}
    cpu = rig.result["scenarios"].setdefault("cpu", {})
    size = rig.cfg["bulk_mib"] << 20
    for path in rig.available():
        port, host = rig.ports[path], rig.hosts[path]
        res = out[path] = {}
        before = rig.cpu_snapshot(path)
        res["download"] = drivers.curl(["http://127.0.0.1:%d/big" % port], "speed_download",
                                       size, host)
        name = "up-%s" % path
        res["upload"] = drivers.curl(["-T", str(rig.tmp / "upload.bin"), "-H", "Expect:",
                                      "http://127.0.0.1:%d/upload/%s" % (port, name)],
                                     "speed_upload", size, host)
        got = (rig.shm / "upload" / name)
        res["upload"]["bytes_stored"] = got.stat().st_size if got.exists() else 0
        if got.exists():
            got.unlink()
        if res["upload"]["bytes_stored"] != size:
            res["upload"]["error"] = "origin stored %d of %d bytes" % (
                res["upload"]["bytes_stored"], size)
        d = cpu_delta(before, rig.cpu_snapshot(path))
        gib = 2 * size / float(1 << 30)
        res["cpu_seconds"] = d
        cpu.setdefault(path, {})["per_gib"] = {k: round(v / gib, 3) for k, v in d.items()}
        log("bulk %s: down %.0f MB/s up %.0f MB/s" % (
            path, res["download"]["mb_s"], res["upload"]["mb_s"]))
