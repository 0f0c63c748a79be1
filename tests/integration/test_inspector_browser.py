"""The agent's inspector page in a real browser (issue #20): Debian's chromium driven by
playwright-core (tests/browser/inspector.mjs) against a real core, agent and app. Skipped when
chromium or the npm packages are missing, unless TUNNEL_REQUIRE_BROWSER is set (CI sets it:
scripts/install-deps.sh installs both)."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

BROWSER_DIR = Path(__file__).resolve().parent.parent / "browser"
CHROMIUM = "/usr/bin/chromium"


def need(ok, why):
    if ok:
        return
    if os.environ.get("TUNNEL_REQUIRE_BROWSER"):
        pytest.fail(why + " (TUNNEL_REQUIRE_BROWSER is set; scripts/install-deps.sh installs it)")
    pytest.skip(why)


def test_the_page_shows_filters_and_replays_live_traffic(tunnel):
    need(os.path.exists(CHROMIUM), "no " + CHROMIUM)
    need(shutil.which("node") is not None, "no node")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").exists():
        subprocess.run([str(BROWSER_DIR / "install.sh")], check=False, timeout=300)
    need((BROWSER_DIR / "node_modules" / "playwright-core").exists(),
         "playwright-core not installed (tests/browser/install.sh)")

    core = tunnel.core()
    origin = tunnel.origin()
    agent = tunnel.agent(core, "127.0.0.1:%d" % origin.port, subdomain="page",
                         extra_args=["--inspect-addr", "127.0.0.1:0"])
    addr = agent.wait_output(re.escape("request inspector on http://") +
                             r"(127\.0\.0\.1:\d+)").group(1)
    core.wait_routed("page", agent=agent)
    env = dict(os.environ, INSPECTOR_URL="http://" + addr, TUNNEL_PORT=str(core.http_port),
               TUNNEL_HOST=core.host("page"), CHROMIUM=CHROMIUM)
    run = subprocess.run(["node", str(BROWSER_DIR / "inspector.mjs")], cwd=BROWSER_DIR, env=env,
                         capture_output=True, text=True, timeout=60)
    print(run.stdout)
    assert run.returncode == 0, "the browser test failed:\n%s\n%s" % (run.stdout, run.stderr)
    assert "passed" in run.stdout
