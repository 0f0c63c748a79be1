"""Public HTTPS: the certificate is chosen by SNI among tls.certificates, and requests reach
the agent's app with X-Forwarded-Proto https (issue #2)."""
import json
import socket
import ssl
import subprocess

from harness import client
from harness.procs import Core, Proc

CONFIG = """\
domain: localhost
listen: {{agent: "{agent}", http: "{http}", https: "{https}", admin: "{admin}"}}
tls:
  certificates:
    - {{hostnames: ["*.alpha.test"], cert: "%(dir)s/alpha.crt", key: "%(dir)s/alpha.key"}}
    - {{hostnames: ["app.localhost"], cert: "%(dir)s/app.crt", key: "%(dir)s/app.key"}}
accounts:
  - {{name: default, tokens: ["test-agent-token"], domains: ["*.alpha.test"]}}
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

    tunnel.agent(core, origin.addr, subdomain="app", name="agent-app", token="test-agent-token")
    status, body = https_get(https_port, "app.localhost", tmp_path / "app.crt")
    assert status == 200, body
    seen = json.loads(body)
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["x-forwarded-proto"] == "https"
    assert headers["host"] == "app.localhost"

    # A custom domain the account owns, served over HTTPS with its wildcard certificate.
    tunnel.agent(core, origin.addr, name="agent-alpha", token="test-agent-token", wait=False,
                 extra_args=["--hostname", "www.alpha.test"])

    def routed():
        try:
            return https_get(https_port, "www.alpha.test", tmp_path / "alpha.crt")[0] == 200
        except OSError:
            return False
    client.wait_for(routed, 20, what="www.alpha.test to be routed over HTTPS")


# --- Hardening of every server context (issue #16 section 4, issue #25 Low "TLS") ---

CHAIN_CONFIG = """\
domain: localhost
listen: {{agent: "{agent}", http: "{http}", https: "{https}", admin: "{admin}"}}
tls:
  certificates:
    - {{hostnames: ["chain.test"], cert: "%(dir)s/chain.pem", key: "%(dir)s/leaf.key"}}
    - {{hostnames: ["app.localhost"], cert: "%(dir)s/app.crt", key: "%(dir)s/app.key"}}
accounts:
  - {{name: default, tokens: ["test-agent-token"]}}
"""


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=str(cwd))


def make_chain(d):
    """root CA -> intermediate CA -> leaf for chain.test; chain.pem = leaf + intermediate."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    (d / "ca.ext").write_text("basicConstraints=critical,CA:true\n"
                              "keyUsage=critical,keyCertSign,cRLSign\n")
    (d / "leaf.ext").write_text("basicConstraints=CA:false\nsubjectAltName=DNS:chain.test\n"
                                "extendedKeyUsage=serverAuth\n")
    openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=Test Root",
            "-addext", "basicConstraints=critical,CA:true",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout", "root.key", "-out", "root.pem", cwd=d)
    openssl("req", "-new", *ec, "-subj", "/CN=Test Intermediate", "-keyout", "int.key",
            "-out", "int.csr", cwd=d)
    openssl("x509", "-req", "-in", "int.csr", "-CA", "root.pem", "-CAkey", "root.key",
            "-CAcreateserial", "-days", "2", "-extfile", "ca.ext", "-out", "int.pem", cwd=d)
    openssl("req", "-new", *ec, "-subj", "/CN=chain.test", "-keyout", "leaf.key",
            "-out", "leaf.csr", cwd=d)
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "int.pem", "-CAkey", "int.key",
            "-CAcreateserial", "-days", "2", "-extfile", "leaf.ext", "-out", "leaf.pem", cwd=d)
    (d / "chain.pem").write_text((d / "leaf.pem").read_text() + (d / "int.pem").read_text())


def s_client(port, *args, stdin=b"Q\n"):
    return subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, *args],
                          input=stdin, capture_output=True, timeout=30)


def test_chain_is_served_with_and_without_sni(tunnel, tmp_path):
    make_chain(tmp_path)
    make_cert(tmp_path, "app", "app.localhost")
    core = tunnel.core(config_text=CHAIN_CONFIG % {"dir": tmp_path}, tokens=())
    port = core.ports["https"]
    root = str(tmp_path / "root.pem")
    for sni in (["-servername", "chain.test"], ["-noservername"],
                ["-servername", "unknown.example"]):
        r = s_client(port, "-verify_return_error", "-CAfile", root, *sni)
        out = r.stdout.decode(errors="replace")
        assert r.returncode == 0, (sni, out, r.stderr.decode(errors="replace"))
        assert "Verify return code: 0 (ok)" in out, (sni, out)
        assert "CN = Test Intermediate" in out, (sni, out)


def test_no_cbc_suites_and_no_session_tickets(tunnel, tmp_path):
    make_cert(tmp_path, "alpha", "www.alpha.test")
    make_cert(tmp_path, "app", "app.localhost")
    core = tunnel.core(config_text=CONFIG % {"dir": tmp_path}, tokens=())
    listeners = {"public https": (core.ports["https"], "app.localhost"),
                 "agent": (core.ports["agent"], "localhost")}
    for what, (port, name) in listeners.items():
        r = s_client(port, "-tls1_2", "-cipher", "AES128-SHA", "-servername", name)
        assert r.returncode != 0, (what, r.stdout.decode(errors="replace"))
        for suite in ("ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384"):
            r = s_client(port, "-tls1_2", "-cipher", suite, "-servername", name)
            assert r.returncode != 0, (what, suite, r.stdout.decode(errors="replace"))
        # An AEAD suite is accepted, and the server issues no TLS 1.2 session ticket.
        r = s_client(port, "-tls1_2", "-servername", name)
        out = r.stdout.decode(errors="replace")
        assert r.returncode == 0, (what, out, r.stderr.decode(errors="replace"))
        assert "GCM" in out or "CHACHA20" in out, (what, out)
        assert "TLS session ticket" not in out, (what, out)

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as s:
                assert not s.session.has_ticket, what


def test_bad_certificate_file_is_a_startup_error_naming_it(tunnel, tmp_path):
    make_cert(tmp_path, "alpha", "www.alpha.test")
    make_cert(tmp_path, "app", "app.localhost")
    (tmp_path / "app.crt").write_text("not a certificate\n")
    core = tunnel.add(Core(tunnel.workdir, config_text=CONFIG % {"dir": tmp_path}, tokens=()))
    Proc.start(core)
    assert core.wait_exit(30) != 0
    out = core.output()
    assert "tls.certificates[1]" in out and str(tmp_path / "app.crt") in out, out
