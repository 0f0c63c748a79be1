"""A stopped agent (SIGSTOP): new requests fail fast once it has been silent for 2 heartbeat
intervals, and it is dropped at heartbeat.timeout, not at the first ping after it (issue #16
section 5: it was dropped after about 36 s with the default 30 s, requests hanging meanwhile).

The margins are for sanitized binaries on a loaded 2-core machine (CI runs this under ASan):
each bound a fixed build must meet is at least 1 s away from where it is measured, and the
broken behaviour stays on the other side of it by seconds, so the tests still fail on it."""
import json
import signal
import time

from harness import v1client

INTERVAL_S = 2
# Far past the silent bound (2 intervals), so the request below meets a silent session that is
# not yet dropped even if it is served late: a build without the fast refusal makes it wait for
# the drop and answer something else.
TIMEOUT_S = 10
CONFIG = """\
domain: localhost
listen: {{agent: "{agent}", http: "{http}", https: "{https}", admin: "{admin}"}}
heartbeat: {{interval: %ds, timeout: %ds}}
accounts:
  - {{name: default, tokens: ["test-agent-token"]}}
""" % (INTERVAL_S, TIMEOUT_S)


def test_stopped_agent_fails_fast_and_is_dropped_at_the_timeout(tunnel, origin):
    core = tunnel.core(config_text=CONFIG)
    agent = tunnel.agent(core, origin.addr, subdomain="sleepy")
    assert core.request("sleepy").status == 200

    agent.signal(signal.SIGSTOP)
    try:
        # Once the agent has been quiet for 2 intervals (its last frame came before the
        # SIGSTOP, so this sleep is a lower bound on its silence), a new request is refused at
        # once, naming the silence. Before, it waited for the drop and then failed.
        # The 1 s past the bound is for a late timer in the core.
        time.sleep(2 * INTERVAL_S + 1)
        r = core.request("sleepy", timeout=TIMEOUT_S * 3)
        assert r.status == 503, (r.status, r.body)
        assert b"has sent nothing for over %d ms (2 heartbeat intervals)" % (2000 * INTERVAL_S) \
            in r.body, r.body

        m = core.wait_output(r"no frame from the peer for (\d+) ms \(heartbeat timeout (\d+) ms\)",
                             timeout=TIMEOUT_S * 4)
        assert int(m.group(2)) == TIMEOUT_S * 1000, m.group(0)
    finally:
        agent.signal(signal.SIGCONT)

    # Woken up, the agent finds its session gone, reconnects and serves again.
    core.wait_routed("sleepy", agent=agent, timeout=60)
    assert agent.alive()


V1_CONFIG = """\
domain: localhost
listen: {{agent: "{agent}", http: "{http}", https: "{https}", admin: "{admin}"}}
heartbeat: {{interval: 6s, timeout: 7s}}
accounts:
  - {{name: default, tokens: ["test-agent-token"]}}
"""


def test_silent_agent_is_dropped_at_the_timeout_not_the_next_check(tunnel):
    """A v1 agent that authenticates and then sends nothing. The core checked the silence only
    at each heartbeat interval (6 s) after the session started, so a 7 s timeout dropped it
    after 12 s; the check now wakes when the timeout is reached."""
    core = tunnel.core(config_text=V1_CONFIG)
    sock = v1client.connect_tls(core.agent_addr, core.ca)
    auth = {"token": "test-agent-token", "agent_id": "mute", "metadata": {"subdomains": "mute"}}
    sock.sendall(v1client.encode(v1client.AUTH, 0, 0, json.dumps(auth).encode()))
    ftype, flags, _, payload = v1client.read_frame(sock)
    assert ftype == v1client.AUTH and flags & v1client.ACK and json.loads(payload)["success"]
    try:
        m = core.wait_output(r"no frame from the peer for (\d+) ms \(heartbeat timeout 7000 ms\)",
                             timeout=30)
        silent_ms = int(m.group(1))
        # 12000 before; the 3 s above 7000 are for a late timer (sanitized, loaded machine).
        assert 7000 <= silent_ms < 10000, m.group(0)
    finally:
        sock.close()
