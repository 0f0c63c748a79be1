"""Metrics per tunnel (issue #18): values after known traffic, bytes counted while a transfer
runs, the cap on tunnels with its "_other" series, promtool on the output, /readyz as JSON."""
import json
import re
import shutil
import signal
import socket
import subprocess
import threading

import pytest

from harness import client
from harness.raw import core_config

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text):
    """Prometheus text -> list of (name, {label: value}, value)."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        out.append((m.group(1), dict(LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def value(text, name, **labels):
    """The sum of the samples of `name` whose labels include `labels`."""
    return sum(v for n, ls, v in samples(text)
               if n == name and all(ls.get(k) == want for k, want in labels.items()))


def metrics(core):
    return core.admin("/metrics").text()


def wait_value(core, name, want, **labels):
    client.wait_for(lambda: value(metrics(core), name, **labels) >= want, 5,
                    what="%s%s >= %s" % (name, labels, want))
    return metrics(core)


def settled(core, host):
    """/metrics once no request of the tunnel is in flight (wait_routed's last probe may
    finish a moment after its client read the response); the tunnel's counts are final."""
    client.wait_for(lambda: value(metrics(core), "tunnel_requests_active", tunnel=host) == 0,
                    5, what="no request of %s in flight" % host)
    return metrics(core)


def test_known_traffic_lands_in_the_tunnels_series(core, app):
    host = "app.localhost"
    hists = ("tunnel_request_duration_seconds", "tunnel_request_open_duration_seconds",
             "tunnel_request_app_duration_seconds")
    # wait_routed's probes went through the tunnel already: count from here.
    text = settled(core, host)
    get_before = value(text, "tunnel_requests_total", tunnel=host, method="GET",
                       **{"class": "2xx"})
    counts_before = {h: value(text, h + "_count", tunnel=host) for h in hists}
    none_before = value(text, "tunnel_requests_total", tunnel="_none", method="GET",
                        **{"class": "4xx"})
    no_tunnel_before = value(text, "tunnel_request_errors_total", tunnel="_none",
                             cause="no_tunnel")
    for _ in range(100):
        assert core.request("app", "GET", "/echo").status == 200
    assert core.request("app", "POST", "/status/500", body=b"x").status == 500
    assert core.request("nothing-here", "GET", "/").status == 404

    text = wait_value(core, "tunnel_requests_total", get_before + 101, tunnel=host)
    assert value(text, "tunnel_requests_total", tunnel=host, account="default", method="GET",
                 **{"class": "2xx"}) == get_before + 100, text
    assert value(text, "tunnel_requests_total", tunnel=host, method="POST",
                 **{"class": "5xx"}) == 1
    for h in hists:
        want = counts_before[h] + 101
        assert value(text, h + "_count", tunnel=host) == want, h
        assert value(text, h + "_bucket", tunnel=host, le="+Inf") == want, h
        assert value(text, h + "_bucket", tunnel=host, le="60") == want, h
    # The 500 came from the app: a status, not an error of the proxy.
    assert value(text, "tunnel_request_errors_total", tunnel=host) == 0
    assert value(text, "tunnel_transfer_bytes_total", tunnel=host, direction="out") > 0
    assert value(text, "tunnel_requests_active", tunnel=host) == 0
    # The 404 reached no tunnel.
    assert value(text, "tunnel_requests_total", tunnel="_none", method="GET",
                 **{"class": "4xx"}) == none_before + 1
    assert value(text, "tunnel_request_errors_total", tunnel="_none",
                 cause="no_tunnel") == no_tunnel_before + 1
    # Never a path, a client address or a request id in a label.
    assert "/echo" not in text and "127.0.0.1" not in text


def test_an_unreachable_app_counts_as_app_refused(tunnel, core):
    port = client.free_port()  # nothing listens there
    tunnel.agent(core, "127.0.0.1:%d" % port, subdomain="down", wait=False)
    client.wait_for(lambda: core.request("down", "GET", "/").status == 502, 15,
                    what="the tunnel to answer 502")
    text = wait_value(core, "tunnel_request_errors_total", 1, tunnel="down.localhost",
                      cause="app_refused")
    assert value(text, "tunnel_requests_total", tunnel="down.localhost",
                 **{"class": "5xx"}) >= 1


def _read_until(sock, marker, limit=1 << 20):
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before %r: %r" % (marker, data[-200:])
        data += chunk
        assert len(data) < limit
    return data


def test_a_transfer_in_progress_shows_its_bytes(core, app):
    host = "app.localhost"
    text = settled(core, host)
    before_out = value(text, "tunnel_transfer_bytes_total", tunnel=host, direction="out")
    done_before = value(text, "tunnel_request_duration_seconds_count", tunnel=host)
    # Download: the first of two chunks, the second 1.5 s later.
    with socket.create_connection(("127.0.0.1", core.http_port), timeout=10) as s:
        s.sendall(b"GET /slow-stream?chunks=2&interval=1.5 HTTP/1.1\r\nHost: " + host.encode() +
                  b"\r\n\r\n")
        got = _read_until(s, b"\r\n\r\n")  # the head, perhaps with the first chunk
        text = wait_value(core, "tunnel_transfer_bytes_total", before_out + len(got),
                          tunnel=host, direction="out")
        assert value(text, "tunnel_requests_active", tunnel=host) == 1
        # Not finished: not in the histogram yet.
        assert value(text, "tunnel_request_duration_seconds_count", tunnel=host) == done_before

    # Upload: half of a body sent, the rest never.
    before_in = value(metrics(core), "tunnel_transfer_bytes_total", tunnel=host,
                      direction="in")
    with socket.create_connection(("127.0.0.1", core.http_port), timeout=10) as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: " + host.encode() +
                  b"\r\nContent-Length: 200000\r\n\r\n" + b"u" * 100000)
        text = wait_value(core, "tunnel_transfer_bytes_total", before_in + 100000,
                          tunnel=host, direction="in")
        assert value(text, "tunnel_requests_active", tunnel=host) >= 1


