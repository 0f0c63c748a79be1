"""Public HTTPS: the certificate is chosen by SNI among tls.certificates, and requests reach
the agent's app with X-Forwarded-Proto https (issue #2)."""
import json
import socket
import ssl
import subprocess

from harness import client

CONFIG = """\
domain: localhost
listen: {{agent: "{agent}", http: "{http}", https: "{https}", admin: "{admin}"}}
tls:
  certificates:
    - {{hostnames: ["*.alpha.test"], cert: "%(dir)s/alpha.crt", key: "%(dir)s/alpha.key"}}
    - {{hostnames: ["app.localhost"], cert: "%(dir)s/app.crt", key: "%(dir)s/app.key"}}
accounts:
  - {{name: default, tokens: ["test-token"], domains: ["*.alpha.test"]}}
"""


def make_cert(directory, name, cn):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=%s" % cn, "-addext", "subjectAltName=DNS:%s" % cn,
                    "-keyout", str(directory / ("%s.key" % name)),
                    "-out", str(directory / ("%s.crt" % name))],
                   check=True, capture_output=True)


def served_cert_cn(port, server_name):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as s:
            der = s.getpeercert(binary_form=True)
    text = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject"],
                          input=der, capture_output=True, check=True).stdout.decode()
    return text.strip()


def https_get(port, host, cafile, path="/echo"):
    ctx = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as s:
            s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                       % (path, host)).encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def test_sni_picks_the_certificate_and_proxies(tunnel, origin, tmp_path):
    make_cert(tmp_path, "alpha", "www.alpha.test")
    make_cert(tmp_path, "app", "app.localhost")
    core = tunnel.core(config_text=CONFIG % {"dir": tmp_path}, tokens=())
    https_port = core.ports["https"]
    assert "www.alpha.test" in served_cert_cn(https_port, "www.alpha.test")
    assert "app.localhost" in served_cert_cn(https_port, "app.localhost")

    tunnel.agent(core, origin.addr, subdomain="app", name="agent-app", token="test-token")
    status, body = https_get(https_port, "app.localhost", tmp_path / "app.crt")
    assert status == 200, body
    seen = json.loads(body)
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["x-forwarded-proto"] == "https"
    assert headers["host"] == "app.localhost"

    # A custom domain the account owns, served over HTTPS with its wildcard certificate.
    tunnel.agent(core, origin.addr, name="agent-alpha", token="test-token", wait=False,
                 extra_args=["--hostname", "www.alpha.test"])

    def routed():
        try:
            return https_get(https_port, "www.alpha.test", tmp_path / "alpha.crt")[0] == 200
        except OSError:
            return False
    client.wait_for(routed, 20, what="www.alpha.test to be routed over HTTPS")
