"""tunnelctl, the command-line client of the REST API (issue 17): a real core, tunnelctl run as
a process. Tunnels and agents created, listed, read and deleted in both output modes; the
agent token it prints is accepted by a real tunnel-agent; a bad body names the field (exit 1);
no key is 401 (exit 1) naming where it looked; a bad flag exits 2; the default key file is
<--data-dir>/admin.key; an unreachable server is named (exit 1)."""
import json
import re
import subprocess
import time

from harness import client
from harness.procs import Proc, bin_dir, clean_env


def ctl(core, *args, data_dir=None, env=None, server=True):
    argv = [str(bin_dir() / "tunnelctl")]
    if server:
        argv += ["--server", "http://127.0.0.1:%d" % core.admin_port]
    argv += ["--data-dir", str(data_dir or core.data_dir)]
    argv += [str(a) for a in args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30,
                          env=clean_env(env), cwd=core.workdir)


def ok_json(core, *args):
    r = ctl(core, *args)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return json.loads(r.stdout)


def test_tunnels_in_both_output_modes(tunnel):
    core = tunnel.core()
    # Not a terminal: JSON by default, the API's own.
    app = ok_json(core, "tunnels", "create", "--name", "app", "--type", "http")
    assert app["name"] == "app" and app["type"] == "http"
    tcp = ok_json(core, "tunnels", "create", "--type", "tcp", "--port", "15433")
    assert tcp["port"] == 15433
    listed = ok_json(core, "tunnels", "list")
    assert [t["id"] for t in listed["items"]] == [app["id"], tcp["id"]]
    assert listed["next_cursor"] is None
    assert [t["id"] for t in ok_json(core, "tunnels", "list", "--type", "tcp")["items"]] == [tcp["id"]]
    assert len(ok_json(core, "tunnels", "list", "--limit", "1")["items"]) == 1
    got = ok_json(core, "tunnels", "get", app["id"])
    assert got["name"] == "app" and got["live_sessions"] == 0
    patched = ok_json(core, "tunnels", "update", app["id"], "--proxy-protocol", "true")
    assert patched["proxy_protocol"] is True

    # A table when asked: a header and one aligned row per tunnel.
    r = ctl(core, "--output", "table", "tunnels", "list")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["ID", "TYPE", "NAME", "DOMAIN", "PORT", "URL", "AGENT", "LOCAL",
                                "ACCOUNT"], r.stdout
    assert lines[1].split()[:3] == [str(app["id"]), "http", "app"], r.stdout
    assert lines[2].split()[:5] == [str(tcp["id"]), "tcp", "-", "-", "15433"], r.stdout
    assert lines[1].index("http") == lines[0].index("TYPE")
    r = ctl(core, "-o", "table", "tunnels", "get", tcp["id"])
    assert r.returncode == 0 and re.search(r"^port\s+15433$", r.stdout, re.M), r.stdout

    r = ctl(core, "-o", "table", "tunnels", "delete", tcp["id"])
    assert r.returncode == 0, r.stderr
    r = ctl(core, "tunnels", "delete", app["id"])
    assert r.returncode == 0 and r.stdout == "", (r.stdout, r.stderr)
    assert ok_json(core, "tunnels", "list")["items"] == []
    r = ctl(core, "tunnels", "get", app["id"])
    assert r.returncode == 1 and r.stderr.startswith("tunnelctl: 404"), r.stderr


def test_an_agent_token_from_tunnelctl_runs_a_real_agent(tunnel):
    core = tunnel.core()
    origin = tunnel.origin("A")
    r = ctl(core, "agents", "create", "--name", "laptop")
    assert r.returncode == 0, r.stderr
    agent = json.loads(r.stdout)
    assert agent["token"].startswith("tna_")
    # The core says where agents dial and which certificate they get: the printed command
    # works as it is (no guessed port, no --ca).
    assert agent["server"] == "localhost:%d" % core.ports["agent"], agent
    printed = re.search(r"TUNNEL_TOKEN=(tna_\S+) (tunnel-agent start .*)$", r.stderr, re.M)
    assert printed, r.stderr
    assert printed.group(2) == "tunnel-agent start --server %s --fingerprint %s" % (
        agent["server"], agent["fingerprint"]), r.stderr
    t = ok_json(core, "tunnels", "create", "--name", "app", "--agent", agent["id"],
                "--local", origin.addr)
    assert t["agent"] == agent["id"]

    r = ctl(core, "-o", "table", "agents", "create", "--name", "other",
            "--agent-server", core.agent_addr)
    assert r.returncode == 0, r.stderr
    m = re.search(r"TUNNEL_TOKEN=(tna_\S+) tunnel-agent start --server (\S+) --fingerprint \S+$",
                  r.stdout, re.M)
    assert m and m.group(2) == core.agent_addr, r.stdout

    argv = [bin_dir() / "tunnel-agent"] + printed.group(2).split()[1:] + [
        "--data-dir", core.workdir / "managed-data"]
    proc = tunnel.add(Proc("managed", argv, core.workdir / "managed.log", cwd=core.workdir,
                           env=clean_env({"TUNNEL_TOKEN": printed.group(1)}))).start()
    deadline = time.monotonic() + 15
    last = None
    while time.monotonic() < deadline:
        try:
            last = client.request(core.http_port, core.host("app"), "GET", "/echo", timeout=5)
            if last.status == 200 and last.headers.get("x-origin") == "A":
                break
        except OSError as e:
            last = e
        time.sleep(0.05)
    else:
        raise AssertionError("app not served: %r\n%s" % (last, proc.tail()))

    got = ok_json(core, "agents", "get", agent["id"])
    assert got["connected"] is True and len(got["sessions"]) == 1
    r = ctl(core, "-o", "table", "agents", "list")
    assert r.returncode == 0 and r.stdout.splitlines()[0].split() == ["ID", "NAME", "ACCOUNT",
                                                                      "CREATED"], r.stdout
    assert [a["name"] for a in ok_json(core, "agents", "list")["items"]] == ["laptop", "other"]
    r = ctl(core, "agents", "delete", agent["id"])
    assert r.returncode == 0, r.stderr
    proc.wait_output(r"authentication failed", timeout=15)


