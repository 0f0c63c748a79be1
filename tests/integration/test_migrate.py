"""`tunnel-core migrate` (issue #17): brings the store to the binary's schema; exit 0 done,
1 failed (with a message naming the problem), 2 bad usage. The core migrates at start too."""
import sqlite3
import subprocess

from harness.procs import clean_env


def migrate(bin_dir, cwd, *args):
    return subprocess.run([bin_dir / "tunnel-core", "migrate", *args], capture_output=True,
                          text=True, timeout=60, env=clean_env(), cwd=cwd)


def schema_version(db):
    with sqlite3.connect(db) as c:
        return c.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]


def test_migrate_creates_the_store_and_is_idempotent(bin_dir, tmp_path):
    data = tmp_path / "data"
    cp = migrate(bin_dir, tmp_path, "--data-dir", str(data))
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "schema version 0 -> " in cp.stdout
    db = data / "store.db"
    assert (db.stat().st_mode & 0o777) == 0o600
    assert (data / "store.key").stat().st_mode & 0o777 == 0o600
    latest = schema_version(db)
    assert latest >= 1
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cp = migrate(bin_dir, tmp_path, "--data-dir", str(data))
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "up to date" in cp.stdout


def test_migrate_reads_the_data_dir_from_the_config(bin_dir, tmp_path):
    cfg = tmp_path / "core.yaml"
    cfg.write_text("data_dir: %s\n" % (tmp_path / "from-config"))
    cp = migrate(bin_dir, tmp_path, "--config", str(cfg))
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert (tmp_path / "from-config" / "store.db").exists()


def test_a_newer_schema_is_refused_naming_both_versions(bin_dir, tmp_path):
    data = tmp_path / "data"
    assert migrate(bin_dir, tmp_path, "--data-dir", str(data)).returncode == 0
    latest = schema_version(data / "store.db")
    with sqlite3.connect(data / "store.db") as c:
        c.execute("INSERT INTO schema_version VALUES (?, 0)", (latest + 5,))
    cp = migrate(bin_dir, tmp_path, "--data-dir", str(data))
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert "version %d, newer than this binary's %d" % (latest + 5, latest) in cp.stderr


def test_bad_usage_exits_2(bin_dir, tmp_path):
    cp = migrate(bin_dir, tmp_path, "--bogus")
    assert cp.returncode == 2 and cp.stderr.strip()
    bad = tmp_path / "bad.yaml"
    bad.write_text("store: {url: \"mysql://db/x\"}\n")
    cp = migrate(bin_dir, tmp_path, "--config", str(bad))
    assert cp.returncode == 2 and "store.url" in cp.stderr, cp.stderr


def test_an_unreachable_database_fails_with_its_address(bin_dir, tmp_path):
    cfg = tmp_path / "core.yaml"
    cfg.write_text("data_dir: %s\nstore: {url: \"postgres://tunnel:pw@127.0.0.1:1/x\"}\n"
                   % (tmp_path / "d"))
    cp = migrate(bin_dir, tmp_path, "--config", str(cfg))
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert "postgres://tunnel@127.0.0.1:1/x: cannot connect" in cp.stderr, cp.stderr
    assert ":pw@" not in cp.stderr


def test_the_core_migrates_an_existing_store_at_start(tunnel, bin_dir, tmp_path):
    # With the admin listener (the default) the core makes one for the API (test_api.py has
    # a core without it, which makes none).
    plain = tunnel.core(name="plain")
    assert (plain.data_dir / "store.db").exists()
    # With one, the core opens it at start: a schema newer than the binary stops it.
    data = tmp_path / "newer-data"
    assert migrate(bin_dir, tmp_path, "--data-dir", str(data)).returncode == 0
    latest = schema_version(data / "store.db")
    with sqlite3.connect(data / "store.db") as c:
        c.execute("INSERT INTO schema_version VALUES (?, 0)", (latest + 1,))
    cp = subprocess.run([bin_dir / "tunnel-core", "--data-dir", str(data), "--agent-addr",
                         "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", ""],
                        capture_output=True, text=True, timeout=60, env=clean_env(),
                        cwd=tmp_path)
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert "store: the store's schema is version %d, newer than this binary's %d" % (
        latest + 1, latest) in cp.stderr


CONFIG = """\
listen: {{agent: "{agent}", http: "{http}", admin: "{admin}"}}
accounts:
  - {{name: alice, tokens: ["alice-secret-token-0123"]}}
  - {{name: bob, tokens: ["bob-secret-token-01234"]}}
"""


def test_the_files_accounts_become_configured_in_an_existing_store(tunnel, bin_dir):
    from harness.procs import Core
    core = tunnel.add(Core(tunnel.workdir, name="cfg", config_text=CONFIG))
    assert migrate(bin_dir, tunnel.workdir, "--data-dir", str(core.data_dir)).returncode == 0
    core.start()
    with sqlite3.connect(core.data_dir / "store.db") as c:
        rows = c.execute("SELECT name, configured FROM accounts ORDER BY name").fetchall()
    assert rows == [("alice", 1), ("bob", 1), ("operator", 0)]
