"""The report: one run's result as Markdown tables, with ratios against nginx and ssh -R
and the targets' verdicts."""
from .common import PATH_LABEL, PATHS, TCP_PATHS, UDP_BULK_LEN, UDP_PATHS, UDP_PING_SIZE
from .targets import targets


def best_of(settings):
    rounds = settings.get("rounds", 1)
    return ", best of %d rounds taken in turn" % rounds if rounds > 1 else ""


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
    """The Markdown report of one run's result (bench/results/<stamp>.md)."""
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
