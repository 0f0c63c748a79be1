"""OpenTelemetry tracing (issue #18): the core and the agent send spans over OTLP/HTTP JSON to a
receiver written here; the payload's structure, the parent/child links across the core, the
agent and the app's traceparent, sampling (parent-based, errors kept), ids in the log lines."""
import http.server
import json
import re
import threading

import pytest

from harness import client
from harness.raw import core_config

HEX = re.compile(r"^[0-9a-f]+$")
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


class Receiver:
    """An OTLP/HTTP receiver on loopback: keeps every span posted to /v1/traces with the
    service.name of its resource."""

    def __init__(self):
        self.spans = []  # (service, span)
        self.errors = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    assert self.path == "/v1/traces", self.path
                    assert self.headers.get("Content-Type") == "application/json"
                    receiver.take(json.loads(body))
                except Exception as e:  # noqa: BLE001 - reported by the test
                    with receiver.lock:
                        receiver.errors.append("%r in %r" % (e, body[:2000]))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self, doc):
        """Checks the structure of one ExportTraceServiceRequest and keeps its spans."""
        for rs in doc["resourceSpans"]:
            attrs = {a["key"]: a["value"] for a in rs["resource"]["attributes"]}
            service = attrs["service.name"]["stringValue"]
            for ss in rs["scopeSpans"]:
                assert ss["scope"]["name"] == "tunnel"
                for s in ss["spans"]:
                    assert len(s["traceId"]) == 32 and HEX.match(s["traceId"]), s
                    assert len(s["spanId"]) == 16 and HEX.match(s["spanId"]), s
                    if "parentSpanId" in s:
                        assert len(s["parentSpanId"]) == 16 and HEX.match(s["parentSpanId"])
                    assert s["kind"] in (2, 3), s
                    start, end = int(s["startTimeUnixNano"]), int(s["endTimeUnixNano"])
                    assert 1_700_000_000 * 10**9 < start <= end, s
                    assert end - start < 60 * 10**9, s
                    s["attrs"] = {a["key"]: list(a["value"].values())[0]
                                  for a in s["attributes"]}
                    with self.lock:
                        self.spans.append((service, s))

    def of_trace(self, trace_id):
        with self.lock:
            return [(svc, s) for svc, s in self.spans if s["traceId"] == trace_id]

    def wait_spans(self, trace_id, count):
        client.wait_for(lambda: len(self.of_trace(trace_id)) >= count, 10,
                        what="%d spans of trace %s" % (count, trace_id))
        return self.of_trace(trace_id)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()
    assert not r.errors, r.errors


@pytest.fixture
def traced(tunnel, origin, receiver):
    account = "name: default\ntokens: [test-agent-token]\n"
    core = tunnel.core(config_text=core_config(
        [account], "tracing:\n  otlp_endpoint: %s\n  sample_ratio: 1\n" % receiver.url))
    agent = tunnel.agent(core, origin.addr, subdomain="app", name="agent-app",
                         extra_args=["--otlp-endpoint", receiver.url])
    return core, agent


def by_role(spans):
    """{"server": core server span, "tunnel": core client span, "agent": agent span}."""
    roles = {}
    for svc, s in spans:
        if svc == "tunnel-core":
            roles["server" if s["kind"] == 2 else "tunnel"] = s
        else:
            assert svc == "tunnel-agent", svc
            roles["agent"] = s
    return roles


def app_traceparent(response):
    value = json.loads(response.body)["headers"]["traceparent"]
    version, trace_id, span_id, flags = value.split("-")
    assert version == "00" and len(trace_id) == 32 and len(span_id) == 16
    return trace_id, span_id, flags


def test_spans_link_the_caller_the_core_the_agent_and_the_app(traced, receiver):
    core, agent = traced
    r = core.request("app", "GET", "/echo?x=1",
                     headers={"traceparent": "00-%s-%s-01" % (TRACE, PARENT),
                              "tracestate": "vendor=abc"})
    assert r.status == 200
    request_id = r.headers["x-request-id"]
    trace_id, app_parent, flags = app_traceparent(r)
    assert (trace_id, flags) == (TRACE, "01")
    assert json.loads(r.body)["headers"]["tracestate"] == "vendor=abc"

    roles = by_role(receiver.wait_spans(TRACE, 3))
    server, tunnel_span, agent_span = roles["server"], roles["tunnel"], roles["agent"]
    assert server["parentSpanId"] == PARENT
    assert tunnel_span["parentSpanId"] == server["spanId"]
    assert agent_span["parentSpanId"] == tunnel_span["spanId"]
    assert app_parent == agent_span["spanId"]
    assert (server["kind"], tunnel_span["kind"], agent_span["kind"]) == (2, 3, 3)
    assert server["startTimeUnixNano"] <= tunnel_span["startTimeUnixNano"]
    assert server["attrs"]["http.request.method"] == "GET"
    assert server["attrs"]["url.path"] == "/echo"
    assert server["attrs"]["server.address"] == "app.localhost"
    assert server["attrs"]["http.response.status_code"] == "200"
    assert server["attrs"]["tunnel.name"] == "app.localhost"
    assert server["attrs"]["tunnel.request_id"] == request_id
    assert agent_span["attrs"]["tunnel.request_id"] == request_id
    assert "status" not in server or not server["status"]
    # The log lines about the request carry both ids.
    core.wait_output(re.escape("id=%s trace=%s" % (request_id, TRACE)))
    agent.wait_output(re.escape("id=%s trace=%s" % (request_id, TRACE)))


def test_no_or_a_bad_traceparent_starts_a_new_trace(traced, receiver):
    core, _ = traced
    r = core.request("app", "GET", "/echo")
    new_trace, _, flags = app_traceparent(r)
    assert flags == "01"  # sample_ratio 1
    roles = by_role(receiver.wait_spans(new_trace, 3))
    assert "parentSpanId" not in roles["server"]

    bad = "ff-%s-%s-01" % (TRACE, PARENT)  # version ff is invalid
    r = core.request("app", "GET", "/echo", headers={"traceparent": bad, "tracestate": "a=b"})
    trace_id, _, _ = app_traceparent(r)
    assert trace_id != TRACE
    assert "tracestate" not in json.loads(r.body)["headers"]  # it went with the bad parent
    assert "parentSpanId" not in by_role(receiver.wait_spans(trace_id, 3))["server"]


def test_an_unsampled_parent_is_followed_but_errors_are_kept(traced, receiver):
    core, _ = traced
    quiet = "11111111111111111111111111111111"
    failing = "22222222222222222222222222222222"
    r = core.request("app", "GET", "/echo", headers={"traceparent": "00-%s-%s-00" % (quiet, PARENT)})
    assert app_traceparent(r)[2] == "00"
    r = core.request("app", "GET", "/status/503",
                     headers={"traceparent": "00-%s-%s-00" % (failing, PARENT)})
    assert r.status == 503
    roles = by_role(receiver.wait_spans(failing, 3))  # the 5xx is kept by both
    assert roles["server"]["status"]["code"] == 2
    assert roles["agent"]["status"]["code"] == 2
    assert receiver.of_trace(quiet) == []  # exported in the same batches: never
    # The receiver has the spans before the exporter has read its answer and counted them.
    def counted():
        text = core.admin("/metrics").text()
        return text if re.search(r"^tunnel_trace_spans_exported_total [1-9]", text, re.M) else None
    text = client.wait_for(counted, 10, what="the exporter to count the spans it sent")
    assert re.search(r"^tunnel_trace_spans_dropped_total 0$", text, re.M), text
