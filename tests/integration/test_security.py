"""Security hardening (issue #25): what an unauthenticated or hostile peer can make the core
spend. Each case measures the core itself (/proc/<pid>/status) and checks that it still
serves afterwards."""
import json
import socket
import struct
import time

from harness import client, v1client

MiB = 1 << 20
# A frame header announcing the largest length the protocol allows (16 MiB), version 1.
AUTH_HEADER_16MIB = struct.pack(">I", 1 << 24) + b"RT\x01\x01\x00" + struct.pack(">I", 0)


def proc_status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (field, pid))


def closed_by_peer(sock, timeout):
    """True once the peer closed (EOF or reset) within timeout."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    except socket.timeout:
        return False
    return True


def plain_core(tunnel):
    port = client.free_port()
    core = tunnel.core(extra_args=["--agent-plain-addr", "127.0.0.1:%d" % port])
    core.wait_output(r"plain TCP on port %d" % port)
    return core, port


def test_pre_auth_header_cannot_make_the_core_allocate(tunnel, origin):
    """30 connections that send only a header announcing 16 MiB before AUTH: each is refused
    from the header (the AUTH limit is 64 KiB), the core's peak RSS grows by less than 30 MiB
    (it grew by 16 MiB per connection before), and agents are still served."""
    core, port = plain_core(tunnel)
    tunnel.agent(core, origin.addr, subdomain="app", name="agent-app")
    assert core.request("app").status == 200
    before = proc_status_kib(core.pid, "VmHWM")
    socks = []
    for _ in range(30):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(AUTH_HEADER_16MIB)
        socks.append(s)
    try:
        for s in socks:
            assert closed_by_peer(s, 30), "the core kept a connection with an over-limit header"
    finally:
        for s in socks:
            s.close()
    grown_mib = (proc_status_kib(core.pid, "VmHWM") - before) / 1024
    assert grown_mib < 30, "the core's peak RSS grew by %.0f MiB" % grown_mib
    core.wait_output(r"announces a payload of 16777207 bytes, above the limit of 65536 bytes")
    assert core.request("app").status == 200
    tunnel.agent(core, origin.addr, subdomain="late", name="agent-late", use_ca=False,
                 server="127.0.0.1:%d" % port, extra_args=["--plain"])
    r = core.request("late", "POST", "/echo", body=b"x" * 100_000)
    assert r.status == 200 and json.loads(r.body)["body_length"] == 100_000, r.text()


def test_authenticated_header_costs_only_what_arrives(tunnel, origin):
    """After AUTH the limit is the protocol's 16 MiB, but a frame still costs only the bytes
    that arrived: 8 agents that each announce a 16 MiB DATA frame and send 10 bytes of it do
    not grow the core's RSS by 8 x 16 MiB."""
    core = tunnel.core()
    tunnel.agent(core, origin.addr, subdomain="app", name="agent-app")
    assert core.request("app").status == 200
    before = proc_status_kib(core.pid, "VmRSS")
    agents = []
    try:
        for i in range(8):
            a = v1client.V1Agent(core.agent_addr, core.ca, core.tokens[0], ["big%d" % i],
                                 v1client.echo_app("x"), agent_id="big%d" % i)
            assert a.connect()["success"] is True
            agents.append(a)
            a.send_raw(struct.pack(">I", 1 << 24) + b"RT\x01\x03\x00" + struct.pack(">I", 1)
                       + b"x" * 10)
        # The growth, if any, comes as soon as the core reads the headers: watch for it.
        deadline = time.monotonic() + 5
        grown_mib = 0
        while time.monotonic() < deadline:
            grown_mib = max(grown_mib, (proc_status_kib(core.pid, "VmRSS") - before) / 1024)
            if grown_mib >= 30:
                break
            time.sleep(0.1)
        assert grown_mib < 30, "the core's RSS grew by %.0f MiB" % grown_mib
        assert core.request("app").status == 200
    finally:
        for a in agents:
            a.sock.close()


