"""Names, ports and tenant limits (issue 25 "names that cannot be taken over", "squatting
through refused AUTHs"; issue 16 sections 4 and 5): who owns a name survives a core restart,
a refused AUTH reserves nothing, an account's explicit names win over another's "*", a tcp
port stays with its agent, a v1 agent's default name comes from its JWT, limits are said."""
import json
import os
import re
import socket
import sqlite3
import stat
import time

import jwt

from harness import client, v1client
from harness.raw import PortAgent, Server, core_config, sample

JWT_SECRET = "an-hs256-secret-of-at-least-32-bytes!!"


def accounts_core(tunnel, accounts=None, extra="", name="core"):
    accounts = accounts or ["name: bob\ntokens: [bob-secret-token]",
                            "name: mallory\ntokens: [mallory-secret-token]"]
    return tunnel.core(name=name, config_text=core_config(accounts, extra))


def v1_auth(core, token, subdomains, agent_id="mallory"):
    """One raw v1 AUTH. Returns (reply, agent) when accepted (the agent serves an echo app
    until the test ends), (refusal text, None) when refused."""
    a = v1client.V1Agent(core.agent_addr, core.ca, token, subdomains,
                         v1client.echo_app(agent_id), agent_id=agent_id, heartbeat=0.5)
    try:
        return a.connect(), a.start()
    except ConnectionError as e:
        try:
            a.sock.close()
        except OSError:
            pass
        return str(e), None


# Before: ownership lived in memory only; after a restart an account allowed "*" took bob's
# name with its first AUTH.
def test_a_name_stays_with_its_account_across_a_core_restart(tunnel, origin):
    core = accounts_core(tunnel)
    bob = tunnel.agent(core, origin.addr, subdomain="bob", name="bob", token="bob-secret-token")
    core.stop()
    bob.stop()
    # Kept in the store (the API keeps it open), saved on the control thread.
    db = core.data_dir / "store.db"
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    with sqlite3.connect(db) as c:
        assert ("bob.localhost", "bob") in c.execute(
            "SELECT key, account FROM registry_ownership").fetchall()
    assert not (core.data_dir / "ownership").exists()

    core.start()
    assert "names and ports of the previous run are held" in core.output()
    reply, squatter = v1_auth(core, "mallory-secret-token", ["bob"])
    assert squatter is None, reply
    assert "bob.localhost is reserved by another account" in reply
    tunnel.agent(core, origin.addr, subdomain="bob", name="bob-again", token="bob-secret-token")


# The `ownership` file of a core before the store was kept open moves into the store once.
def test_an_ownership_file_of_an_earlier_run_moves_into_the_store(tunnel):
    from harness.procs import Core
    accounts = ["name: bob\ntokens: [bob-secret-token]",
                "name: mallory\ntokens: [mallory-secret-token]"]
    core = tunnel.add(Core(tunnel.workdir, name="core", config_text=core_config(accounts, "")))
    core.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    old = core.data_dir / "ownership"
    old.write_text("# tunnel-core ownership v1\n# name\taccount\texplicit\toffline since\tholder\n"
                   "bob.localhost\tbob\t0\t%d\t\n" % int(time.time()))
    old.chmod(0o600)
    core.start()
    assert "names and ports of the previous run are held" in core.output()
    assert not old.exists() and (core.data_dir / "ownership.imported").exists()
    for restart in (False, True):
        if restart:
            core.stop()
            core.start()
        reply, squatter = v1_auth(core, "mallory-secret-token", ["bob"])
        assert squatter is None, reply
        assert "bob.localhost is reserved by another account" in reply


# Before: the refused AUTH's other names went into the 10-minute hold for the attacker's account.
def test_a_refused_auth_holds_nothing(tunnel, origin):
    core = accounts_core(tunnel)
    reply, squatter = v1_auth(core, "mallory-secret-token", ["bob", "not_a_label"])
    assert squatter is None, reply
    assert "not a valid DNS label" in reply
    tunnel.agent(core, origin.addr, subdomain="bob", name="bob", token="bob-secret-token")


