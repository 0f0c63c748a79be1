"""Processes: every child the suite starts is tracked and stopped (with its descendants) at
the end; CPU, RSS and fd readings come from /proc."""
import os
import select
import signal
import subprocess
import time

from .common import CLK_TCK, PAGE_KIB


def proc_stat(pid):
    """(ppid, utime+stime ticks, rss KiB) of a live pid, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[21]) * PAGE_KIB


def descendants(pid):
    """pid and every live descendant of it."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st:
                children.setdefault(st[0], []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        if proc_stat(p) is not None:
            out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid):
    """CPU (user+system) seconds of pid and its live descendants."""
    return sum((proc_stat(p) or (0, 0, 0))[1] for p in descendants(pid)) / CLK_TCK


def rss_kib(pid, tree=False):
    """VmRSS of pid (from /proc/PID/status), or the sum over its tree."""
    if tree:
        return sum((proc_stat(p) or (0, 0, 0))[2] for p in descendants(pid))
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def settle(pid, seconds=1.0):
    """VmRSS of pid after `seconds` at rest."""
    time.sleep(seconds)
    return rss_kib(pid)


def cpu_delta(before, after):
    """CPU seconds per role between two snapshots ({role: seconds})."""
    return {r: round(after[r] - before[r], 3) for r in before}


def rss_detail(pid):
    """RssAnon (the process's own heap and stacks), RssFile (mapped binaries and libraries,
    shared with other processes) and Pss from /proc, in KiB."""
    out = {}
    for fname, keys in (("status", ("RssAnon", "RssFile")), ("smaps_rollup", ("Pss",))):
        try:
            with open("/proc/%d/%s" % (pid, fname)) as f:
                for line in f:
                    k = line.split(":", 1)[0]
                    if k in keys:
                        out[k.lower() + "_kib"] = int(line.split()[1])
        except OSError:
            pass
    return out


class Procs:
    def __init__(self, tmp):
        self.tmp = tmp
        self.started = []  # (name, Popen, log file)

    def start(self, name, argv, stdin=subprocess.DEVNULL, stdout=None, env=None):
        logf = open(self.tmp / ("%s.log" % name), "ab")
        p = subprocess.Popen([str(a) for a in argv], stdin=stdin,
                             stdout=stdout if stdout is not None else logf, stderr=logf,
                             cwd=self.tmp, env=env, start_new_session=True)
        self.started.append((name, p, logf))
        return p

    def log_tail(self, name, lines=20):
        try:
            text = (self.tmp / ("%s.log" % name)).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, p, timeout=10.0):
        """SIGTERM to the process and its descendants (sshd's session children leave its
        process group), SIGKILL what is left after timeout."""
        pids = descendants(p.pid) if p.poll() is None else []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p.poll()
            if all(proc_stat(pid) is None or pid == p.pid and p.returncode is not None
                   for pid in pids):
                break
            time.sleep(0.05)
        for pid in pids:
            if proc_stat(pid) is not None and not (pid == p.pid and p.poll() is not None):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def stop_all(self):
        for name, p, logf in reversed(self.started):
            self.stop(p)
            logf.close()
        self.started = []


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return 0


class LineReader:
    """Reads lines from a child's stdout with a timeout (select on the raw fd)."""

    def __init__(self, f):
        self.fd = f.fileno()
        self.buf = b""

    def readline(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    return None
                self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode(errors="replace")
