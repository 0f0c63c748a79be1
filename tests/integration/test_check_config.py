"""`tunnel-core check-config FILE` (issue #2, test 14): errors as FILE:LINE:COL: message."""
import re
import subprocess

import pytest

from harness.procs import clean_env

GOOD = """\
domain: localhost
listen: {agent: "127.0.0.1:7000", http: "127.0.0.1:8080", admin: "127.0.0.1:9090"}
accounts:
  - {name: alice, tokens: ["alice-secret-token"], subdomains: ["*"]}
"""


def check(bin_dir, path):
    return subprocess.run([bin_dir / "tunnel-core", "check-config", path], capture_output=True,
                          text=True, timeout=30, env=clean_env(), cwd=path.parent)


def test_good_config_is_ok(bin_dir, tmp_path):
    f = tmp_path / "good.yaml"
    f.write_text(GOOD)
    cp = check(bin_dir, f)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "ok" in (cp.stdout + cp.stderr).lower()


@pytest.mark.parametrize("text,line", [
    # a value that is not an address, on line 3
    ("domain: localhost\nlisten:\n  http: \"not an address\"\n", 3),
    # an account without tokens, on line 5 (the list item starts there)
    (GOOD + "  - {name: bob, subdomains: [\"bob-*\"]}\n", 5),
    # broken YAML: an unclosed flow sequence; the line is wherever the parser noticed
    ("domain: localhost\naccounts: [\n  {name: a\n", None),
], ids=["bad-address", "account-without-tokens", "yaml-syntax"])
def test_bad_config_names_file_and_line(bin_dir, tmp_path, text, line):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    cp = check(bin_dir, f)
    out = cp.stdout + cp.stderr
    assert cp.returncode != 0, "check-config accepted a bad file:\n" + out
    rx = r"%s:%s:\d+: \S" % (re.escape(str(f)), line if line else r"\d+")
    assert re.search(rx, out), "no %s in:\n%s" % (rx, out)


@pytest.mark.parametrize("args", [
    ["--bogus"],
    ["--config", "does-not-exist.yaml"],
    ["--workers", "-3"],
    ["check-config"],
    ["--header-timeout", "10"],
], ids=["unknown-flag", "missing-config-file", "negative-workers", "check-config-no-file",
        "duration-without-unit"])
def test_bad_flags_exit_2(bin_dir, tmp_path, args):
    # 2 is what the systemd unit's RestartPreventExitStatus expects (CLI11 used 104-109).
    cp = subprocess.run([bin_dir / "tunnel-core"] + args, capture_output=True, text=True,
                        timeout=30, env=clean_env(), cwd=tmp_path)
    assert cp.returncode == 2, (cp.returncode, cp.stdout, cp.stderr)
    assert cp.stderr.strip(), "the error must say what is wrong"


def test_help_and_version_exit_0(bin_dir, tmp_path):
    for flag in ("--help", "--version"):
        cp = subprocess.run([bin_dir / "tunnel-core", flag], capture_output=True, text=True,
                            timeout=30, env=clean_env(), cwd=tmp_path)
        assert cp.returncode == 0, (flag, cp.stdout, cp.stderr)
    assert cp.stdout.startswith("tunnel-core ")


def test_weak_tokens_are_refused_by_check_config_and_at_start(bin_dir, tmp_path):
    """Issue #25 Low, tokens: a short or blank token was accepted. check-config and the core's
    start refuse it, naming the account and the rule (never the token); so does --token."""
    f = tmp_path / "weak.yaml"
    f.write_text(GOOD + '  - {name: bob, tokens: ["bob-pass"], subdomains: ["bob"]}\n'
                 '  - {name: carol, tokens: ["                    "], subdomains: ["carol"]}\n')
    cp = check(bin_dir, f)
    out = cp.stdout + cp.stderr
    assert cp.returncode == 1, out
    assert re.search(r'weak\.yaml:5:\d+: accounts\[1\]\.tokens\[0\]: account "bob": the token '
                     r'is shorter than 16 characters \(it has 8\); tokens must be at least 16 '
                     r'characters', out), out
    assert re.search(r'weak\.yaml:6:\d+: accounts\[2\]\.tokens\[0\]: account "carol": the token '
                     r'is only whitespace', out), out
    assert "bob-pass" not in out
    start = subprocess.run([bin_dir / "tunnel-core", "--config", f, "--data-dir",
                            tmp_path / "data"], capture_output=True, text=True, timeout=30,
                           env=clean_env(), cwd=tmp_path)
    assert start.returncode != 0 and 'account "bob": the token is shorter than 16' in start.stderr
    flag = subprocess.run([bin_dir / "tunnel-core", "--token", "short", "--data-dir",
                           tmp_path / "data"], capture_output=True, text=True, timeout=30,
                          env=clean_env(), cwd=tmp_path)
    assert flag.returncode != 0, flag.stderr
    assert 'account "default": the token is shorter than 16 characters (it has 5)' in flag.stderr
    # A hand-written agent.token is the default account's token when no account is configured.
    data = tmp_path / "handmade"
    data.mkdir(mode=0o700)
    (data / "agent.token").write_text("letmein\n")
    (data / "agent.token").chmod(0o600)
    own = subprocess.run([bin_dir / "tunnel-core", "--data-dir", data, "--agent-addr",
                          "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", ""],
                         capture_output=True, text=True, timeout=30, env=clean_env(),
                         cwd=tmp_path)
    assert own.returncode != 0, own.stderr
    assert 'agent.token: the token of account "default" is shorter than 16 characters' \
        in own.stderr, own.stderr


@pytest.mark.parametrize("token", ["", " ", "\t "], ids=["empty", "space", "blank"])
def test_the_agent_refuses_an_empty_or_blank_token(bin_dir, tmp_path, token):
    cp = subprocess.run([bin_dir / "tunnel-agent", "http", "3000", "--server", "127.0.0.1:1",
                         "--insecure", "--token", token], capture_output=True, text=True,
                        timeout=30, env=clean_env(), cwd=tmp_path)
    assert cp.returncode == 2, (cp.returncode, cp.stderr)
    assert re.search(r"--token: the token is (empty|only whitespace); give the account's "
                     r"token", cp.stderr), cp.stderr
    env = clean_env({"TUNNEL_TOKEN": "   "})
    cp = subprocess.run([bin_dir / "tunnel-agent", "http", "3000", "--server", "127.0.0.1:1",
                         "--insecure"], capture_output=True, text=True, timeout=30, env=env,
                        cwd=tmp_path)
    assert cp.returncode == 2 and "token: only whitespace" in cp.stderr, cp.stderr
