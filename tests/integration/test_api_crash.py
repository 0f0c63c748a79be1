"""Crash safety of the control plane (issue 17): the core is killed with SIGKILL while API
writes run on several connections; after a restart the store opens and every write the API
acknowledged (201) is there, with what it said; nothing half-written shows."""
import http.client
import json
import threading
import time


def post(core, key, body):
    conn = http.client.HTTPConnection("127.0.0.1", core.admin_port, timeout=5)
    try:
        conn.request("POST", "/api/v1/tunnels", body=json.dumps(body),
                     headers={"Authorization": "Bearer " + key,
                              "Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        conn.close()


def get(core, key, path):
    conn = http.client.HTTPConnection("127.0.0.1", core.admin_port, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": "Bearer " + key})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        conn.close()


def test_every_acknowledged_write_survives_kill_9(tunnel):
    core = tunnel.core()
    key = (core.data_dir / "admin.key").read_text().strip()
    acknowledged = {}
    lock = threading.Lock()
    stop = threading.Event()

    def writer(n):
        i = 0
        while not stop.is_set():
            name = "w%d-%d" % (n, i)
            i += 1
            try:
                status, body = post(core, key, {"name": name, "type": "http"})
            except OSError:
                return  # the core is gone: the answer never came, so nothing was promised
            if status == 201:
                with lock:
                    acknowledged[body["id"]] = name

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    core.kill()
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert len(acknowledged) >= 10, "too few writes before the kill: %d" % len(acknowledged)

    core.start()
    for tunnel_id, name in acknowledged.items():
        status, body = get(core, key, "/api/v1/tunnels/%s" % tunnel_id)
        assert status == 200, (tunnel_id, name, status, body)
        assert body["name"] == name, body
    # The list agrees: every tunnel it holds is whole (a name, an id), and none is missing.
    names = set()
    path = "/api/v1/tunnels"
    while path:
        status, page = get(core, key, path)
        assert status == 200, page
        names |= {t["name"] for t in page["items"]}
        path = "/api/v1/tunnels?cursor=%s" % page["next_cursor"] if page["next_cursor"] else None
    assert set(acknowledged.values()) <= names
