"""deploy/prometheus against a real Prometheus (issue #18): Debian's prometheus on loopback, a
temporary storage dir, 1 s scrapes of a core and an agent, and the rule files of
deploy/prometheus with their windows shortened (5m -> 5s, 30m -> 10s, 1h -> 15s, 6h -> 20s; every
`for` 1m). Under a load where every second request gets a 500 from the app, the recorded error
ratio of the tunnel is 0.5 and the fast burn-rate alert goes pending. About 10 s."""
import json
import re
import shutil
import threading
import time
import urllib.parse
import urllib.request

import pytest

from harness import client, procs, promql

# The rule files' windows, shortened for the test: short ones still span several 1 s scrapes.
WINDOWS = {"5m": "5s", "15m": "10s", "30m": "10s", "1h": "15s", "6h": "20s"}


def short_rules(text):
    text = re.sub(r"\[(\d+[mh])\]", lambda m: "[%s]" % WINDOWS[m.group(1)], text)
    text = re.sub(r"^(\s+)for: \S+$", r"\1for: 1m", text, flags=re.M)
    return re.sub(r"^(\s+)interval: \S+$", r"\1interval: 1s", text, flags=re.M)


def test_short_rules_rewrites_every_window():
    for path in promql.RULE_FILES:
        text = short_rules(path.read_text())
        assert not re.search(r"\[\d+[mh]\]|for: (?!1m)|interval: (?!1s)", text), path.name


class Prometheus(procs.Proc):
    def __init__(self, workdir, core_admin, agent_metrics):
        self.port = client.free_port()
        rules = []
        for path in promql.RULE_FILES:
            short = workdir / ("short-" + path.name)
            short.write_text(short_rules(path.read_text()))
            rules.append(str(short))
        config = workdir / "prometheus.yml"
        config.write_text(json.dumps({  # YAML is a superset of JSON
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s",
                       "scrape_timeout": "1s"},
            "rule_files": rules,
            "scrape_configs": [
                {"job_name": "tunnel-core", "static_configs": [{"targets": [core_admin]}]},
                {"job_name": "tunnel-agent", "static_configs": [{"targets": [agent_metrics]}]},
            ]}))
        super().__init__("prometheus", [
            shutil.which("prometheus"), "--config.file", config,
            "--storage.tsdb.path", workdir / "prometheus-data",
            "--storage.tsdb.retention.time", "1h",
            "--web.listen-address", "127.0.0.1:%d" % self.port,
            "--log.level", "warn"], workdir / "prometheus.log", cwd=workdir)

    def api(self, path, **params):
        url = "http://127.0.0.1:%d/api/v1/%s" % (self.port, path)
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr):
        """{frozenset of label items: value} of an instant query."""
        return {frozenset(s["metric"].items()): float(s["value"][1])
                for s in self.api("query", query=expr)["result"]}

    def wait_ready(self, timeout=20.0):
        def ready():
            if not self.alive():
                raise AssertionError("prometheus exited:\n" + self.tail())
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % self.port,
                                            timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False
        client.wait_for(ready, timeout, interval=0.2, what="prometheus to be ready")


@pytest.fixture
def prometheus_bin():
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed (Debian package prometheus)")


def test_the_rules_see_injected_5xx_and_the_fast_burn_goes_pending(prometheus_bin, tunnel,
                                                                    core, origin):
    metrics_port = client.free_port()
    tunnel.agent(core, origin.addr, subdomain="app", name="agent-m",
                 extra_args=["--metrics-addr", "127.0.0.1:%d" % metrics_port])
    prom = tunnel.add(Prometheus(tunnel.workdir, "127.0.0.1:%d" % core.admin_port,
                                 "127.0.0.1:%d" % metrics_port)).start()
    prom.wait_ready()

    # The load: every second request answered 500 by the app, about 50 requests a second.
    stop = threading.Event()
    counts = {200: 0, 500: 0}

    def load():
        while not stop.is_set():
            for path in ("/echo", "/status/500"):
                counts[core.request("app", "GET", path, timeout=10).status] += 1
            stop.wait(0.04)
    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        tunnel_labels = {"tunnel": "app.localhost", "account": "default"}

        def fast_burn():
            for a in prom.api("alerts")["alerts"]:
                if (a["labels"].get("alertname") == "TunnelErrorBudgetBurnFast"
                        and a["labels"].get("tunnel") == "app.localhost"):
                    return a
            return None
        alert = client.wait_for(fast_burn, 25, interval=0.5,
                                what="TunnelErrorBudgetBurnFast for app.localhost")
        ratio = prom.query('tunnel:error_ratio:rate5m{tunnel="app.localhost"}')
    finally:
        stop.set()
        thread.join(15)

    assert alert["state"] == "pending", alert  # "for" is 1m here: pending, not firing yet
    assert alert["labels"]["severity"] == "page" and alert["labels"]["account"] == "default"
    assert counts[500] > 0 and abs(counts[200] - counts[500]) <= 1, counts
    (labels, value), = ratio.items()
    assert dict(labels) == {"__name__": "tunnel:error_ratio:rate5m", **tunnel_labels}
    assert abs(value - 0.5) < 0.05, value
    # The budget the alert compares with: the default objective, 99.9%.
    budget = prom.query('tunnel:slo_error_budget:availability{tunnel="app.localhost"}')
    assert [round(v, 6) for v in budget.values()] == [0.001]
    # Both binaries were scraped, the agent's own series included.
    up = prom.query("up")
    assert sorted((dict(k)["job"], v) for k, v in up.items()) == [("tunnel-agent", 1.0),
                                                                  ("tunnel-core", 1.0)]
    assert prom.query('tunnel_agent_requests_total{class="5xx"}')
