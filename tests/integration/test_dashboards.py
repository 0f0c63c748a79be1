"""deploy/ (issue #18): the Grafana dashboards and the Prometheus rules against the real
binaries. The dashboards are the generator's output and valid Grafana JSON; every query parses
(promtool check rules); every metric and label a dashboard or a rule names is one a running
core or agent exports (or a recording rule records), so renaming a metric breaks this test."""
import re
import shutil
import subprocess
import sys

import pytest

from harness import client, promql
from harness.raw import PortAgent, core_config

PANEL_TYPES = {"row", "timeseries", "stat", "table", "gauge", "bargauge"}
# Names a query may use that no scrape shows: Prometheus' own, and the per-tunnel objective
# overrides an operator adds (deploy/prometheus/rules/tunnel-slo-objectives.rules.yml).
NOT_SCRAPED = {"up", "tunnel:slo_objective:override"}
TARGET_LABELS = {"job", "instance"}  # added by Prometheus at scrape


def promtool():
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    return path


@pytest.mark.parametrize("script", ["grafana/generate.py", "prometheus/generate.py"])
def test_the_files_are_what_their_generator_writes(script, tmp_path):
    path = promql.DEPLOY / script
    if script.startswith("grafana"):
        r = subprocess.run([sys.executable, path, "--check"], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0, r.stderr
    else:
        out = tmp_path / "slo.yml"
        subprocess.run([sys.executable, path, "--output", out], check=True, timeout=30)
        committed = promql.DEPLOY / "prometheus" / "rules" / "tunnel-slo.rules.yml"
        assert out.read_text() == committed.read_text(), "run deploy/prometheus/generate.py"


def test_the_dashboards_are_grafana_dashboards():
    boards = promql.load_dashboards()
    assert {p.name for p, _ in boards} == {"tunnel-overview.json", "tunnel-tunnel.json",
                                           "tunnel-agents.json", "tunnel-saturation.json"}
    uids = set()
    for path, b in boards:
        where = path.name
        for key, kind in (("uid", str), ("title", str), ("schemaVersion", int),
                          ("panels", list), ("templating", dict), ("time", dict)):
            assert isinstance(b.get(key), kind), "%s: %s" % (where, key)
        assert b["uid"] not in uids and len(b["uid"]) <= 40, where
        uids.add(b["uid"])
        variables = {v["name"] for v in b["templating"]["list"]}
        assert "datasource" in variables, where
        ids, cells = set(), set()
        for p in b["panels"]:
            assert p["type"] in PANEL_TYPES and p.get("title"), (where, p)
            assert p["id"] not in ids, (where, p["title"])
            ids.add(p["id"])
            g = p["gridPos"]
            assert all(isinstance(g[k], int) for k in "hwxy"), (where, p["title"])
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24, (where, p["title"])
            for x in range(g["x"], g["x"] + g["w"]):  # no two panels overlap
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, (where, p["title"], "overlaps")
                    cells.add((x, y))
            if p["type"] == "row":
                continue
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, \
                (where, p["title"])
            assert p["targets"], (where, p["title"])
            assert len({t["refId"] for t in p["targets"]}) == len(p["targets"])
            for t in p["targets"]:
                used = set(re.findall(r"\$\{?([a-zA-Z_]\w*)", t["expr"]))
                unknown = used - variables - {"__rate_interval", "__interval", "__range"}
                assert not unknown, (where, p["title"], unknown)


def test_every_query_is_valid_promql(tmp_path):
    """promtool parses each dashboard query (as a recording rule) and each rule file."""
    rules = ["groups:", "  - name: dashboards", "    rules:"]
    for _, b in promql.load_dashboards():
        variables = [v["name"] for v in b["templating"]["list"]]
        for i, (where, q) in enumerate(promql.dashboard_queries(b)):
            rules += ["      # %s" % where, "      - record: dashboard_query_%s_%d"
                      % (b["uid"].replace("-", "_"), i),
                      "        expr: '%s'" % promql.substitute(q, variables).replace("'", "''")]
    path = tmp_path / "dashboards.rules.yml"
    path.write_text("\n".join(rules) + "\n")
    r = subprocess.run([promtool(), "check", "rules", path] + promql.RULE_FILES,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def all_queries():
    """(where, PromQL) of every dashboard panel and variable and of every rule."""
    out = []
    for _, b in promql.load_dashboards():
        variables = [v["name"] for v in b["templating"]["list"]]
        out += [(w, promql.substitute(q, variables)) for w, q in promql.dashboard_queries(b)]
    out += [("%s / %s" % (f.name, r.get("record") or r.get("alert")), r["expr"])
            for f, _, r in promql.load_rules()]
    return out


def test_every_metric_a_query_names_is_exported(tunnel, origin):
    """A core with an http, a tcp and a udp tunnel, and two agents serving their own metrics
    (one app up, one down), after some traffic (2xx, 5xx, 404, 502): their scrapes are the
    truth. A family appears in a scrape once something created it, hence the variety."""
    account = "name: default\ntokens: [test-agent-token]\nsubdomains: ['*']\n"
    core = tunnel.core(config_text=core_config([account]))
    up_port, down_port = client.free_port(), client.free_port()
    tunnel.agent(core, origin.addr, subdomain="app", name="agent-up",
                 extra_args=["--metrics-addr", "127.0.0.1:%d" % up_port])
    tunnel.agent(core, "127.0.0.1:%d" % client.free_port(), subdomain="down", wait=False,
                 name="agent-down", extra_args=["--metrics-addr", "127.0.0.1:%d" % down_port])
    for kind in ("tcp", "udp"):
        agent = tunnel.add(PortAgent(core, kind, "127.0.0.1:%d" % client.free_port(),
                                     name="agent-" + kind)).start()
        agent.wait_forwarding(kind)
    for path in ("/echo", "/status/500"):
        assert core.request("app", "GET", path).status in (200, 500)
    assert core.request("nothing-here", "GET", "/").status == 404
    client.wait_for(lambda: core.request("down", "GET", "/").status == 502, 15,
                    what="the tunnel without an app to answer 502")
    families = promql.scrape_families(core.admin("/metrics").text())
    for port in (up_port, down_port):
        promql.scrape_families(client.request(port, "127.0.0.1", "GET", "/metrics").text(),
                               families)
    recorded = promql.recorded_names()

    problems = []
    for where, q in all_queries():
        for name, matchers in promql.selectors(q):
            if name is None:
                problems.append("%s: a selector without a metric name" % where)
            elif name in recorded or name in NOT_SCRAPED:
                continue
            elif name not in families:
                problems.append("%s: %s is not exported by the core or the agent"
                                % (where, name))
            else:
                labels = families[name]
                for label, op, value in matchers:
                    if label in TARGET_LABELS or not labels:
                        continue  # a family declared but without samples yet: names only
                    if label not in labels:
                        problems.append("%s: %s has no label %s (it has %s)"
                                        % (where, name, label, sorted(labels)))
                    elif op == "=" and label == "le" and value not in labels[label]:
                        problems.append("%s: %s has no bucket le=%r" % (where, name, value))
    assert not problems, "\n".join(problems)


def test_a_renamed_metric_is_caught():
    """The checker itself: a name that no binary exports and a label that does not exist."""
    sel = promql.selectors('sum by (tunnel) (rate(tunnel_requests_totl{klass="5xx"}[5m])) '
                           '/ on (tunnel) group_left () tunnel:x:y offset 5m')
    assert sel == [("tunnel_requests_totl", [("klass", "=", "5xx")]), ("tunnel:x:y", [])]


def test_every_alert_has_a_runbook():
    """Each alert's runbook_url names a file of docs/runbooks, which the index lists; no
    runbook is left without its alert."""
    runbooks = promql.REPO / "docs" / "runbooks"
    index = (runbooks / "README.md").read_text()
    linked = set()
    for _, _, r in promql.load_rules():
        if "alert" not in r:
            continue
        url = r["annotations"]["runbook_url"]
        assert url.startswith("docs/runbooks/"), (r["alert"], url)
        path = promql.REPO / url
        assert path.is_file(), (r["alert"], url)
        assert "`%s`" % r["alert"] in index, r["alert"]
        assert r["labels"]["severity"] in ("page", "warning", "info"), r["alert"]
        assert r["annotations"].get("summary") and r["annotations"].get("description")
        linked.add(path.name)
    pages = {p.name for p in runbooks.glob("*.md")} - {"README.md", "incident-response.md"}
    assert pages == linked
