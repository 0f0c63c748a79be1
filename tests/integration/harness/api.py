"""A client of the core's REST API for integration tests: one call with the bootstrap admin key."""

import http.client
import json


def call(core, method, path, body=None):
    """`method path` on the core's admin listener with <data_dir>/admin.key; returns (status, json)."""
    key = (core.data_dir / "admin.key").read_text().strip()
    conn = http.client.HTTPConnection("127.0.0.1", core.admin_port, timeout=10)
    headers = {"Authorization": "Bearer " + key}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    r = conn.getresponse()
    raw = r.read()
    conn.close()
    return r.status, (json.loads(raw) if raw else None)
