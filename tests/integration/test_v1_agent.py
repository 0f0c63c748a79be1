"""An agent speaking the original Go-Tunnel v1 protocol is served (issue #2, test 11)."""
import json

import pytest

from harness import client, v1client


@pytest.fixture
def v1_agent(core):
    agents = []

    def make(name, app, subdomains=None):
        a = v1client.V1Agent(core.agent_addr, core.ca, core.tokens[0], subdomains or [name],
                             app, agent_id="v1-%s" % name, heartbeat=0.5)
        reply = a.connect()
        assert reply.get("success") is True, reply
        agents.append(a)
        return a.start()

    yield make
    for a in agents:
        a.close()


def test_v1_agent_is_served(core, v1_agent):
    agent = v1_agent("v1app", v1client.echo_app("v1"), subdomains=["v1app", "v1api"])
    r = core.wait_routed("v1app", "/hello?q=1", timeout=15)
    assert r.status == 200, r.text()
    j = json.loads(r.body)
    assert (j["origin"], j["method"], j["path"]) == ("v1", "GET", "/hello?q=1")
    assert j["headers"]["host"].split(":")[0] == "v1app.localhost"

    cp = client.curl("-H", "Content-Type: text/plain", "--data-binary", "payload from curl",
                     core.url("v1api", "/post"))
    assert cp.returncode == 0, cp.stderr
    j = json.loads(cp.stdout)
    assert (j["method"], j["path"], j["body"]) == ("POST", "/post", "payload from curl")

    # the session stays up: heartbeats are answered with HEARTBEAT|ACK
    client.wait_for(lambda: agent.heartbeat_acks >= 2, 10, what="two HEARTBEAT|ACK")
    assert agent.error is None, agent.error
    assert core.request("v1app", "GET", "/again").status == 200


def test_v1_agent_local_error_is_502(core, v1_agent):
    agent = v1_agent("v1fail", v1client.failing_app(
        "dial tcp 127.0.0.1:1: connect: connection refused"))

    def answered():
        cp = client.curl("-o", "/dev/null", "-w", "%{http_code}", core.url("v1fail", "/x"))
        return cp.stdout not in (b"404", b"503", b"000") and cp

    cp = client.wait_for(answered, 15, what="v1fail to be routed")
    assert cp.stdout == b"502", cp.stdout
    assert agent.error is None, agent.error