# An account that names bob exactly gets it even when another account took it through "*"; and
# an agent refused because another account holds its name keeps retrying (it exited before).
def test_an_explicit_name_wins_and_a_held_name_is_retried(tunnel, origin):
    core = accounts_core(tunnel, ["name: bob\ntokens: [bob-secret-token]\nsubdomains: [bob, bobby]",
                                  "name: mallory\ntokens: [mallory-secret-token]",
                                  "name: carol\ntokens: [carol-secret-token]"])
    reply, squatter = v1_auth(core, "mallory-secret-token", ["bob"])
    assert squatter is not None, reply
    assert core.wait_routed("bob").status == 200
    tunnel.agent(core, origin.addr, subdomain="bob", name="bob", token="bob-secret-token")
    for _ in range(5):
        r = core.request("bob")
        assert r.status == 200 and json.loads(r.body)["origin"] == "A", r.text()

    carol = tunnel.agent(core, origin.addr, subdomain="bob", name="carol", token="carol-secret-token",
                         wait=False)
    carol.wait_output(r"bob\.localhost is in use by another account .*retrying", 30)
    assert carol.alive()


# Issue 25: when an account's exact name took a name from another account's live "*" agent,
# that agent lost the name's traffic without a word. It is told (NOTICE) and the core logs it.
def test_an_agent_displaced_by_an_explicit_name_is_told(tunnel, origin):
    core = accounts_core(tunnel, ["name: bob\ntokens: [bob-secret-token]\nsubdomains: [bob]",
                                  "name: mallory\ntokens: [mallory-secret-token]"])
    other = tunnel.origin("B")
    squatter = tunnel.agent(core, other.addr, subdomain="bob", name="squatter",
                            token="mallory-secret-token")
    assert json.loads(core.wait_routed("bob").body)["origin"] == "B"
    tunnel.agent(core, origin.addr, subdomain="bob", name="bob", token="bob-secret-token")
    squatter.wait_output(r"bob\.localhost was taken over by another account whose "
                         r"configuration names it exactly .*no longer gets its traffic", 20)
    assert "account bob" not in squatter.output(), "the other account is named to the tenant"
    core.wait_output(r"agent \S+@mallory: bob\.localhost taken over by account bob, whose "
                     r"config names it exactly", 10)
    assert squatter.alive()
    for _ in range(3):
        r = core.request("bob")
        assert r.status == 200 and json.loads(r.body)["origin"] == "A", r.text()


# Issue 16 section 5: the port the core chose moved on every reconnect.
def test_a_tcp_port_stays_with_its_agent_across_restarts(tunnel):
    echo = tunnel.add(Server(tunnel.workdir, "tcp-echo")).start()
    core = accounts_core(tunnel, ["name: bob\ntokens: [bob-secret-token]"])
    agent = tunnel.add(PortAgent(core, "tcp", "127.0.0.1:%d" % echo.port, token="bob-secret-token",
                                 name="bob-tcp")).start()
    _, port = agent.wait_forwarding("tcp")
    agent.stop()
    agent.start()
    assert agent.wait_forwarding("tcp", after=1)[1] == port
    core.stop()
    agent.stop()
    core.start()
    agent.start()
    assert agent.wait_forwarding("tcp", after=2)[1] == port


# Issue 16 section 4: the default name came from the id the agent declares, not its JWT's.
def test_a_v1_agents_default_name_comes_from_its_jwt(tunnel):
    config = ("listen: {{agent: \"{agent}\", http: \"{http}\", admin: \"{admin}\"}}\n"
              "auth: {{jwt_secret: \"%s\"}}\naccounts:\n  - {{name: alice}}\n" % JWT_SECRET)
    core = tunnel.core(config_text=config, tokens=())
    token = jwt.encode({"account_id": "alice", "agent_id": "laptop",
                        "exp": int(time.time()) + 600}, JWT_SECRET, algorithm="HS256")
    reply, agent = v1_auth(core, token, [], agent_id="victim")
    assert agent is not None, reply
    assert core.wait_routed("laptop").status == 200
    assert core.request("victim").status == 404


# Issue 16 section 5: the agent limit was silent until the next agent retried forever.
def test_the_agent_limit_is_said_at_start_and_in_the_refusal(tunnel, origin):
    core = accounts_core(tunnel, ["name: bob\ntokens: [bob-secret-token]\nmax_agents: 1"])
    assert "account bob: at most 1 agent at once (accounts[].max_agents)" in core.output()
    tunnel.agent(core, origin.addr, subdomain="bob", name="bob", token="bob-secret-token")
    second = tunnel.agent(core, origin.addr, subdomain="bob2", name="bob2", token="bob-secret-token",
                          wait=False)
    second.wait_output(r"already has 1 agents connected .*accounts\[\]\.max_agents", 30)
    assert second.alive()


