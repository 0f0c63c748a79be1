#!/usr/bin/env python3
"""Writes the Grafana dashboards of tunnel-core and tunnel-agent into dashboards/*.json.

    deploy/grafana/generate.py            # rewrite the JSON files
    deploy/grafana/generate.py --check    # exit 1 if a file differs from what it would write

Edit the panels here, not in the JSON (tests/integration/test_dashboards.py checks that the
files are this script's output, and that every metric their queries name is one the core,
the agent or the recording rules of deploy/prometheus produce)."""
import argparse
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"


class Board:
    def __init__(self, uid, title, description):
        self.uid, self.title, self.description = uid, title, description
        self.panels, self.vars = [], [{
            "name": "datasource", "label": "Data source", "type": "datasource",
            "query": "prometheus", "current": {}, "hide": 0, "refresh": 1, "regex": "",
            "options": []}]
        self.x = self.y = 0
        self.row_h = 0

    def var(self, name, label, query, multi=True):
        self.vars.append({
            "name": name, "label": label, "type": "query", "datasource": DS,
            "definition": query, "query": {"query": query, "refId": name},
            "current": {}, "hide": 0, "refresh": 2, "regex": "", "sort": 1,
            "multi": multi, "includeAll": True, "allValue": ".*", "options": []})

    def row(self, title):
        if self.x:
            self.y += self.row_h
            self.x = self.row_h = 0
        self.panels.append({"type": "row", "title": title, "collapsed": False, "panels": [],
                            "id": len(self.panels) + 1,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}})
        self.y += 1

    def panel(self, title, targets, unit="short", kind="timeseries", w=8, h=8,
              description="", stack=False, minimum=None):
        if self.x + w > 24:
            self.y += self.row_h
            self.x = self.row_h = 0
        defaults = {"unit": unit}
        if minimum is not None:
            defaults["min"] = minimum
        if kind == "timeseries":
            defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                                  "showPoints": "never",
                                  "stacking": {"mode": "normal" if stack else "none",
                                               "group": "A"}}
        p = {"type": kind, "title": title, "description": description,
             "id": len(self.panels) + 1, "datasource": DS,
             "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
             "fieldConfig": {"defaults": defaults, "overrides": []},
             "targets": []}
        if kind == "timeseries":
            p["options"] = {"legend": {"displayMode": "list", "placement": "bottom",
                                       "showLegend": True},
                            "tooltip": {"mode": "multi", "sort": "desc"}}
        elif kind == "stat":
            p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                              "values": False},
                            "colorMode": "value", "graphMode": "area", "textMode": "auto"}
        elif kind == "table":
            p["options"] = {"showHeader": True}
            p["transformations"] = [{"id": "merge", "options": {}}]
        for i, t in enumerate(targets):
            expr, legend = t if isinstance(t, tuple) else (t, "")
            tgt = {"expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i),
                   "datasource": DS}
            if kind in ("table", "stat"):
                tgt["instant"] = kind == "table"
                if kind == "table":
                    tgt["format"] = "table"
            p["targets"].append(tgt)
        self.panels.append(p)
        self.x += w
        self.row_h = max(self.row_h, h)

    def json(self):
        return {
            "uid": self.uid, "title": self.title, "description": self.description,
            "tags": ["tunnel"], "timezone": "browser", "editable": True,
            "schemaVersion": 38, "version": 1, "refresh": "30s", "graphTooltip": 1,
            "time": {"from": "now-6h", "to": "now"},
            "annotations": {"list": []},
            "links": [{"title": "Tunnel dashboards", "type": "dashboards", "tags": ["tunnel"],
                       "asDropdown": True, "includeVars": False, "keepTime": True}],
            "templating": {"list": self.vars},
            "panels": self.panels,
        }