def test_errors_and_exit_codes(tunnel):
    core = tunnel.core()
    # A bad body: one line per field at fault, exit 1.
    r = ctl(core, "tunnels", "create", "--type", "tcp", "--port", "80")
    assert r.returncode == 1 and r.stdout == "", (r.stdout, r.stderr)
    assert re.match(r"tunnelctl: 422 [^\n]*: port: ", r.stderr), r.stderr
    # No key: 401, exit 1, and where tunnelctl looked for one.
    empty = core.workdir / "empty-data"
    empty.mkdir()
    r = ctl(core, "tunnels", "list", data_dir=empty)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stderr.startswith("tunnelctl: 401"), r.stderr
    assert re.search(re.escape(str(empty / "admin.key")) + " cannot be read", r.stderr), r.stderr
    # A wrong key: 401 names its source.
    r = ctl(core, "tunnels", "list", env={"TUNNEL_API_KEY": "tnk_wrong"})
    assert r.returncode == 1 and "the key used: TUNNEL_API_KEY" in r.stderr, r.stderr
    # Bad flags and values: exit 2.
    for args in (["tunnels", "list", "--bogus"], ["tunnels"], ["--output", "yaml", "tunnels",
                                                               "list"],
                 ["tunnels", "update", "1"], ["--key-file", core.workdir / "nope", "tunnels",
                                              "list"]):
        r = ctl(core, *args)
        assert r.returncode == 2 and r.stderr, (args, r.stdout, r.stderr)
    # Nothing listening: the URL and the reason, exit 1.
    port = client.free_port()
    r = ctl(core, "--server", "http://127.0.0.1:%d" % port, "tunnels", "list", server=False)
    assert r.returncode == 1, r.stderr
    assert ("cannot reach http://127.0.0.1:%d: connecting: " % port) in r.stderr, r.stderr


def test_defaults_the_key_file_from_data_dir_and_the_server_from_the_environment(tunnel):
    core = tunnel.core()
    env = {"TUNNEL_API_URL": "http://127.0.0.1:%d" % core.admin_port}
    # No --server: TUNNEL_API_URL; no key flag: <--data-dir>/admin.key.
    r = ctl(core, "tunnels", "list", env=env, server=False)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["items"] == []
    # --key-file and TUNNEL_API_KEY work too.
    key = (core.data_dir / "admin.key").read_text().strip()
    r = ctl(core, "--key-file", core.data_dir / "admin.key", "accounts", "list",
            data_dir=core.workdir / "none")
    assert r.returncode == 0, r.stderr
    assert "operator" in [a["name"] for a in json.loads(r.stdout)["items"]], r.stdout
    r = ctl(core, "keys", "list", env={"TUNNEL_API_KEY": key}, data_dir=core.workdir / "none")
    assert r.returncode == 0 and len(json.loads(r.stdout)["items"]) >= 1, r.stderr


def test_https_servers_are_verified(tunnel):
    # The core's agent listener speaks TLS with <data_dir>/tls.crt (for 127.0.0.1): enough to
    # see the certificate checked; what answers after the handshake is not the API.
    core = tunnel.core()
    url = "https://127.0.0.1:%d" % core.ports["agent"]
    r = ctl(core, "--server", url, "--timeout", "3", "tunnels", "list", server=False)
    assert r.returncode == 1, r.stderr
    assert ("cannot reach %s: TLS handshake: " % url) in r.stderr, r.stderr
    assert "certificate verify failed" in r.stderr, r.stderr
    r = ctl(core, "--server", url, "--ca", core.ca, "--timeout", "3", "tunnels", "list",
            server=False)
    assert r.returncode == 1 and "TLS handshake" not in r.stderr, r.stderr
    r = ctl(core, "--server", url, "--insecure", "--timeout", "3", "tunnels", "list",
            server=False)
    assert r.returncode == 1 and "TLS handshake" not in r.stderr, r.stderr
    assert "warning: --insecure" in r.stderr, r.stderr
