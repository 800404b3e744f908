"""TLS of ``streambench endpoint`` against the stub server of ``tests/test_endpoint_load.py``
served over HTTPS on 127.0.0.1 with a self-signed certificate made by the ``openssl`` command:
``--ca-bundle`` trusts it, ``--insecure`` skips the check, and without either every request fails
with a certificate error. Runtime: ~2 s on 2 shared cores.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


@pytest.fixture(scope="module")
def tls_stub(tmp_path_factory):
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, __file__, "--tls-stub", str(cert), str(key)],
        stdout=subprocess.PIPE,
        text=True,
    )
    port = int(proc.stdout.readline())
    yield port, cert
    proc.kill()
    proc.wait(10)
    proc.stdout.close()


def test_tls_with_ca_bundle_insecure_and_without(tls_stub):
    from test_endpoint_load import cli

    port, cert = tls_stub
    base = [f"https://127.0.0.1:{port}/tls=1/v1", "--model", "m", "--in-out", "4-2",
            "--requests", "2", "--warmup", "0", "--force-output", "off"]  # fmt: skip
    res = cli(*base, "--ca-bundle", str(cert))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2/2 requests ok" in " ".join(res.stdout.split())
    res = cli(*base, "--insecure")
    assert res.returncode == 0, res.stdout + res.stderr
    res = cli(*base)  # the system's trust store does not know this certificate
    assert res.returncode == 1, res.stdout + res.stderr
    text = " ".join((res.stdout + res.stderr).split())
    assert "0/2 requests ok" in text
    assert "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text, text
    res = cli(*base, "--ca-bundle", str(cert), "--insecure")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr


async def _serve_tls(cert: str, key: str) -> None:
    import ssl

    from test_endpoint_load import CapacityStub

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    stub = CapacityStub()
    server = await asyncio.start_server(stub._handle, "127.0.0.1", 0, ssl=ctx)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__" and sys.argv[1:2] == ["--tls-stub"]:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    asyncio.run(_serve_tls(sys.argv[2], sys.argv[3]))
