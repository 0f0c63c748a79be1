"""Authentication and tenancy: a wrong token, and an account trying to take another
account's hostname (issue #2, tests 9-10)."""
import json

ACCOUNTS = """\
domain: localhost
listen: {{agent: "{agent}", http: "{http}", https: "{https}", admin: "{admin}"}}
accounts:
  - {{name: alice, tokens: ["alice-token"], subdomains: ["*"]}}
  - {{name: bob, tokens: ["bob-token"], subdomains: ["bob-*"]}}
"""


def _refused(agent, timeout=20):
    """Waits for a refused agent to exit; asserts it exited non-zero and returns its output."""
    code = agent.wait_exit(timeout)
    out = agent.output()
    assert code != 0, "%s exited 0 although refused:\n%s" % (agent.name, out)
    return out


def test_wrong_token(tunnel, core, app, origin):
    bad = tunnel.agent(core, origin.addr, subdomain="intruder", name="agent-bad",
                       token="not-the-token", wait=False)
    out = _refused(bad)
    assert "authentication failed" in out.lower(), out
    assert core.alive()
    r = core.request("app")
    assert r.status == 200 and json.loads(r.body)["origin"] == "A"
    assert core.request("intruder").status == 404


def test_subdomain_hijack(tunnel, origin):
    core = tunnel.core(config_text=ACCOUNTS, tokens=())
    b = tunnel.origin("B")
    tunnel.agent(core, origin.addr, subdomain="shared", name="agent-alice", token="alice-token")
    assert json.loads(core.request("shared").body)["origin"] == "A"

    thief = tunnel.agent(core, b.addr, subdomain="shared", name="agent-bob-shared",
                         token="bob-token", wait=False)
    out = _refused(thief)
    assert "shared" in out, "the refusal does not name the subdomain:\n" + out

    outside = tunnel.agent(core, b.addr, subdomain="alice-app", name="agent-bob-outside",
                           token="bob-token", wait=False)
    out = _refused(outside)
    assert "alice-app" in out, "the refusal does not name the subdomain:\n" + out

    # alice keeps her name; bob may use his own namespace
    for _ in range(10):
        r = core.request("shared")
        assert r.status == 200 and json.loads(r.body)["origin"] == "A", r.text()
    assert core.request("alice-app").status == 404
    tunnel.agent(core, b.addr, subdomain="bob-app", name="agent-bob-ok", token="bob-token")
    assert json.loads(core.request("bob-app").body)["origin"] == "B"