# Issue 16 section 5: a second agent taking the same subdomain joined round robin silently.
def test_a_shared_name_is_said_to_both_agents(tunnel, origin):
    core = accounts_core(tunnel)
    first = tunnel.agent(core, origin.addr, subdomain="bob", name="bob-1", token="bob-secret-token")
    second = tunnel.agent(core, origin.addr, subdomain="bob", name="bob-2", token="bob-secret-token")
    second.wait_output(r"bob\.localhost was already served by another agent of account bob: "
                       r"requests are shared round robin between 2 agents", 20)
    first.wait_output(r"now serves bob\.localhost too: requests are shared round robin "
                      r"between 2 agents", 20)


# Issue 25: one 15 KB AUTH opened 900 ports; tunnels per AUTH were unlimited.
def test_tunnels_per_agent_and_ports_per_account_are_finite_by_default(tunnel, origin):
    echo = tunnel.add(Server(tunnel.workdir, "tcp-echo")).start()
    core = accounts_core(tunnel, ["name: bob\ntokens: [bob-secret-token]\nmax_agents: 20",
                                  "name: mallory\ntokens: [mallory-secret-token]"])
    reply, agent = v1_auth(core, "mallory-secret-token", ["m%d" % i for i in range(33)])
    assert agent is None, reply
    assert "at most 32 per agent (limits.max_tunnels_per_agent" in reply
    ports = []
    for i in range(10):
        a = tunnel.add(PortAgent(core, "tcp", "127.0.0.1:%d" % echo.port, token="bob-secret-token",
                                 name="bob-tcp-%d" % i)).start()
        ports.append(a.wait_forwarding("tcp")[1])
    assert len(set(ports)) == 10
    eleventh = tunnel.add(PortAgent(core, "tcp", "127.0.0.1:%d" % echo.port, token="bob-secret-token",
                                    name="bob-tcp-10")).start()
    # An account limit may clear when another of its agents leaves (refusal code "limit"): the
    # agent retries with backoff and says why instead of exiting.
    eleventh.wait_output(re.escape("account bob already serves 10 tcp ports "
                                   "(ports.max_per_account)"), timeout=20)
    assert eleventh.alive()


def _udp_from_many_sources(port, count):
    """One datagram from each of `count` source addresses (what spoofed sources look like):
    127.0.1.1, 127.0.1.2, ..."""
    socks = []
    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.1.%d" % (1 + i), 0))
        s.sendto(b"hello %d" % i, ("127.0.0.1", port))
        socks.append(s)
    return socks


def _http_and_udp_agent(tunnel, core, origin, udp_port, name="mixed"):
    echo = tunnel.add(Server(tunnel.workdir, "udp-echo")).start()
    config = tunnel.workdir / ("%s.yaml" % name)
    config.write_text(
        "tunnels:\n"
        "  - type: http\n    local: \"%s\"\n    subdomain: bob\n"
        "  - type: udp\n    local: \"127.0.0.1:%d\"\n    remote_port: %d\n"
        % (origin.addr, echo.port, udp_port))
    agent = tunnel.add(PortAgent(core, config=config, token="bob-secret-token", name=name)).start()
    agent.wait_forwarding("udp")
    core.wait_routed("bob")
    return agent


# Issue 16 section 5 / issue 25: datagrams from 1,000 source addresses took all of the agent's
# streams and its http tunnels answered 503; the drops were not counted.
def test_udp_sources_leave_streams_for_http_and_drops_are_counted(tunnel, origin):
    limits = ("limits:\n  max_streams_per_agent: 20\n  streams_reserved_for_http: 5\n"
              "  max_clients_per_udp_tunnel: 100\n")
    core = accounts_core(tunnel, ["name: bob\ntokens: [bob-secret-token]"], extra=limits)
    udp_port = client.free_port()
    _http_and_udp_agent(tunnel, core, origin, udp_port)
    socks = _udp_from_many_sources(udp_port, 40)
    try:
        client.wait_for(lambda: sample(core, "tunnel_udp_datagrams_dropped_total") >= 25, 20,
                        what="25 datagrams counted as dropped")
        for _ in range(3):
            r = core.request("bob")
            assert r.status == 200, r.text()
    finally:
        for s in socks:
            s.close()
    lines = [l for l in core.output().splitlines()
             if "udp :%d" % udp_port in l and ("dropped" in l or "cannot take" in l)]
    assert 1 <= len(lines) < 10, "a line per datagram or per source:\n" + "\n".join(lines)


