"""A throwaway PostgreSQL 15 cluster for tests: initdb into a temp dir, pg_ctl start on a free
loopback port (as the postgres user when run as root, since initdb refuses root), stopped at
the end. `Cluster.available()` says why not when the binaries are missing, so that a test
skips cleanly; CI installs them (scripts/install-deps.sh)."""
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from harness import client

PG_BIN = Path(os.environ.get("TUNNEL_PG_BIN", "/usr/lib/postgresql/15/bin"))


class Cluster:
    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="tunnel-pg-"))
        self.port = client.free_port()
        self.data = self.dir / "data"
        self.started = False
        self._next = 0
        self._as = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    @staticmethod
    def available():
        """"" when PostgreSQL can run here; why not otherwise."""
        if not os.access(PG_BIN / "initdb", os.X_OK):
            return "PostgreSQL 15 is not installed (no %s)" % (PG_BIN / "initdb")
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return "running as root and there is no postgres user"
        return ""

    def _run(self, *argv, timeout=60):
        cp = subprocess.run(self._as + [str(a) for a in argv], capture_output=True, text=True,
                            timeout=timeout)
        if cp.returncode != 0:
            raise RuntimeError("%s failed: %s%s" % (argv[0], cp.stdout, cp.stderr))
        return cp

    def start(self):
        self._run(PG_BIN / "initdb", "-D", self.data, "-U", "tunnel", "--auth=trust", "-E",
                  "UTF8", "--no-sync")
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.data / "server.log", "-w",
                  "-o", "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off"
                  % (self.port, self.dir), "start")
        self.started = True
        return self

    def url(self, database):
        return "postgresql://tunnel@127.0.0.1:%d/%s" % (self.port, database)

    def psql(self, sql, database="postgres"):
        return self._run(PG_BIN / "psql", "-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-p",
                         self.port, "-U", "tunnel", "-d", database, "-c", sql).stdout.strip()

    def new_database(self):
        self._next += 1
        name = "t%d_%d" % (os.getpid(), self._next)
        self.psql("CREATE DATABASE %s" % name)
        return self.url(name)

    def stop(self):
        if self.started:
            subprocess.run(self._as + [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m",
                                       "immediate", "-w", "stop"], capture_output=True,
                           timeout=60)
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)