def quantiles(metric, sel, by="", legend_prefix=""):
    by_clause = "%sle" % (by + ", " if by else "")
    out = []
    for q in ("0.5", "0.95", "0.99"):
        legend = "%sP%s" % (legend_prefix, {"0.5": "50", "0.95": "95", "0.99": "99"}[q])
        if by:
            legend = "{{%s}} %s" % (by, legend)
        out.append(("histogram_quantile(%s, sum by (%s) (rate(%s_bucket{%s}[%s])))"
                    % (q, by_clause, metric, sel, RI), legend))
    return out


def overview():
    b = Board("tunnel-overview", "Tunnel / Overview",
              "tunnel-core at a glance: traffic, errors, latency, bytes, load, saturation.")
    b.var("instance", "Core", "label_values(tunnel_agents_connected, instance)")
    s = 'instance=~"$instance"'
    t = s + ',tunnel!="_none"'
    b.row("Traffic")
    b.panel("Requests / s by status class",
            [('sum by (class) (rate(tunnel_requests_total{%s}[%s]))' % (s, RI), "{{class}}")],
            unit="reqps", stack=True,
            description="Every public HTTP request answered, by status class of the answer.")
    b.panel("Error ratio (5xx of requests to tunnels)",
            [('sum(rate(tunnel_requests_total{%s,class="5xx"}[%s])) / '
              'sum(rate(tunnel_requests_total{%s}[%s]))' % (t, RI, t, RI), "5xx ratio")],
            unit="percentunit", minimum=0,
            description="The availability SLI of all tunnels together; per tunnel in Tunnel "
                        "/ Tunnel.")
    b.panel("Latency (request to end of response)",
            quantiles("tunnel_request_duration_seconds", t), unit="s",
            description="From the per-tunnel histogram, all tunnels together.")
    b.panel("Bytes / s",
            [('sum by (direction) (rate(tunnel_transfer_bytes_total{%s}[%s]))' % (s, RI),
              "http {{direction}}"),
             ('sum by (direction) (rate(tunnel_tcp_bytes_total{%s}[%s]))' % (s, RI),
              "tcp {{direction}}"),
             ('sum by (direction) (rate(tunnel_udp_bytes_total{%s}[%s]))' % (s, RI),
              "udp {{direction}}")], unit="Bps",
            description="in = from public clients, out = to them.")
    b.panel("Errors / s by cause",
            [('sum by (cause) (rate(tunnel_request_errors_total{%s}[%s]))' % (s, RI),
              "{{cause}}")], unit="reqps", stack=True,
            description="Requests the app did not answer (docs/observability.md, Error causes).")
    b.panel("Top tunnels by requests / s",
            [('topk(10, sum by (tunnel, account) (rate(tunnel_requests_total{%s}[5m])))' % t,
              "")], unit="reqps", kind="table")
    b.row("Load")
    b.panel("Active streams and connections",
            [('sum(tunnel_streams_active{%s})' % s, "http streams"),
             ('sum(tunnel_public_connections{%s})' % s, "public http connections"),
             ('sum(tunnel_tcp_connections_active{%s})' % s, "tcp connections"),
             ('sum(tunnel_udp_sessions_active{%s})' % s, "udp sessions")])
    b.panel("Agent sessions",
            [('sum(tunnel_agents_connected{%s})' % s, "connected"),
             ('sum(tunnel_agent_handshakes{%s})' % s, "in handshake")])
    b.panel("Agent session churn / s",
            [('sum(rate(tunnel_agent_sessions_total{%s}[%s]))' % (s, RI), "accepted"),
             ('sum(rate(tunnel_agent_auth_failures_total{%s}[%s]))' % (s, RI),
              "refused at AUTH")], unit="ops")
    b.row("Saturation (details in Tunnel / Saturation)")
    b.panel("File descriptors used", [
        ('max by (instance) (process_open_fds{%s} / process_max_fds{%s})' % (s, s),
         "{{instance}}")], unit="percentunit", w=6, minimum=0)
    b.panel("Event loop lag (worst worker)", [
        ('max by (instance) (tunnel_event_loop_lag_seconds{%s})' % s, "{{instance}}")],
        unit="s", w=6)
    b.panel("CPU", [('sum by (instance) (rate(process_cpu_seconds_total{%s}[%s]))' % (s, RI),
                     "{{instance}}")], unit="percentunit", w=6)
    b.panel("Resident memory", [('process_resident_memory_bytes{%s}' % s, "{{instance}}")],
            unit="bytes", w=6)
    b.row("SLOs")
    b.panel("Error budget burn rate, 1h (top 10 tunnels)", [
        ('topk(10, tunnel:error_ratio:rate1h / on (tunnel) group_left () '
         'tunnel:slo_error_budget:availability)', "{{tunnel}}")], w=12,
        description="1 = the budget lasts exactly the SLO period; the fast-burn alert pages "
                    "at 14.4. Needs the recording rules of deploy/prometheus.")
    b.panel("Slow-request budget burn rate, 1h (top 10 tunnels)", [
        ('topk(10, tunnel:latency_slow_ratio:rate1h / on (tunnel) group_left () '
         'tunnel:slo_error_budget:latency)', "{{tunnel}}")], w=12)
    return b