def test_tunnels_over_the_cap_share_the_other_series(tunnel, origin):
    account = "name: default\ntokens: [test-agent-token]\nsubdomains: ['*']\n"
    core = tunnel.core(config_text=core_config([account], "metrics:\n  max_tunnels: 1\n"))
    tunnel.agent(core, origin.addr, subdomain="first", name="agent-first")
    tunnel.agent(core, origin.addr, subdomain="second", name="agent-second")
    settled(core, "first.localhost")
    text = settled(core, "_other")  # wait_routed's probes went through already
    first = value(text, "tunnel_requests_total", tunnel="first.localhost")
    other = value(text, "tunnel_requests_total", tunnel="_other", account="_other")
    assert first >= 1 and other >= 1
    for name in ("first", "second", "second"):
        assert core.request(name, "GET", "/echo").status == 200
    text = wait_value(core, "tunnel_requests_total", other + 2, tunnel="_other")
    assert value(text, "tunnel_requests_total", tunnel="first.localhost") == first + 1
    assert value(text, "tunnel_requests_total", tunnel="_other", account="_other") == other + 2
    assert 'tunnel="second.localhost"' not in text
    assert value(text, "tunnel_metrics_overflow_total") == 1


def test_promtool_accepts_the_metrics(core, app):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus; "
                    "scripts/install-deps.sh installs it)")
    assert core.request("app", "GET", "/echo").status == 200
    assert core.request("app", "GET", "/status/503").status == 503
    assert core.request("nothing-here", "GET", "/").status == 404
    text = wait_value(core, "tunnel_requests_total", 2, tunnel="app.localhost")
    r = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True,
                       timeout=30)
    # promtool's lint warns about conventions too; any line of output is a finding.
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
        (r.stdout + r.stderr).decode()


def test_readyz_answers_json_and_turns_not_ready_when_draining(core, app):
    r = core.admin("/readyz")
    assert r.status == 200
    assert r.headers.get("content-type", r.headers.get("Content-Type")) == "application/json"
    body = json.loads(r.body)
    assert body["status"] == 200 and body["ready"] is True and body["draining"] is False
    assert body["sessions"] == 1 and body["workers"] >= 1

    # A request in flight keeps the draining core up while /readyz is asked.
    result = {}
    t = threading.Thread(target=lambda: result.update(
        r=core.request("app", "GET", "/sleep?s=2")))
    t.start()
    client.wait_for(lambda: value(metrics(core), "tunnel_requests_active") >= 1, 5,
                    what="the slow request to be relayed")
    core.signal(signal.SIGTERM)
    client.wait_for(lambda: core.admin("/readyz").status == 503, 5, what="/readyz 503")
    body = json.loads(core.admin("/readyz").body)
    assert body["status"] == 503 and body["ready"] is False and body["draining"] is True
    t.join(10)
    assert result["r"].status == 200


def test_the_agent_serves_its_own_metrics(tunnel, core, origin):
    port = client.free_port()
    agent = tunnel.agent(core, origin.addr, subdomain="app", name="agent-m",
                         extra_args=["--metrics-addr", "127.0.0.1:%d" % port])
    agent.wait_output(re.escape("metrics on http://127.0.0.1:%d/metrics" % port))
    for _ in range(20):
        assert core.request("app", "GET", "/echo").status == 200
    assert core.request("app", "GET", "/status/500").status == 500

    def text():
        return client.request(port, "127.0.0.1", "GET", "/metrics").text()
    client.wait_for(lambda: value(text(), "tunnel_agent_requests_total",
                                  tunnel="app.localhost") >= 21, 5, what="21 requests counted")
    t = text()
    assert value(t, "tunnel_agent_requests_total", tunnel="app.localhost",
                 **{"class": "2xx"}) >= 20  # wait_routed's probes count too
    assert value(t, "tunnel_agent_requests_total", tunnel="app.localhost",
                 **{"class": "5xx"}) == 1
    assert value(t, "tunnel_agent_request_duration_seconds_count", tunnel="app.localhost") >= 21
    assert value(t, "tunnel_agent_sessions_total") == 1
    assert value(t, "tunnel_agent_reconnects_total") == 0
    assert value(t, "tunnel_agent_sessions_connected") == 1
    assert "tunnel_agent_session_rtt_seconds" in t
    assert value(t, "process_resident_memory_bytes") > 0

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    r = subprocess.run([promtool, "check", "metrics"], input=t.encode(), capture_output=True,
                       timeout=30)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
        (r.stdout + r.stderr).decode()