# The least recently active client makes room for a new one.
def test_a_udp_tunnel_evicts_its_oldest_client(tunnel, origin):
    core = accounts_core(tunnel, ["name: bob\ntokens: [bob-secret-token]"],
                         extra="limits:\n  max_clients_per_udp_tunnel: 4\n")
    udp_port = client.free_port()
    _http_and_udp_agent(tunnel, core, origin, udp_port)
    socks = []
    try:
        for i in range(6):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(2)
            socks.append(s)
            for _ in range(10):
                s.sendto(b"n%d" % i, ("127.0.0.1", udp_port))
                try:
                    assert s.recvfrom(100)[0] == b"n%d" % i
                    break
                except socket.timeout:
                    continue
            else:
                raise AssertionError("client %d got no answer" % i)
        core.wait_output(r"evicted for a new client: the tunnel has 4 clients "
                         r"\(limits\.max_clients_per_udp_tunnel\)", 20)
    finally:
        for s in socks:
            s.close()


def _mixed_tcp_agent(tunnel, core, origin):
    """An agent serving bob (http) and a tcp echo; returns the tcp tunnel's public port."""
    echo = tunnel.add(Server(tunnel.workdir, "tcp-echo")).start()
    config = tunnel.workdir / "mixed-tcp.yaml"
    config.write_text(
        "tunnels:\n"
        "  - type: http\n    local: \"%s\"\n    subdomain: bob\n"
        "  - type: tcp\n    local: \"127.0.0.1:%d\"\n" % (origin.addr, echo.port))
    agent = tunnel.add(PortAgent(core, config=config, token="bob-secret-token",
                                 name="mixed")).start()
    _, port = agent.wait_forwarding("tcp")
    core.wait_routed("bob")
    return port


def _tcp_from(port, source, timeout=10):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return s


def _echoes(s, data):
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = s.recv(100)
        if not chunk:
            break
        got += chunk
    return got == data


# Issue 25 "per-source caps": one client address could hold a tcp tunnel's whole connection
# budget (and with idle connections, lock every other visitor out for tunnel_idle_timeout).
# Now one address (IPv4, or IPv6 /64) holds at most 64 connections per tunnel by default.
def test_one_address_cannot_take_a_tcp_tunnels_connections(tunnel, origin):
    core = accounts_core(tunnel, ["name: bob\ntokens: [bob-secret-token]"])
    port = _mixed_tcp_agent(tunnel, core, origin)
    held = []
    try:
        for i in range(64):  # the default limits.max_connections_per_tcp_tunnel_per_address
            held.append(_tcp_from(port, "127.0.0.1"))
            assert _echoes(held[-1], b"c%d" % i), "connection %d was not relayed" % i
        for _ in range(3):
            extra = _tcp_from(port, "127.0.0.1")
            try:
                extra.sendall(b"x")
                assert extra.recv(10) == b"", "a 65th connection from one address got through"
            except ConnectionResetError:
                pass
            finally:
                extra.close()
        assert sample(core, 'tunnel_tcp_connections_refused_total{reason="address_limit"}') == 3
        core.wait_output(re.escape("closed: the client's address has 64 connections open to "
                                   "the tunnel (limits.max_connections_per_tcp_tunnel_per_"
                                   "address)"))
        lines = [l for l in core.output().splitlines() if "limits.max_connections_per_tcp_" in l]
        assert len(lines) == 1, "a line per refused connection:\n" + "\n".join(lines)
        # Another address has its own count; the agent's http tunnel still answers.
        with _tcp_from(port, "127.0.0.2") as other:
            assert _echoes(other, b"from another address")
        assert core.request("bob").status == 200
        # A closed connection gives its place back.
        held.pop().close()
        def reconnects():
            s = _tcp_from(port, "127.0.0.1")
            try:
                return _echoes(s, b"again")
            except OSError:
                return False
            finally:
                s.close()
        client.wait_for(reconnects, 10, what="a freed place to be given back")
    finally:
        for s in held:
            s.close()
    assert core.alive()