def tunnel():
    b = Board("tunnel-tunnel", "Tunnel / Tunnel",
              "One tunnel (or several): its traffic, SLIs against its objectives, latency split "
              "into time to the agent and time in the app, bytes, errors.")
    b.var("instance", "Core", "label_values(tunnel_agents_connected, instance)")
    b.var("tunnel", "Tunnel",
          'label_values(tunnel_requests_total{instance=~"$instance",tunnel!="_none"}, tunnel)')
    s = 'instance=~"$instance",tunnel=~"$tunnel"'
    b.row("Traffic")
    b.panel("Requests / s by method and class",
            [('sum by (method, class) (rate(tunnel_requests_total{%s}[%s]))' % (s, RI),
              "{{method}} {{class}}")], unit="reqps", stack=True)
    b.panel("Requests in flight", [('sum by (tunnel) (tunnel_requests_active{%s})' % s,
                                    "{{tunnel}}")])
    b.panel("Bytes / s", [
        ('sum by (direction) (rate(tunnel_transfer_bytes_total{%s}[%s]))' % (s, RI),
         "{{direction}}")], unit="Bps")
    b.row("Availability SLO")
    b.panel("Availability (not 5xx)", [
        ('1 - (sum by (tunnel) (rate(tunnel_requests_total{%s,class="5xx"}[%s])) / '
         'sum by (tunnel) (rate(tunnel_requests_total{%s}[%s])))' % (s, RI, s, RI),
         "{{tunnel}}"),
        ('tunnel:slo_objective:availability{tunnel=~"$tunnel"}', "{{tunnel}} objective")],
        unit="percentunit")
    b.panel("Error budget burn rate", [
        ('tunnel:error_ratio:rate%s{tunnel=~"$tunnel"} / on (tunnel) group_left () '
         'tunnel:slo_error_budget:availability' % w, "{{tunnel}} %s" % w)
        for w in ("5m", "1h", "6h")],
        description="Pages at 14.4 (1h and 5m) and at 6 (6h and 30m).")
    b.panel("Errors / s by cause", [
        ('sum by (cause) (rate(tunnel_request_errors_total{%s}[%s]))' % (s, RI), "{{cause}}")],
        unit="reqps", stack=True)
    b.row("Latency SLO")
    b.panel("Latency: request to end of response",
            quantiles("tunnel_request_duration_seconds", s), unit="s")
    b.panel("Time to the agent (routing, filters, stream opened)",
            quantiles("tunnel_request_open_duration_seconds", s), unit="s")
    b.panel("Time in the app (stream opened to response head)",
            quantiles("tunnel_request_app_duration_seconds", s), unit="s")
    b.panel("Slow-request ratio (over the latency threshold)", [
        ('tunnel:latency_slow_ratio:rate%s{tunnel=~"$tunnel"}' % w, "{{tunnel}} %s" % w)
        for w in ("5m", "1h")] + [
        ('tunnel:slo_error_budget:latency{tunnel=~"$tunnel"}', "{{tunnel}} budget")],
        unit="percentunit", w=12)
    b.panel("Latency budget burn rate", [
        ('tunnel:latency_slow_ratio:rate%s{tunnel=~"$tunnel"} / on (tunnel) group_left () '
         'tunnel:slo_error_budget:latency' % w, "{{tunnel}} %s" % w) for w in ("5m", "1h", "6h")],
        w=12)
    return b


