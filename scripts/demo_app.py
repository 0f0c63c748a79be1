#!/usr/bin/env python3
"""The demo's local app: a tiny page served on a loopback port, so the tunnel has
something to show. Prints "listening PORT" once bound (port 0 picks a free one)."""
import argparse
import datetime
import html
import http.server

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>tunnel demo</title>
<style>body{{font-family:sans-serif;max-width:46em;margin:3em auto;line-height:1.5}}
td{{padding:0 1em 0 0;vertical-align:top}} code{{background:#eee;padding:0 .2em}}</style></head>
<body><h1>It works: this page came through the tunnel</h1>
<p>Served by <code>scripts/demo_app.py</code> on <code>{local}</code> at {now}, reached through
tunnel-core and tunnel-agent.</p>
<h2>What the app saw</h2><p><code>{method} {path}</code></p>
<table>{rows}</table></body></html>
"""


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "demo-app"

    def do_GET(self):
        rows = "".join("<tr><td><code>%s</code></td><td>%s</td></tr>" % (html.escape(k), html.escape(v))
                       for k, v in self.headers.items())
        body = PAGE.format(local="%s:%d" % self.server.server_address, method=self.command,
                           path=html.escape(self.path), rows=rows,
                           now=datetime.datetime.now().strftime("%H:%M:%S")).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, fmt, *args):
        pass  # the agent already prints one line per request


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    print("listening %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
