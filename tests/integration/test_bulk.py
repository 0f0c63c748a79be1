"""Big transfers and many concurrent requests (issue #2, tests 4-5)."""
import asyncio
import hashlib
import http.client
import io
import json
import time

import pytest

from harness import client, payload

DEADLINE = 300.0


def _report(capsys, text):
    with capsys.disabled():
        print("\n[throughput] " + text)


@pytest.mark.slow
def test_bulk_upload_with_100_continue(core, app, tmp_path, bulk_bytes, capsys):
    f = tmp_path / "upload.bin"
    digest = payload.write_file(f, bulk_bytes, seed=1)
    t0 = time.monotonic()
    # -T: PUT with Content-Length, streamed from the file; Expect asks for 100 Continue,
    # which must come back (from the core or relayed from the app) before the body.
    cp = client.curl("-v", "-T", f, "-H", "Expect: 100-continue", "--expect100-timeout", "30",
                     core.url("app", "/upload"), timeout=DEADLINE)
    secs = time.monotonic() - t0
    f.unlink()
    assert cp.returncode == 0, cp.stderr[-2000:]
    assert b"< HTTP/1.1 100 Continue" in cp.stderr, "no 100 Continue reached curl:\n%s" % \
        cp.stderr[-2000:].decode("latin-1")
    up = json.loads(cp.stdout)
    assert (up["length"], up["sha256"]) == (bulk_bytes, digest), up
    _report(capsys, "upload %d MiB in %.1fs: %.0f MB/s" % (bulk_bytes >> 20, secs,
                                                            bulk_bytes / secs / 1e6))


@pytest.mark.slow
def test_bulk_download(core, app, bulk_bytes, capsys):
    expected = payload.sha256_of(bulk_bytes, 2)
    conn = http.client.HTTPConnection("127.0.0.1", core.http_port, timeout=60)
    t0 = time.monotonic()
    try:
        conn.request("GET", "/download?bytes=%d&seed=2" % bulk_bytes,
                     headers={"Host": "app.localhost"})
        r = conn.getresponse()
        assert r.status == 200
        h = hashlib.sha256()
        n = 0
        while True:
            data = r.read(1 << 20)
            if not data:
                break
            h.update(data)
            n += len(data)
            assert time.monotonic() - t0 < DEADLINE, "download too slow: %d bytes" % n
    finally:
        conn.close()
    secs = time.monotonic() - t0
    assert (n, h.hexdigest()) == (bulk_bytes, expected)
    _report(capsys, "download %d MiB in %.1fs: %.0f MB/s" % (bulk_bytes >> 20, secs,
                                                              bulk_bytes / secs / 1e6))


async def _one(port, i, start: asyncio.Event):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await start.wait()
        writer.write(b"GET /echo?i=%d HTTP/1.1\r\nHost: app.localhost\r\nConnection: close\r\n\r\n" % i)
        await writer.drain()
        data = await reader.read()
    finally:
        writer.close()
    r = client.read_response(io.BytesIO(data))
    if r is None:
        return i, 0, "connection closed without a response"
    return i, r.status, json.loads(r.body)["path"] if r.status == 200 else r.text()[:200]


async def _many(port, n):
    start = asyncio.Event()
    tasks = [asyncio.create_task(_one(port, i, start)) for i in range(n)]
    await asyncio.sleep(0.5)  # let every connection open before any request is sent
    start.set()
    return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), DEADLINE)


@pytest.mark.slow
def test_500_concurrent_requests(core, app, capsys):
    n = 500
    t0 = time.monotonic()
    results = asyncio.run(_many(core.http_port, n))
    secs = time.monotonic() - t0
    bad = [r for r in results
           if isinstance(r, BaseException) or r[1] != 200 or r[2] != "/echo?i=%d" % r[0]]
    assert not bad, "%d of %d failed, first: %r" % (len(bad), n, bad[:5])
    _report(capsys, "%d concurrent requests in %.2fs" % (n, secs))
