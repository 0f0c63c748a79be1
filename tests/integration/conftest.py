"""Fixtures: a core on free loopback ports, an agent factory, origin apps.

Every process started through these fixtures is killed at teardown, and when a test fails
the tail of each process's log is attached to the failure report."""
import os
import re
import resource
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import procs  # noqa: E402
from harness.procs import Agent, Core, Origin  # noqa: E402


def pytest_configure(config):
    # 500 concurrent connections need more than the usual 1024 descriptors; children
    # (core, agents, origins) inherit the raised limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    config.addinivalue_line("markers", "slow: large transfers and many connections")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("setup", "call"):
        for p in getattr(item, "_tunnel_procs", []):
            state = "running" if p.alive() else "exited %s" % p.returncode()
            rep.sections.append(("log of %s (%s, %s)" % (p.name, state, p.log_path), p.tail(150)))


class Procs:
    """Every process a test starts; all are stopped at teardown."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.all = []

    def add(self, p):
        self.all.append(p)
        return p

    def origin(self, name="A"):
        return self.add(Origin(name, self.workdir / ("origin-%s.log" % name))).start()

    def core(self, name="core", **kw):
        return self.add(Core(self.workdir, name=name, **kw)).start()

    def agent(self, core, target, subdomain=None, name=None, wait=True, **kw):
        """Starts an agent; with wait, returns once its subdomain is routed."""
        name = name or "agent-%d" % (sum(isinstance(p, Agent) for p in self.all) + 1)
        a = self.add(Agent(core, target, subdomain=subdomain, name=name, **kw)).start()
        if wait and subdomain:
            core.wait_routed(subdomain, agent=a)
        return a

    def stop_all(self):
        for p in reversed(self.all):
            try:
                p.stop(timeout=5)
            except Exception:  # noqa: BLE001 - teardown must reach every process
                p.kill()


@pytest.fixture(scope="session")
def bin_dir():
    d = procs.bin_dir()
    for name in ("tunnel-core", "tunnel-agent"):
        if not os.access(d / name, os.X_OK):
            pytest.fail("%s not found in %s: build first (cmake --build --preset release) or "
                        "set TUNNEL_BIN_DIR" % (name, d))
    return d


# What ASan, LSan and UBSan print. A sanitized binary that reports during a test (or at exit,
# as LSan does) must fail that test even when every assertion about its output passed.
SANITIZER_REPORT = re.compile(r"^(==\d+==ERROR: \w+Sanitizer|SUMMARY: \w+Sanitizer|"
                              r"\S+:\d+:\d+: runtime error: )", re.M)


def sanitizer_reports(processes):
    """The log tail from each process whose log holds a sanitizer report."""
    found = []
    for p in processes:
        m = SANITIZER_REPORT.search(p.output())
        if m:
            found.append("%s (%s):\n%s" % (p.name, p.log_path, p.output()[m.start():][:6000]))
    return found


@pytest.fixture
def tunnel(request, tmp_path, bin_dir):
    """A Procs registry for tests that start their own cores (config files, restarts)."""
    reg = Procs(tmp_path)
    request.node._tunnel_procs = reg.all
    yield reg
    reg.stop_all()
    reports = sanitizer_reports(reg.all)
    if reports:
        pytest.fail("sanitizer report in a process log:\n" + "\n\n".join(reports),
                    pytrace=False)


@pytest.fixture
def origin(tunnel):
    return tunnel.origin("A")


@pytest.fixture
def core(tunnel):
    return tunnel.core()


@pytest.fixture
def app(tunnel, core, origin):
    """An agent serving `origin` as app.localhost; returns the agent."""
    return tunnel.agent(core, origin.addr, subdomain="app", name="agent-app")


@pytest.fixture(scope="session")
def bulk_bytes():
    """Size of the big transfers: 1 GiB unless TUNNEL_TEST_BULK_BYTES says otherwise
    (the sanitizer build uses less)."""
    return int(os.environ.get("TUNNEL_TEST_BULK_BYTES", str(1 << 30)))
