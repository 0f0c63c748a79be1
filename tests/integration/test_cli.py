"""What a new user types and reads (issue #16 section 5): the commands the docs and the core
print work as printed, and the agent's messages point at the right fix."""
import re
import shlex
import subprocess

from harness import client
from harness.procs import Proc, bin_dir, clean_env


def agent_yaml(core, origin, subdomain):
    return ("server: %s\ntoken: %s\nca: %s\ntunnels:\n  - local: %s\n    subdomain: %s\n"
            % (core.agent_addr, core.tokens[0], core.ca, origin.addr, subdomain))


def test_agent_config_without_subcommand_means_start(tunnel, core, origin, tmp_path):
    """docs/configuration.md showed `tunnel-agent --config agent.yaml`; it failed with "A
    subcommand is required". It now means `start --config agent.yaml`."""
    f = tmp_path / "agent.yaml"
    f.write_text(agent_yaml(core, origin, "fromfile"))
    agent = tunnel.add(Proc("agent-config", [bin_dir() / "tunnel-agent", "--config", f],
                            tmp_path / "agent-config.log", cwd=tmp_path))
    agent.start()
    core.wait_routed("fromfile", agent=agent)

    bare = subprocess.run([bin_dir() / "tunnel-agent"], capture_output=True, text=True,
                          timeout=30, env=clean_env())
    assert bare.returncode == 2
    assert "A subcommand is required" in bare.stderr


def test_core_hint_works_on_a_free_agent_port(tunnel, origin, tmp_path):
    """The "run an agent on this machine" line printed at start must reach the agent listener
    wherever it is; it used to leave out --server, so the agent retried localhost:8443."""
    core = tunnel.core(tokens=())  # no accounts: the hint carries the generated token
    m = core.wait_output(r"^run an agent on this machine:\n  (tunnel-agent .*)$", flags=re.M)
    argv = shlex.split(m.group(1))
    assert argv[:3] == ["tunnel-agent", "http", "3000"], argv
    argv = [str(bin_dir() / "tunnel-agent"), "http", origin.addr] + argv[3:]
    agent = tunnel.add(Proc("agent-hint", argv, tmp_path / "agent-hint.log", cwd=core.workdir))
    agent.start()
    # The hint names --subdomain app.
    core.wait_routed("app", agent=agent)
    # The token of the other-machine line is in the environment: --token shows in `ps`.
    other = core.wait_output(r"^or from another machine:\n  (.*)$", flags=re.M).group(1)
    assert other.startswith("TUNNEL_TOKEN=") and "--token" not in other, other


def test_help_says_the_default_name(bin_dir):
    cp = subprocess.run([bin_dir / "tunnel-agent", "http", "--help"], capture_output=True,
                        text=True, timeout=30, env=clean_env())
    assert cp.returncode == 0
    text = " ".join(cp.stdout.split())
    assert "default: the agent id" in text, cp.stdout


def http_port_message(tunnel, core, tmp_path, name, extra):
    argv = [bin_dir() / "tunnel-agent", "http", "3000", "--server",
            "127.0.0.1:%d" % core.http_port, "--token", "test-agent-token"] + extra
    agent = tunnel.add(Proc(name, argv, tmp_path / ("%s.log" % name), cwd=tmp_path))
    agent.start()
    m = agent.wait_output(r"^.*reconnecting.*$", timeout=30, flags=re.M)
    return agent, m.group(0)


def test_agent_at_the_http_port_is_told_so(tunnel, core, tmp_path):
    """An agent dialling the core's public HTTP port was told to try --plain."""
    for name, extra in (("agent-tls", ["--insecure"]), ("agent-plain", ["--plain"])):
        agent, line = http_port_message(tunnel, core, tmp_path, name, extra)
        assert "this is the core's public HTTP port; agents connect to the agent port " \
               "(default 8443)" in line, line
        assert "--plain" not in line, line
        agent.stop()


def test_agent_at_the_plain_port_over_tls_still_hears_of_plain(tunnel, tmp_path):
    """The --plain hint stays for the case it fits: TLS to the plain-TCP agent listener."""
    plain = client.free_port()
    core = tunnel.core(extra_args=["--agent-plain-addr", "127.0.0.1:%d" % plain])
    argv = [bin_dir() / "tunnel-agent", "http", "3000", "--server", "127.0.0.1:%d" % plain,
            "--token", "test-agent-token", "--insecure"]
    agent = tunnel.add(Proc("agent-tls-plain", argv, tmp_path / "agent-tls-plain.log",
                            cwd=tmp_path))
    agent.start()
    line = agent.wait_output(r"^.*reconnecting.*$", timeout=30, flags=re.M).group(0)
    assert "use --plain" in line, line
    assert core.alive()


class SplitProc(Proc):
    """A process whose stdout and stderr go to two files."""

    def start(self):
        self.out_path = self.log_path.with_suffix(".out")
        with open(self.log_path, "ab") as err, open(self.out_path, "wb") as out:
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=err,
                                          stdin=subprocess.DEVNULL, cwd=self.cwd, env=self.env)
        return self

    def stdout(self):
        return self.out_path.read_text()


def test_forwarding_url_on_stdout(tunnel, core, origin, tmp_path):
    """Scripts read the public URL from stdout; the logs stay on stderr."""
    argv = [bin_dir() / "tunnel-agent", "http", origin.addr, "--server", core.agent_addr,
            "--token", "test-agent-token", "--ca", core.ca, "--subdomain", "scripted"]
    agent = tunnel.add(SplitProc("agent-split", argv, tmp_path / "agent-split.err",
                                 cwd=tmp_path))
    agent.start()
    url = "http://scripted.localhost:%d" % core.http_port
    client.wait_for(lambda: "Forwarding" in agent.stdout(), 30, what="a Forwarding line")
    out = agent.stdout()
    assert re.search(r"^Forwarding  %s -> %s$" % (re.escape(url), re.escape(origin.addr)), out,
                     re.M), out
    assert "connected to" not in out, out  # logs are not on stdout
    assert "connected to" in agent.output()
