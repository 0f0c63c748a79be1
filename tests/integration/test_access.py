"""Who may reach a tunnel (issue 23): `--basic-auth`, `--cidr-allow`, `--cidr-deny` on the
agent's command line in ngrok's spelling, `access:` for the whole core and per account, and the
client address behind a trusted proxy. Each control is tried with a real client on both the
allowed and the refused path."""
import json
import socket
import subprocess

from harness import client
from harness.procs import Agent, clean_env
from harness.raw import PortAgent, core_config, sample

PASSWORD = "open-sesame-42"


def start_agent(tunnel, core, name, *args):
    """An http agent for `name` with extra flags; returns once the core routes it (any answer
    but 404/503: a guarded tunnel answers 401 or 403)."""
    origin = tunnel.origin("A")
    agent = tunnel.add(Agent(core, origin.addr, subdomain=name, name="agent-" + name,
                             extra_args=list(args))).start()

    def routed():
        if not agent.alive():
            raise AssertionError("agent exited:\n" + agent.tail())
        return core.request(name, "GET", "/echo", timeout=5).status not in (404, 503)
    client.wait_for(routed, 20, what="%s to be routed" % name)
    return agent


def echoed_headers(response):
    return {k.lower(): v for k, v in json.loads(response.body)["headers"].items()}


def test_basic_auth_asks_checks_and_keeps_the_credential_from_the_app(tunnel):
    core = tunnel.core()
    start_agent(tunnel, core, "guarded", "--basic-auth", "ann:" + PASSWORD)

    r = core.request("guarded", "GET", "/echo")
    assert r.status == 401, r.status
    assert r.headers["www-authenticate"].startswith('Basic realm="tunnel"')
    assert "needs a user and password" in r.text()

    # curl, a real client, with a wrong and then the right password.
    url = core.url("guarded", "/echo")
    wrong = client.curl("-o", "/dev/null", "-w", "%{http_code}", "-u", "ann:nope-nope-nope", url)
    assert wrong.stdout == b"401", wrong
    right = client.curl("-u", "ann:" + PASSWORD, url, check=True)
    seen = {k.lower(): v for k, v in json.loads(right.stdout)["headers"].items()}
    assert "authorization" not in seen, "the app saw the tunnel's credential"

    # The password never travels or rests in clear: the agent's log and the core's hold none.
    assert PASSWORD not in core.output()
    # A password the core would refuse is named before anything is sent.
    bad = subprocess.run([str(a) for a in Agent(core, "127.0.0.1:1", subdomain="x",
                                                extra_args=["--basic-auth", "ann:short"]).argv],
                         capture_output=True, text=True, timeout=20, env=clean_env())
    assert bad.returncode != 0
    assert "--basic-auth: user ann: the password must be 8 to 128 characters" in bad.stderr, bad.stderr


def test_cidr_allow_and_deny_on_an_http_tunnel(tunnel):
    core = tunnel.core()
    start_agent(tunnel, core, "denied", "--cidr-deny", "127.0.0.0/8")
    start_agent(tunnel, core, "elsewhere", "--cidr-allow", "10.0.0.0/8", "--cidr-allow", "::1")
    start_agent(tunnel, core, "allowed", "--cidr-allow", "127.0.0.1/32")

    r = core.request("denied", "GET", "/echo")
    assert r.status == 403, r.status
    assert "client address 127.0.0.1 is denied by the tunnel (cidr_deny 127.0.0.0/8)" in r.text()
    assert r.headers.get("x-request-id")
    r = core.request("elsewhere", "GET", "/echo")
    assert r.status == 403 and "not in the cidr_allow list of the tunnel" in r.text()
    assert core.request("allowed", "GET", "/echo").status == 200

    bad = subprocess.run([str(a) for a in Agent(core, "127.0.0.1:1", subdomain="x",
                                                extra_args=["--cidr-allow", "10.0.0.0/33"]).argv],
                         capture_output=True, text=True, timeout=20, env=clean_env())
    assert bad.returncode != 0
    assert '--cidr-allow: "10.0.0.0/33": prefix length above 32' in bad.stderr, bad.stderr


def test_the_client_behind_a_trusted_proxy_is_checked(tunnel):
    core = tunnel.core(config_text=core_config(["name: default\ntokens: [test-agent-token]"],
                                               "trusted_proxies: [127.0.0.1]\n"))
    start_agent(tunnel, core, "office", "--cidr-allow", "198.51.100.0/24")
    ok = core.request("office", "GET", "/echo", headers={"X-Forwarded-For": "198.51.100.7"})
    assert ok.status == 200, ok.status
    r = core.request("office", "GET", "/echo",
                     headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.1"})
    assert r.status == 403 and "client address 203.0.113.1" in r.text(), r.text()


def test_account_and_core_rules_refuse_tcp_connections(tunnel):
    echo = socket.socket()
    echo.bind(("127.0.0.1", 0))
    echo.listen(8)
    accounts = ["name: default\ntokens: [test-agent-token]\naccess:\n  cidr_deny: [127.0.0.1]",
                "name: other\ntokens: [other-agent-token]"]
    core = tunnel.core(config_text=core_config(accounts, "access:\n  cidr_deny: [192.0.2.0/24]\n"))
    agent = tunnel.add(PortAgent(core, "tcp", "127.0.0.1:%d" % echo.getsockname()[1],
                                 name="tcp-agent")).start()
    _, port = agent.wait_forwarding("tcp")
    refused_before = sample(core, 'tunnel_tcp_connections_refused_total{reason="filter"}')
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.settimeout(10)
        s.sendall(b"hello")
        try:
            got = s.recv(10)
        except ConnectionResetError:
            got = b""
    assert got == b"", "a denied client reached the app"
    echo.settimeout(0.5)
    try:
        conn, _ = echo.accept()
        conn.close()
        raise AssertionError("the app got a connection from a denied client")
    except socket.timeout:
        pass
    client.wait_for(lambda: sample(core, 'tunnel_tcp_connections_refused_total{reason="filter"}')
                    > refused_before, 5, what="the refusal to be counted")
    echo.close()

    # The other account's tunnels are not under the first account's rule.
    other = tunnel.origin("B")
    tunnel.add(Agent(core, other.addr, subdomain="b", name="agent-b",
                     token="other-agent-token")).start()
    assert core.wait_routed("b").status == 200


def test_bad_rules_in_the_core_config_are_named_with_their_line(bin_dir, tmp_path):
    f = tmp_path / "core.yaml"
    f.write_text("domain: localhost\n"
                 "access:\n"
                 "  cidr_allow: [10.0.0.0/8]\n"
                 "  cidr_deny:\n"
                 "    - 192.0.2.0/24\n"
                 "    - 192.0.2.300\n")
    cp = subprocess.run([bin_dir / "tunnel-core", "check-config", f], capture_output=True,
                        text=True, timeout=30, env=clean_env())
    assert cp.returncode != 0
    assert ':6:7: access.cidr_deny[1]: "192.0.2.300": not an IP address or CIDR range' in (
        cp.stdout + cp.stderr), cp.stdout + cp.stderr
