"""Authentication and tenancy: a wrong token, and an account trying to take another
account's hostname (issue #2, tests 9-10)."""
import json

ACCOUNTS = """\
domain: localhost
listen: {{agent: "{agent}", http: "{http}", https: "{https}", admin: "{admin}"}}
accounts:
  - {{name: alice, tokens: ["alice-secret-token"], subdomains: ["*"]}}
  - {{name: bob, tokens: ["bob-secret-token"], subdomains: ["bob-*"]}}
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
    tunnel.agent(core, origin.addr, subdomain="shared", name="agent-alice", token="alice-secret-token")
    assert json.loads(core.request("shared").body)["origin"] == "A"

    thief = tunnel.agent(core, b.addr, subdomain="shared", name="agent-bob-shared",
                         token="bob-secret-token", wait=False)
    out = _refused(thief)
    assert "shared" in out, "the refusal does not name the subdomain:\n" + out

    outside = tunnel.agent(core, b.addr, subdomain="alice-app", name="agent-bob-outside",
                           token="bob-secret-token", wait=False)
    out = _refused(outside)
    assert "alice-app" in out, "the refusal does not name the subdomain:\n" + out

    # alice keeps her name; bob may use his own namespace
    for _ in range(10):
        r = core.request("shared")
        assert r.status == 200 and json.loads(r.body)["origin"] == "A", r.text()
    assert core.request("alice-app").status == 404
    tunnel.agent(core, b.addr, subdomain="bob-app", name="agent-bob-ok", token="bob-secret-token")
    assert json.loads(core.request("bob-app").body)["origin"] == "B"


def test_token_files_keep_tokens_off_the_command_line(tunnel, origin, tmp_path):
    """--token-file on both binaries (issue #25 Low, tokens): the token never appears in argv,
    and --token on the command line is warned about."""
    secret = "token-from-a-file-0123456789"
    (tmp_path / "core.token").write_text(secret + "\n")
    (tmp_path / "agent.token").write_text("  %s  \n" % secret)
    core = tunnel.core(tokens=(), extra_args=["--token-file", str(tmp_path / "core.token")])
    agent = tunnel.agent(core, origin.addr, subdomain="app", name="agent-file", token="",
                         extra_args=["--token-file", str(tmp_path / "agent.token")])
    assert core.request("app").status == 200
    for p in (core, agent):
        assert secret not in " ".join(p.argv)
        assert "--token puts the token on the command line" not in p.output()

    warned = tunnel.core(name="core-flag")  # the harness passes --token test-agent-token
    warned.wait_output("--token puts the token on the command line")


def test_token_file_errors_name_the_file(tunnel, core, origin, tmp_path):
    missing = tmp_path / "missing.token"
    bad = tunnel.agent(core, origin.addr, subdomain="x", name="agent-missing", wait=False,
                       token="", extra_args=["--token-file", str(missing)])
    out = _refused(bad)
    assert "--token-file" in out and str(missing) in out, out
    (tmp_path / "empty.token").write_text("\n \n")
    empty = tunnel.agent(core, origin.addr, subdomain="y", name="agent-empty", wait=False,
                         token="", extra_args=["--token-file", str(tmp_path / "empty.token")])
    out = _refused(empty)
    assert "no token in the file" in out, out


def _auth_reply(core, token):
    from harness import v1client
    sock = v1client.connect_tls(core.agent_addr, core.ca)
    try:
        body = json.dumps({"token": token, "agent_id": "guesser", "version": "1.0.0"}).encode()
        sock.sendall(v1client.encode(v1client.AUTH, 0, 0, body))
        ftype, flags, _, payload = v1client.read_frame(sock)
        assert ftype == v1client.AUTH and flags & v1client.ACK
        return json.loads(payload)
    finally:
        sock.close()


def test_failed_auths_are_throttled_per_address(tunnel, core):
    """Issue #25 Low, tokens: after 10 failures from one address its AUTHs are refused before
    the token is checked (even a right one), and the failures are not each logged at warn."""
    for i in range(10):
        reply = _auth_reply(core, "wrong-guess-%d" % i)
        assert not reply["success"] and "invalid token" in reply["error"], (i, reply)
    reply = _auth_reply(core, "wrong-guess-10")
    assert not reply["success"]
    assert reply["error"].startswith("too many failed authentications from this address"), reply
    reply = _auth_reply(core, core.tokens[0])
    assert reply["error"].startswith("too many failed authentications"), reply
    logged = core.output().count("refused: authentication failed")
    assert logged == 1, core.tail(40)
    assert core.alive()


def test_readable_jwt_secret_file_is_warned_about(tunnel, tmp_path):
    secret = tmp_path / "jwt.secret"
    secret.write_text("0123456789abcdef0123456789abcdef\n")
    secret.chmod(0o644)
    config = ("domain: localhost\n"
              'listen: {{agent: "{agent}", http: "{http}", https: "{https}", admin: "{admin}"}}\n'
              "auth: {{jwt_secret_file: \"%s\"}}\n"
              "accounts: [{{name: default, tokens: [\"test-agent-token\"]}}]\n" % secret)
    core = tunnel.core(config_text=config, tokens=())
    core.wait_output(r"auth.jwt_secret_file .* has mode 0644, readable by other users")