def test_refusal_carries_a_code(tunnel):
    """The AUTH refusal names its reason for programs ("code"), besides the text for people:
    the agent decides by it whether to retry (docs/protocol.md)."""
    core, port = plain_core(tunnel)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        auth = json.dumps({"token": "wrong-token", "agent_id": "x", "protocol_versions": [2, 1],
                           "tunnels": [{"type": "http", "subdomain": "x"}]}).encode()
        s.sendall(v1client.encode(v1client.AUTH, 0, 0, auth))
        ftype, flags, _, payload = v1client.read_frame(s)
        reply = json.loads(payload)
        assert ftype == v1client.AUTH and reply["success"] is False, reply
        assert reply["code"] == "bad_token", reply
        assert "authentication failed" in reply["error"], reply
    finally:
        s.close()


def _stalled(port, source, count):
    """count TCP connections to the agent listener from source that never send a byte."""
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((source, 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        socks.append(s)
    return socks


def test_connections_before_auth_are_capped_per_address(tunnel, origin):
    """Issue #25 High: cap connections in the handshake state. 16 silent connections from one
    address (limits.max_agent_handshakes_per_address) hold their slots; the 17th is closed at
    once, counted and logged; an agent from another address still connects; closing the silent
    ones frees their slots."""
    from harness.raw import sample
    core = tunnel.core()
    port = core.ports["agent"]
    stalled = _stalled(port, "127.0.0.2", 16)
    try:
        time.sleep(0.5)  # all 16 accepted
        extra = _stalled(port, "127.0.0.2", 1)[0]
        started = time.monotonic()
        assert closed_by_peer(extra, 3), "a 17th connection from one address was kept"
        assert time.monotonic() - started < 2
        extra.close()
        for s in stalled[:3]:
            assert not closed_by_peer(s, 0.05), "a connection under the cap was closed"
        assert sample(core, "tunnel_agent_handshakes") == 16
        assert sample(core, 'tunnel_agent_handshakes_refused_total{cap="address"}') == 1
        core.wait_output(r"agent connection from 127\.0\.0\.2 closed before TLS: 16 agent "
                         r"connections from this address .*limits\.max_agent_handshakes_per_")
        # The harness's agents connect from 127.0.0.1: another address, its own slots.
        tunnel.agent(core, origin.addr, subdomain="app", name="agent-app")
        assert core.request("app").status == 200
    finally:
        for s in stalled:
            s.close()
    client.wait_for(lambda: sample(core, "tunnel_agent_handshakes") == 0, 10,
                    what="the slots of the closed connections to be freed")
    again = _stalled(port, "127.0.0.2", 16)
    try:
        time.sleep(0.3)
        for s in again:
            assert not closed_by_peer(s, 0.01), "a freed slot was not given back"
        assert sample(core, 'tunnel_agent_handshakes_refused_total{cap="address"}') == 1
    finally:
        for s in again:
            s.close()
    assert core.alive()


def test_an_agent_over_the_handshake_cap_is_told_why_and_retries(tunnel, origin):
    """Issue #25 (weak point left by the handshake cap): the core closes a connection over
    limits.max_agent_handshakes_per_address before its TLS handshake, so the agent saw only a
    TLS error, with a hint about --plain that did not apply. It now names the caps it may have
    met, keeps retrying, and connects once a slot is free."""
    from harness.raw import core_config
    core = tunnel.core(config_text=core_config(
        ["name: default\ntokens: [test-agent-token]"],
        "limits:\n  max_agent_handshakes_per_address: 1\n"))
    stalled = _stalled(core.ports["agent"], "127.0.0.1", 1)
    try:
        time.sleep(0.3)
        agent = tunnel.agent(core, origin.addr, subdomain="app", name="agent-app", wait=False)
        agent.wait_output(r"limits\.max_agent_handshakes_per_address", timeout=15)
        assert agent.alive()
    finally:
        for s in stalled:
            s.close()
    core.wait_routed("app", agent=agent)
    assert core.request("app").status == 200
