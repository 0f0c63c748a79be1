"""Admin endpoints (issue #2, test 15): health, readiness, metrics; and they are not
reachable through a tunnel hostname on the public port."""
import json

from harness import client


def test_admin_endpoints_and_isolation(core, app):
    assert core.admin("/healthz").status == 200
    assert core.admin("/readyz").status == 200

    before = client.parse_metrics(core.admin("/metrics").text())
    for _ in range(5):
        assert core.request("app", "GET", "/echo").status == 200
    m = core.admin("/metrics")
    assert m.status == 200
    metrics = client.parse_metrics(m.text())
    for name in ("tunnel_http_requests_total", "tunnel_agents_connected"):
        assert name in metrics, "%s missing from /metrics:\n%s" % (name, m.text()[:3000])
    # A request is counted when the core has finished its exchange, which can be a moment
    # after the client has read the whole response (another worker may serve /metrics).
    want = before.get("tunnel_http_requests_total", 0) + 5
    client.wait_for(lambda: client.parse_metrics(core.admin("/metrics").text())
                    ["tunnel_http_requests_total"] >= want, 5, what="5 more requests counted")
    assert metrics["tunnel_agents_connected"] >= 1

    # on the public port, admin paths under a tunnel hostname go to the app
    for path in ("/metrics", "/healthz", "/readyz"):
        r = core.request("app", "GET", path)
        assert r.status == 200, r.text()
        assert json.loads(r.body)["path"] == path, r.text()[:500]
        assert b"tunnel_http_requests_total" not in r.body
    # and without a tunnel hostname they are not served either
    r = client.request(core.http_port, "127.0.0.1", "GET", "/metrics")
    assert b"tunnel_http_requests_total" not in r.body, r.text()[:500]
