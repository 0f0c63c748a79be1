"""Recording on the core and `tunnel-core replay` (issue #20): traffic through a real agent is
written to <data_dir>/recordings/<host>/ as JSON lines (redacted, bodies cut at the cap), the
files rotate at their bounds, a recording file nobody reads does not slow proxying (exchanges
are skipped and counted), and replay reports no difference against the same app and the
differences against a changed one."""
import json
import os
import stat
import subprocess
import time

from harness import client
from harness.procs import bin_dir
from harness.raw import core_config, sample

ACCOUNT = "name: default\ntokens: [test-agent-token]\n"


def recording_core(tunnel, host, rule, queue=1024):
    extra = ("recording:\n  queue: %d\n  tunnels:\n    - hosts: [%s]\n" % (queue, host)
             + "".join("      %s\n" % line for line in rule))
    return tunnel.core(config_text=core_config([ACCOUNT], extra))


def counted(core, name, host):
    return sample(core, 'tunnel_recording_%s_total{tunnel="%s"}' % (name, host))


def replay(*args):
    return subprocess.run([str(bin_dir() / "tunnel-core"), "replay", *map(str, args)],
                          capture_output=True, text=True, timeout=30)


def test_traffic_is_recorded_rotated_and_replayed(tunnel, origin):
    core = recording_core(tunnel, "rec.localhost",
                          ["max_file_size: 4KiB", "max_files: 3", "body_cap: 1KiB"])
    agent = tunnel.agent(core, origin.addr, subdomain="rec", wait=False)
    core.wait_routed("rec", path="/status/200", agent=agent)  # recorded too: one exchange
    # Each kind of exchange the replay must reproduce; the agent's tunnel is "rec".
    sent = [("GET", "/status/200", None), ("GET", "/status/404", None),
            ("POST", "/upload", b"u" * 900), ("GET", "/chunked", None),
            ("GET", "/download?bytes=3000&seed=1", None), ("PUT", "/upload", b"small")]
    for i in range(2):
        for method, path, body in sent:
            r = core.request("rec", method, path, body,
                             headers={"Authorization": "Bearer secret-%d" % i,
                                      "Cookie": "session=secret"})
            assert r.status in (200, 404), (path, r.status)
    total = 2 * len(sent) + 1
    client.wait_for(lambda: counted(core, "written", "rec.localhost") == total, 10,
                    what="every exchange written")
    assert counted(core, "skipped", "rec.localhost") == 0

    folder = core.data_dir / "recordings" / "rec.localhost"
    names = sorted(os.listdir(folder))
    assert "current.jsonl" in names
    rotated = [n for n in names if n != "current.jsonl"]
    assert len(rotated) == 3, names  # rotated at 4 KiB, the oldest beyond 3 deleted
    lines = []
    for name in rotated + ["current.jsonl"]:
        data = (folder / name).read_bytes()
        assert len(data) <= 4096, (name, len(data))
        assert b"secret" not in data
        lines += [json.loads(line) for line in data.splitlines()]
    assert 4 <= len(lines) < total
    for line in lines:
        assert line["tunnel"] == "rec.localhost"
        headers = dict(line["request"]["headers"])
        assert headers["Authorization"] == "[redacted]"
        assert headers["Cookie"] == "[redacted]"
        assert line["complete"] is True
    by_target = {line["target"]: line for line in lines}
    if "/chunked" in by_target:  # the framing is removed
        assert b"\r\n0\r\n" not in client_b64(by_target["/chunked"]["response"]["body"])
    if "/download?bytes=3000&seed=1" in by_target:
        body = by_target["/download?bytes=3000&seed=1"]["response"]["body"]
        assert body["size"] == 3000 and body["cut"] is True
        assert len(client_b64(body)) == 1024

    # The same app: nothing differs. The directory replays its files oldest first.
    same = replay(folder, "--to", "http://%s" % origin.addr, "--concurrency", "2")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "0 differed" in same.stdout, same.stdout
    assert "p99" in same.stdout

    # A changed app: the bodies name the other origin.
    changed = tunnel.origin("B")
    diff = replay(folder, "--to", "http://%s" % changed.addr, "--json",
                  "--filter", "path=/status/*")
    assert diff.returncode == 1, diff.stdout + diff.stderr
    report = json.loads(diff.stdout)
    assert report["replayed"] == report["differing"] >= 1
    for m in report["mismatches"]:
        assert m["target"].startswith("/status/")
        assert any(d.startswith("body differs at byte") and "from A" in d and "from B" in d
                   for d in m["differences"]), m
    bad = replay(folder, "--to", "http://%s" % origin.addr, "--rate", "fast")
    assert bad.returncode == 2 and "--rate" in bad.stderr


def client_b64(body):
    import base64
    return base64.b64decode(body["data"])


def test_a_recording_file_nobody_reads_does_not_slow_proxying(tunnel, origin):
    host = "slow.localhost"
    # The core's recording file is a FIFO that the test holds open and never reads: the writer
    # fills the pipe, then each line waits out its stall and the queue (4) overflows.
    core = recording_core(tunnel, host, ["body_cap: 64KiB"], queue=4)
    folder = core.data_dir / "recordings" / host
    folder.mkdir(parents=True)
    fifo = folder / "current.jsonl"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        agent = tunnel.agent(core, origin.addr, subdomain="slow", wait=False)
        core.wait_routed("slow", path="/status/200", agent=agent)
        body = b"x" * 32 * 1024
        n = 40
        start = time.monotonic()
        for _ in range(n):
            r = core.request("slow", "POST", "/upload", body)
            assert r.status == 200
        elapsed = time.monotonic() - start
        # Proxying went on at its pace (each line the writer gives up on waits 200 ms; 40 of
        # them in line would take 8 s).
        assert elapsed < 4, elapsed
        client.wait_for(lambda: counted(core, "written", host) + counted(core, "skipped", host)
                        == n + 1, 10, what="every exchange written or skipped")
        assert counted(core, "skipped", host) >= n // 2
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    finally:
        os.close(reader)