def agents():
    b = Board("tunnel-agents", "Tunnel / Agents",
              "tunnel-agent's own metrics (--metrics-addr): the local app's latency and errors, "
              "the session to the core.")
    b.var("agent", "Agent", "label_values(tunnel_agent_sessions_connected, instance)")
    b.var("tunnel", "Tunnel",
          'label_values(tunnel_agent_requests_total{instance=~"$agent"}, tunnel)')
    a = 'instance=~"$agent"'
    s = a + ',tunnel=~"$tunnel"'
    b.row("Local app")
    b.panel("Requests / s by tunnel and class", [
        ('sum by (tunnel, class) (rate(tunnel_agent_requests_total{%s}[%s]))' % (s, RI),
         "{{tunnel}} {{class}}")], unit="reqps", stack=True)
    b.panel("Local app latency", quantiles("tunnel_agent_request_duration_seconds", s),
            unit="s")
    b.panel("Errors / s by cause", [
        ('sum by (tunnel, cause) (rate(tunnel_agent_request_errors_total{%s}[%s]))' % (s, RI),
         "{{tunnel}} {{cause}}")], unit="reqps")
    b.panel("Requests at the app", [
        ('sum by (tunnel) (tunnel_agent_requests_active{%s})' % s, "{{tunnel}}")])
    b.row("Session to the core")
    b.panel("Sessions connected", [('tunnel_agent_sessions_connected{%s}' % a, "{{instance}}")])
    b.panel("Reconnects and failed connects / h", [
        ('increase(tunnel_agent_reconnects_total{%s}[1h])' % a, "{{instance}} reconnects"),
        ('increase(tunnel_agent_connect_failures_total{%s}[1h])' % a,
         "{{instance}} failed connects")])
    b.panel("Session RTT (PING)", [('tunnel_agent_session_rtt_seconds{%s}' % a,
                                    "{{instance}}")], unit="s")
    b.panel("Flow-control and write-queue stalls / s", [
        ('rate(tunnel_mux_credit_stalls_total{%s}[%s])' % (a, RI), "{{instance}} credit"),
        ('rate(tunnel_mux_queue_stalls_total{%s}[%s])' % (a, RI), "{{instance}} queue")],
        unit="ops")
    b.panel("Bytes being written to the core", [('tunnel_mux_writing_bytes{%s}' % a,
                                                 "{{instance}}")], unit="bytes")
    b.row("Process")
    b.panel("Event loop lag", [('tunnel_event_loop_lag_seconds{%s}' % a, "{{instance}}")],
            unit="s", w=6)
    b.panel("CPU", [('rate(process_cpu_seconds_total{%s}[%s])' % (a, RI), "{{instance}}")],
            unit="percentunit", w=6)
    b.panel("Resident memory", [('process_resident_memory_bytes{%s}' % a, "{{instance}}")],
            unit="bytes", w=6)
    b.panel("File descriptors used", [
        ('process_open_fds{%s} / process_max_fds{%s}' % (a, a), "{{instance}}")],
        unit="percentunit", w=6)
    return b


