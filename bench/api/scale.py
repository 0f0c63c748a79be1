#!/usr/bin/env python3
"""API latency at scale (issue 17): creates N tunnels (default 10,000) through the REST API of
one core, then times creates at the end, list pages (first, middle by cursor, last), a full
walk of the list, and GET of one tunnel. One client, one kept-alive connection, so the
numbers are the core's per-request latency (the store, the snapshot rebuild, the live view).

    bench/api/scale.py [--tunnels 10000] [--bin-dir build/release/apps]
                       [--store-url postgres://...] [--json OUT]

Bounded: --timeout (default 900 s) for the whole run; every process it starts is stopped."""
import argparse
import json
import shutil
import sys
import time

from common import ROOT, Core, summary_ms, temp_dir

CONFIG = """listen:
  agent: "{agent}"
  http: "{http}"
  https: ""
  admin: "{admin}"
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tunnels", type=int, default=10000)
    ap.add_argument("--bin-dir", default=str(ROOT / "build/release/apps"))
    ap.add_argument("--store-url", default="", help="postgres://... (default: SQLite)")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()

    tmp = temp_dir()
    config = CONFIG + ('store:\n  url: "%s"\n' % args.store_url if args.store_url else "")
    core = Core(args.bin_dir, tmp, "core", config)
    deadline = time.monotonic() + args.timeout
    results = {"tunnels": args.tunnels, "store": "postgres" if args.store_url else "sqlite"}
    try:
        creates = []
        for i in range(args.tunnels):
            if time.monotonic() > deadline:
                raise RuntimeError("timed out after %d tunnels" % i)
            status, body, took = core.call("POST", "/api/v1/tunnels",
                                           {"name": "t%05d" % i, "type": "http"})
            if status != 201:
                raise RuntimeError("create %d: %d %s" % (i, status, body))
            creates.append(took)
            if (i + 1) % 1000 == 0:
                print("  %6d tunnels, last 1000 creates: p50 %.2f ms" % (
                    i + 1, summary_ms(creates[-1000:])["p50_ms"]), file=sys.stderr)
        results["create_first_1000"] = summary_ms(creates[:1000])
        results["create_last_1000"] = summary_ms(creates[-1000:])

        def timed(path, reps=50):
            times, body = [], None
            for _ in range(reps):
                status, body, took = core.call("GET", path)
                if status != 200:
                    raise RuntimeError("GET %s: %d %s" % (path, status, body))
                times.append(took)
            return summary_ms(times), body

        results["list_first_page_100"], first = timed("/api/v1/tunnels?limit=100")
        ids = [t["id"] for t in first["items"]]
        middle = ids[0] + args.tunnels // 2
        results["list_middle_page_100"], _ = timed("/api/v1/tunnels?limit=100&cursor=%d" % middle)
        results["list_last_page_100"], _ = timed(
            "/api/v1/tunnels?limit=100&cursor=%d" % (ids[0] + args.tunnels - 101))
        results["list_page_1000"], _ = timed("/api/v1/tunnels?limit=1000", reps=10)
        results["get_one"], _ = timed("/api/v1/tunnels/%d" % middle)

        walk_started = time.perf_counter()
        cursor, seen = None, 0
        while True:
            path = "/api/v1/tunnels?limit=1000" + ("&cursor=%s" % cursor if cursor else "")
            status, body, _ = core.call("GET", path)
            seen += len(body["items"])
            cursor = body["next_cursor"]
            if not cursor:
                break
        results["walk_all_pages_1000_s"] = round(time.perf_counter() - walk_started, 3)
        if seen != args.tunnels:
            raise RuntimeError("the walk saw %d tunnels, not %d" % (seen, args.tunnels))

        deletes = []
        for _ in range(20):
            status, body, took = core.call("POST", "/api/v1/tunnels",
                                           {"name": "extra%d" % len(deletes), "type": "http"})
            assert status == 201, body
            status, _, took_delete = core.call("DELETE", "/api/v1/tunnels/%d" % body["id"])
            assert status == 204
            deletes.append(took_delete)
        results["delete_at_scale"] = summary_ms(deletes)
    finally:
        core.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
