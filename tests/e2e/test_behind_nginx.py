"""docs/deploy/nginx-homestream.conf in front of a real homestream, over TLS (SPEC 5.2 + issue 18 item 8).

Starts the real nginx (Debian `nginx-light`) with the shipped site file (ports, certificate paths and the IPv6
listens substituted: each substitution is asserted, so the test fails when the file drifts) and a self-signed
certificate made here, on random free 127.0.0.1 ports; checks a signed PUT, a GET, an SSE stream delivering each
event at once through the proxy, resume with Last-Event-ID, and that rate limits count the real client address
(clients connect from distinct loopback addresses; homestream trusts only nginx's 127.0.0.1).
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from .harness import ThreadServer, free_port
from .sse_client import SSEReader, events

SITE = Path(__file__).resolve().parents[2] / "docs" / "deploy" / "nginx-homestream.conf"
INSTALL = "apt-get update && apt-get install -y nginx-light"


def _nginx() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if found is None:
        pytest.skip(f"nginx is not installed (Debian: {INSTALL})")
    return found


def _certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip("neither the cryptography package nor the openssl command is available for a certificate")
        subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True)
        return cert, key
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
                   .sign(private, hashes.SHA256()))
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    return cert, key


def _site(upstream: int, http_port: int, tls_port: int, cert: Path, key: Path) -> str:
    text = SITE.read_text()
    swaps = [
        ("server 127.0.0.1:6286;", f"server 127.0.0.1:{upstream};"),
        ("    listen 80;\n", f"    listen 127.0.0.1:{http_port};\n"),
        ("    listen [::]:80;\n", ""),
        ("    listen 443 ssl http2;\n", f"    listen 127.0.0.1:{tls_port} ssl http2;\n"),
        ("    listen [::]:443 ssl http2;\n", ""),
        ("/etc/letsencrypt/live/hs.example.org/fullchain.pem", str(cert)),
        ("/etc/letsencrypt/live/hs.example.org/privkey.pem", str(key)),
    ]
    for old, new in swaps:
        assert old in text, f"docs/deploy/nginx-homestream.conf no longer holds {old!r}"
        text = text.replace(old, new)
    return text


@pytest.fixture
def stack(tmp_path):
    nginx = _nginx()
    srv = ThreadServer(tmp_path / "data", trusted_proxies=["127.0.0.1/32"], rate_ip_requests=20).start()
    clock = srv.app.policy.ip_requests
    frozen = time.monotonic_ns()
    srv.call(lambda: setattr(clock, "clock", lambda: frozen))  # no refill mid-test on a slow shared machine
    conf_dir = tmp_path / "nginx"
    conf_dir.mkdir()
    cert, key = _certificate(conf_dir)
    http_port, tls_port = free_port(), free_port()
    (conf_dir / "site.conf").write_text(_site(srv.port, http_port, tls_port, cert, key))
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must reach the test's private temp dir
    temps = "".join(f"    {kind}_temp_path {conf_dir}/{kind};\n"
                    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (conf_dir / "nginx.conf").write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {conf_dir}/nginx.pid;\nerror_log {conf_dir}/error.log warn;\n"
        f"events {{ worker_connections 256; }}\nhttp {{\n    access_log off;\n{temps}"
        f"    include {conf_dir}/site.conf;\n}}\n")
    proc = subprocess.Popen([nginx, "-p", str(conf_dir), "-e", str(conf_dir / "error.log"), "-c",
                             str(conf_dir / "nginx.conf")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                log = (conf_dir / "error.log").read_text() if (conf_dir / "error.log").exists() else ""
                pytest.fail(f"nginx exited: {proc.stdout.read().decode(errors='replace')} {log}")
            try:
                socket.create_connection(("127.0.0.1", tls_port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("nginx did not start listening")
                time.sleep(0.05)
        yield srv, tls_port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        srv.stop()


def _client(tls_port: int, source: str) -> httpx.Client:
    return httpx.Client(base_url=f"https://127.0.0.1:{tls_port}", timeout=10,
                        transport=httpx.HTTPTransport(verify=False, local_address=source))


def test_signed_put_get_live_stream_and_resume_through_nginx_tls(stack, alice):
    srv, tls_port = stack
    with _client(tls_port, "127.0.0.2") as c:
        target = f"/{alice.user}/pub/a.json"
        r = c.put(target, content=b"{}", headers={"authorization": alice.auth("PUT", target, b"{}")})
        assert r.status_code == 201, r.text
        r = c.get(target)
        assert r.status_code == 200 and r.content == b"{}"
        reader = SSEReader(tls_port, f"/subscribe?p={alice.user}/*", tls=True, source="127.0.0.2")
        assert reader.head() == 200
        ids = []
        for i in range(3):  # each event must come through before the next write: nothing sits in a buffer
            path = f"/{alice.user}/pub/e{i}"
            assert c.put(path, content=b"x", headers={"authorization": alice.auth("PUT", path, b"x")}).status_code == 201
            got = events(reader.read_frames(i + 1, timeout=3))
            assert len(got) == i + 1, f"event {i} did not come through the proxy at once"
            ids.append(got[-1]["id"])
        reader.close()
        resumed = SSEReader(tls_port, f"/subscribe?p={alice.user}/*&live=false", tls=True, source="127.0.0.2",
                            headers={"Last-Event-ID": ids[0]})
        frames = resumed.read_frames(until_end=True)
        assert [e["id"] for e in events(frames)] == ids[1:]
        assert frames[-1]["event"] == "end"
        resumed.close()


def test_rate_limits_count_the_real_client_address_through_trusted_proxies(stack):
    srv, tls_port = stack
    with _client(tls_port, "127.0.0.3") as a, _client(tls_port, "127.0.0.4") as b:
        assert [a.get("/healthz").status_code for _ in range(20)] == [200] * 20
        r = a.get("/healthz")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        # a forged X-Forwarded-For changes nothing: nginx appends the real address, homestream takes the last
        assert a.get("/healthz", headers={"x-forwarded-for": "198.51.100.7"}).status_code == 429
        assert b.get("/healthz").status_code == 200  # another client, its own bucket
    counted = srv.call(lambda: sorted(k for k in srv.app.policy.ip_requests._new))
    assert "127.0.0.3" in counted and "127.0.0.4" in counted and "127.0.0.1" not in counted