def saturation():
    b = Board("tunnel-saturation", "Tunnel / Saturation",
              "How close tunnel-core is to its limits: descriptors, event loops, CPU, memory, "
              "flow control, agent capacity, quotas, the metrics cap.")
    b.var("instance", "Core", "label_values(tunnel_agents_connected, instance)")
    s = 'instance=~"$instance"'
    b.row("Process")
    b.panel("File descriptors", [
        ('process_open_fds{%s}' % s, "{{instance}} open"),
        ('process_max_fds{%s}' % s, "{{instance}} limit")])
    b.panel("Event loop lag per worker", [
        ('tunnel_event_loop_lag_seconds{%s}' % s, "{{instance}} worker {{worker}}")],
        unit="s", description="How late a 250 ms timer fired; the alert fires over 50 ms.")
    b.panel("CPU", [('rate(process_cpu_seconds_total{%s}[%s])' % (s, RI), "{{instance}}")],
            unit="percentunit")
    b.panel("Memory", [
        ('process_resident_memory_bytes{%s}' % s, "{{instance}} resident"),
        ('process_virtual_memory_bytes{%s}' % s, "{{instance}} virtual")], unit="bytes")
    b.row("Flow control")
    b.panel("Stalls / s", [
        ('sum by (instance) (rate(tunnel_mux_credit_stalls_total{%s}[%s]))' % (s, RI),
         "{{instance}} waiting for credit"),
        ('sum by (instance) (rate(tunnel_mux_queue_stalls_total{%s}[%s]))' % (s, RI),
         "{{instance}} write queue full")], unit="ops")
    b.panel("Bytes queued to agents and window growth", [
        ('tunnel_mux_writing_bytes{%s}' % s, "{{instance}} being written"),
        ('tunnel_stream_window_growth_bytes{%s}' % s, "{{instance}} window growth")],
        unit="bytes")
    b.row("Agents")
    b.panel("Agent streams refused (503 agent_unavailable) / s", [
        ('sum by (tunnel) (rate(tunnel_request_errors_total{%s,cause="agent_unavailable"}[%s]))'
         % (s, RI), "{{tunnel}}")], unit="reqps")
    b.panel("Handshakes in progress and refused / s", [
        ('sum(tunnel_agent_handshakes{%s})' % s, "in handshake"),
        ('sum by (cap) (rate(tunnel_agent_handshakes_refused_total{%s}[%s]))' % (s, RI),
         "refused ({{cap}} cap) / s")])
    b.panel("Agent sessions", [('sum by (instance) (tunnel_agents_connected{%s})' % s,
                                "{{instance}}")])
    b.row("Limits and quotas")
    b.panel("Quota refusals / s", [
        ('sum by (quota) (rate(tunnel_quota_refusals_total{%s}[%s]))' % (s, RI), "{{quota}}")],
        unit="ops")
    b.panel("tcp connections refused / s and udp drops / s", [
        ('sum by (reason) (rate(tunnel_tcp_connections_refused_total{%s}[%s]))' % (s, RI),
         "tcp {{reason}}"),
        ('sum(rate(tunnel_udp_datagrams_dropped_total{%s}[%s]))' % (s, RI), "udp dropped"),
        ('sum by (cap) (rate(tunnel_udp_sessions_evicted_total{%s}[%s]))' % (s, RI),
         "udp evicted ({{cap}})")], unit="ops")
    b.panel("Tunnels past the metrics cap", [
        ('tunnel_metrics_overflow_total{%s}' % s, "{{instance}}")],
        description="Tunnel registrations counted under tunnel=\"_other\" (metrics.max_tunnels).")
    return b


BOARDS = {"tunnel-overview.json": overview, "tunnel-tunnel.json": tunnel,
          "tunnel-agents.json": agents, "tunnel-saturation.json": saturation}


def render(make):
    return json.dumps(make().json(), indent=2, sort_keys=False) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="compare instead of writing")
    a = p.parse_args()
    stale = []
    for name, make in BOARDS.items():
        path, text = OUT / name, render(make)
        if a.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        sys.exit("out of date (run deploy/grafana/generate.py): " + " ".join(stale))


if __name__ == "__main__":
    main()