# Issue 25 "idle tcp connections count against the agent's shared stream limit": 1,000 idle
# tcp-tunnel connections blocked the agent's http tunnels. The tcp side of the udp test above.
def test_idle_tcp_connections_leave_streams_for_http(tunnel, origin):
    core = accounts_core(tunnel, ["name: bob\ntokens: [bob-secret-token]"],
                         extra="limits:\n  max_streams_per_agent: 20\n"
                               "  streams_reserved_for_http: 5\n")
    port = _mixed_tcp_agent(tunnel, core, origin)
    held = []
    try:
        for i in range(15):  # the agent's tcp/udp budget: 20 - 5
            held.append(_tcp_from(port, "127.0.0.%d" % (1 + i % 3)))
            assert _echoes(held[-1], b"c%d" % i), "connection %d was not relayed" % i
        extra = _tcp_from(port, "127.0.0.4")
        try:
            extra.sendall(b"x")
            assert extra.recv(10) == b"", "a 16th connection took one of the http streams"
        except ConnectionResetError:
            pass
        finally:
            extra.close()
        assert sample(core, 'tunnel_tcp_connections_refused_total{reason="stream_budget"}') == 1
        for _ in range(3):
            r = core.request("bob")
            assert r.status == 200, r.text()
    finally:
        for s in held:
            s.close()


# Issue 25 "per-source caps": one address churning through source ports evicted every other
# client of a udp tunnel (the tunnel-wide eviction takes the least recently active). Now an
# address at limits.max_clients_per_udp_tunnel_per_address evicts only its own clients.
def test_one_address_evicts_only_its_own_udp_clients(tunnel, origin):
    core = accounts_core(tunnel, ["name: bob\ntokens: [bob-secret-token]"],
                         extra="limits:\n  max_clients_per_udp_tunnel: 8\n"
                               "  max_clients_per_udp_tunnel_per_address: 3\n")
    udp_port = client.free_port()
    _http_and_udp_agent(tunnel, core, origin, udp_port)

    def sock(source):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((source, 0))
        s.settimeout(1)
        return s

    def echoes(s, data):
        for _ in range(10):
            s.sendto(data, ("127.0.0.1", udp_port))
            try:
                return s.recvfrom(100)[0] == data
            except socket.timeout:
                continue
        return False

    others = [sock("127.0.0.2") for _ in range(2)]
    churn = [sock("127.0.0.1") for _ in range(20)]
    try:
        for i, s in enumerate(others):
            assert echoes(s, b"other %d" % i)
        for i, s in enumerate(churn):
            assert echoes(s, b"churn %d" % i)
        # 127.0.0.1 made room among its own clients 17 times; the tunnel's cap (8) was never
        # reached, and 127.0.0.2's clients kept their sessions.
        client.wait_for(lambda: sample(
            core, 'tunnel_udp_sessions_evicted_total{cap="address"}') == 17, 10,
            what="17 evictions by the per-address cap")
        assert sample(core, 'tunnel_udp_sessions_evicted_total{cap="tunnel"}') == 0
        for i, s in enumerate(others):
            assert echoes(s, b"other again %d" % i)
        assert "127.0.0.2" not in "\n".join(l for l in core.output().splitlines()
                                              if "evicted" in l)
        core.wait_output(re.escape("evicted for a new client from the same address: 127.0.0.1 "
                                   "has 3 clients of the tunnel (limits.max_clients_per_udp_"
                                   "tunnel_per_address)"))
        assert core.request("bob").status == 200
    finally:
        for s in others + churn:
            s.close()


# Issue 25: nothing capped the names and ports one account held (served, kept after its agents
# left, restored after a restart): one tenant could grow the registry and the ownership file
# without bound.
def test_names_an_account_holds_are_capped(tunnel):
    core = accounts_core(tunnel, ["name: bob\ntokens: [bob-secret-token]\nmax_names: 2",
                                  "name: mallory\ntokens: [mallory-secret-token]"])
    reply, agent = v1_auth(core, "bob-secret-token", ["b1", "b2", "b3"])
    assert agent is None, reply
    assert ("account bob already holds 2 names and ports (served, or kept for it for 10 "
            "minutes after its agents left); at most 2 (accounts[].max_names in the core's "
            "config)") in reply
    reply, agent = v1_auth(core, "bob-secret-token", ["b1", "b2"])
    assert agent is not None, "the refused AUTH held its names: " + reply
    agent.close()
    core.wait_output(r"agent \S+@bob disconnected", 10)
    # b1 and b2 are kept for bob for 10 minutes: they still count.
    reply, other = v1_auth(core, "bob-secret-token", ["b3"], agent_id="bob-2")
    assert other is None, reply
    assert "accounts[].max_names" in reply
    reply, back = v1_auth(core, "bob-secret-token", ["b1"], agent_id="bob-3")
    assert back is not None, "a held name of its own must come back: " + reply
    reply, m = v1_auth(core, "mallory-secret-token", ["m1", "m2", "m3"], agent_id="m")
    assert m is not None, "the cap is per account: " + reply
