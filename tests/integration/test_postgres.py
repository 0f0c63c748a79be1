"""Several cores on one PostgreSQL store (issue 17): a change made through one core's API
reaches the other core's live traffic within a second (LISTEN/NOTIFY): an agent registered
and a tunnel assigned through core A are accepted and served by core B; the agent removed
through A is dropped by B. Runs on a PostgreSQL 15 cluster of its own (initdb + pg_ctl in a
temp dir); skipped when PostgreSQL is not installed."""
import re
import shutil
import time

import pytest

from harness import client
from harness.api import call
from harness.postgres import Cluster
from harness.procs import Proc, bin_dir


@pytest.fixture(scope="module")
def pg():
    why = Cluster.available()
    if why:
        pytest.skip(why)
    cluster = Cluster().start()
    yield cluster
    cluster.stop()


CONFIG = """listen:
  agent: "{agent}"
  http: "{http}"
  https: "{https}"
  admin: "{admin}"
store:
  url: "%s"
"""


def two_cores(tunnel, url):
    a = tunnel.core("core-a", config_text=CONFIG % url)
    b = tunnel.add(type(a)(tunnel.workdir, name="core-b", config_text=CONFIG % url))
    # Cores sharing a database share the key that hashes its credentials.
    b.data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(a.data_dir / "store.key", b.data_dir / "store.key")
    shutil.copy(a.data_dir / "admin.key", b.data_dir / "admin.key")
    b.start()
    return a, b


def test_a_change_through_one_core_reaches_the_other_within_a_second(tunnel, pg):
    a, b = two_cores(tunnel, pg.new_database())
    origin = tunnel.origin("A")
    status, agent = call(a, "POST", "/api/v1/agents", {"name": "laptop"})
    assert status == 201, agent
    status, t = call(a, "POST", "/api/v1/tunnels",
                     {"name": "app", "type": "http", "agent": agent["id"], "local": origin.addr})
    assert status == 201, t

    # One second after A answered, B accepts the agent at its first AUTH and serves the tunnel.
    time.sleep(1.0)
    argv = [bin_dir() / "tunnel-agent", "start", "--token", agent["token"],
            "--server", b.agent_addr, "--ca", b.ca, "--data-dir", b.workdir / "agent-data"]
    proc = tunnel.add(Proc("agent", argv, b.workdir / "agent.log", cwd=b.workdir)).start()
    deadline = time.monotonic() + 10
    while True:
        r = client.request(b.http_port, b.host("app"), "GET", "/echo", timeout=5)
        if r.status == 200:
            break
        assert time.monotonic() < deadline, (r.status, r.text())
        time.sleep(0.05)
    assert r.headers.get("x-origin") == "A"
    assert "authentication failed" not in proc.output()

    # Removed through A: B closes the agent's session within a second.
    started = time.monotonic()
    status, _ = call(a, "DELETE", "/api/v1/agents/%d" % agent["id"])
    assert status == 204
    b.wait_output(re.escape("the agent was removed through the API; session closed"),
                  timeout=5)
    assert time.monotonic() - started < 1.0
    proc.wait_output(r"authentication failed", timeout=15)
