"""``streambench endpoint`` against misbehaving servers and absurd input: secrets never reach an
output, outputs are checked before anything is sent, a server's numbers are bounded, absurd
options are refused up front, SIGTERM/SIGHUP stop a run like Ctrl-C, errors are one line.

The hostile server is a small asyncio HTTP/1.1 server (stdlib only) in a subprocess
(``python tests/test_endpoint_hostile.py --serve``), like the stub of ``test_endpoint.py``. Its
behaviour comes from the first path segment, ``key=value`` pairs joined by ``;``:

- ``n``: text chunks (default 8), ``gap``: seconds between them (default 0);
- ``usage`` / ``chunkusage`` / ``ptok``: the raw JSON put in ``usage.completion_tokens`` of a final
  usage chunk / of every text chunk / in ``usage.prompt_tokens`` (URL-quoted in the path);
- ``redirect``: reply with this status and a Location that holds a password and a query key;
- ``reset``: after 2 chunks, reset the connection (RST); ``hang``: never answer;
- ``strict``: HTTP 422 while the body has ``ignore_eos`` or ``stream_options`` (then the rest);
- ``bigevent``: a 2 MiB data line; ``many``: text chunks without end; ``bigtext``: 100 kB text
  chunks; ``gzip``: a ``content-encoding: gzip`` reply; ``bigerror``: HTTP 500 with an endless
  body; ``deep``: an event of deeply nested JSON;
- ``echo``: HTTP 401 whose body repeats the request's Authorization header;
  ``finishecho``: a stream whose finish_reason is the Authorization header.

``GET /_count`` returns the requests seen per scenario. Runtime: ~60 s (2 cores, shared).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import pytest

from streambench.endpoint import (
    MAX_REQUESTS,
    EndpointError,
    EndpointSpec,
    arrival_gaps,
    iter_prompts,
    make_prompts,
    request_url,
    run_endpoint,
    scrub_argv,
    scrub_text,
    to_entry,
)

LOCATION = "http://bob:LOCSECRET9@127.0.0.1:1/elsewhere/v1/completions?api_key=LOCSECRET9&x=1"


# ----------------------------------------------------------------------- the hostile server
class Hostile:
    def __init__(self) -> None:
        self.count: dict[str, int] = {}

    async def serve(self) -> None:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        async with server:
            await server.serve_forever()

    async def _handle(self, reader, writer) -> None:
        try:
            while await self._respond(reader, writer):
                pass
        except (ConnectionError, asyncio.CancelledError, asyncio.IncompleteReadError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def _respond(self, reader, writer) -> bool:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        lines = head.decode("latin-1").split("\r\n")
        _method, path, _ = lines[0].split(" ")
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        raw = await reader.readexactly(int(headers.get("content-length", 0)))
        body = json.loads(raw or b"{}")
        if path == "/_count":
            out = json.dumps(self.count).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(out), out)
            )
            await writer.drain()
            return False
        scenario = unquote(path.split("/")[1])
        self.count[scenario] = self.count.get(scenario, 0) + 1
        opts = dict(p.split("=", 1) if "=" in p else (p, "1") for p in scenario.split(";") if p)
        auth = headers.get("authorization", "")

        def reply(status: int, text: str, extra: str = "") -> None:
            data = text.encode()
            writer.write(
                f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{extra}"
                f"content-length: {len(data)}\r\n\r\n".encode()
                + data
            )

        if "strict" in opts and ({"ignore_eos", "stream_options"} & set(body)):
            reply(422, json.dumps({"detail": "unexpected fields"}))
            await writer.drain()
            return True
        if "hang" in opts:
            await asyncio.sleep(3600)
        if "redirect" in opts:
            reply(int(opts["redirect"]), "", f"location: {LOCATION}\r\n")
            await writer.drain()
            return True
        if "echo" in opts:
            reply(401, json.dumps({"error": {"message": f"invalid key: {auth}"}}))
            await writer.drain()
            return True
        if "bigerror" in opts:
            writer.write(b"HTTP/1.1 500 Oops\r\ncontent-type: text/plain\r\n\r\n")
            for _ in range(100_000):  # 100 MB unless the client stops reading
                writer.write(b"x" * 1000)
                await writer.drain()
            return False
        h = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n"
        if "gzip" in opts:
            h += "content-encoding: gzip\r\n"
        writer.write((h + "\r\n").encode())
        await writer.drain()
        n = int(opts.get("n", 8))
        gap = float(opts.get("gap", 0))

        def event(obj) -> bytes:
            return f"data: {json.dumps(obj)}\n\n".encode()

        if "bigevent" in opts:
            writer.write(b"data: " + b"x" * (2 << 20))
            await writer.drain()
            await asyncio.sleep(30)
            return False
        if "deep" in opts:
            writer.write(b"data: " + b"[" * 200_000 + b"\n\n")
            await writer.drain()
            await asyncio.sleep(30)
            return False
        i = 0
        while i < n or "many" in opts:
            i += 1
            text = "y" * 100_000 if "bigtext" in opts else "ab "
            obj = {"choices": [{"index": 0, "text": text, "finish_reason": None}]}
            if "chunkusage" in opts:
                obj["usage"] = {"completion_tokens": json.loads(unquote(opts["chunkusage"]))}
            writer.write(event(obj))
            await writer.drain()
            if "reset" in opts and i >= 2:
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return False
            if gap:
                await asyncio.sleep(gap)
        finish = auth if "finishecho" in opts else "length"
        writer.write(event({"choices": [{"index": 0, "text": "", "finish_reason": finish}]}))
        usage = {}
        if "usage" in opts:
            usage["completion_tokens"] = json.loads(unquote(opts["usage"]))
        if "ptok" in opts:
            usage["prompt_tokens"] = json.loads(unquote(opts["ptok"]))
        if usage:
            writer.write(event({"choices": [], "usage": usage}))
        writer.write(b"data: [DONE]\n\n")
        await writer.drain()
        return False


class HostileProcess:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
        )
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.close()
            raise RuntimeError(f"hostile server did not start: {line!r}")
        self.port = int(line)

    def url(self, scenario: str, userinfo: str = "") -> str:
        return f"http://{userinfo}127.0.0.1:{self.port}/{scenario}/v1"

    def count(self, scenario: str) -> int:
        import httpx

        url = f"http://127.0.0.1:{self.port}/_count"
        return httpx.get(url, timeout=10, trust_env=False).json().get(scenario, 0)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def server():
    s = HostileProcess()
    yield s
    s.close()


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    asyncio.run(Hostile().serve())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args, module: str = "streambench", env=None, timeout=90):
    """Run ``python -m streambench endpoint ARGS`` (or ``python -m streambench.endpoint``)."""
    cmd = [sys.executable, "-m", module] + (["endpoint"] if module == "streambench" else [])
    return subprocess.run(
        cmd + [str(a) for a in args],
        capture_output=True,
        text=True,
        env=env or {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"},
        timeout=timeout,
    )


def one_line_error(proc, *needles):
    """Exit 2, one ``streambench: error:`` line on stderr holding every needle, no traceback."""
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, proc.stdout, err)
    assert len(err.splitlines()) == 1 and err.startswith("streambench: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


ENTRIES = ("streambench", "streambench.endpoint")


# ----------------------------------------------------------------------- 1. secrets
def test_scrub_the_class_of_secrets():
    text = scrub_text(
        "GET http://u:pw1234@h/v1?api_key=AAAA&key=BBBB&token=CCCC&api-version=2 "
        'Authorization: Bearer DDDD x-api-key: EEEE {"password": "F F F"} sig=ok',
        secrets=["GGGG"],
    )
    for secret in ("pw1234", "AAAA", "BBBB", "CCCC", "DDDD", "EEEE", "F F F"):
        assert secret not in text, text
    assert "api-version=2" in text and "http://***@h/v1" in text
    assert scrub_text("a GGGG b", ["GGGG"]) == "a *** b"
    argv = [
        "streambench", "endpoint", "http://user:SECRET1@h:1/v1", "--api-key", "SECRET2",
        "--api-key=SECRET3", "--token", "SECRET4", "--api-key-env", "MY_VAR", "--tokenizer",
        "tok", "--model", "m", "--extra-body", '{"api_key": "SECRET5"}', "x SECRET6 y",
    ]  # fmt: skip
    clean = scrub_argv(argv, secrets=["SECRET6"])
    assert not any(f"SECRET{i}" in a for a in clean for i in range(1, 7)), clean
    assert clean[clean.index("--api-key-env") + 1] == "MY_VAR"
    assert clean[clean.index("--tokenizer") + 1] == "tok" and "--api-key=***" in clean
    # the spec's secrets: the key and the URL's user info (also as Basic auth)
    spec = EndpointSpec(url="http://al:pa%40ss@h:1/v1", model="m", api_key="sk-abcdef")
    assert {"sk-abcdef", "pa%40ss", "pa@ss"} <= set(spec.secrets())
    assert "pa" not in json.dumps(spec.to_dict()).replace("path", "")
    assert "sk-abcdef" not in json.dumps(spec.to_dict())


def test_url_password_and_keys_never_reach_outputs(server, tmp_path):
    """A password in the URL, --api-key X / --api-key=X and credential-named --extra-body fields:
    sent, but in no results file, table, --verbose line or error line."""
    outs = [tmp_path / f"r.{ext}" for ext in ("json", "csv", "md", "jsonl")]
    url = server.url("n=3", userinfo="user:URLSECRET77@")
    for key_args in (["--api-key", "KEYSECRET88"], ["--api-key=KEYSECRET88"]):
        args = [url, "--model", "m", "--requests", "2", "-v", "--in-out", "4-3"]
        args += [*key_args, "--extra-body", '{"api_key": "BODYSECRET99", "top_k": 1}']
        proc = cli(*args, *[a for o in outs for a in ("-o", o)])
        assert proc.returncode == 0, proc.stderr
        everything = proc.stdout + proc.stderr + "".join(o.read_text() for o in outs)
        for secret in ("URLSECRET77", "KEYSECRET88", "BODYSECRET99"):
            assert secret not in everything, secret
        doc = json.loads(outs[0].read_text())
        assert "http://***@127.0.0.1" in " ".join(doc["environment"]["argv"])
        assert doc["settings"]["extra_body"] == {"api_key": "***", "top_k": 1}
        assert "request 1: TTFT" in proc.stdout  # --verbose ran


@pytest.mark.parametrize("entry", ENTRIES)
def test_query_string_key_not_in_error_line(entry):
    for query in ("api_key=QSECRET1", "key=QSECRET1", "token=QSECRET1&x=1", "sig=QSECRET1"):
        proc = cli(f"http://127.0.0.1:9/v1?{query}", "--model", "m", module=entry)
        err = one_line_error(proc, "URL", "query")
        assert "QSECRET1" not in err + proc.stdout
    # user info in a URL that is refused for another reason
    proc = cli("http://u:PWSECRET2@127.0.0.1:99999/v1", "--model", "m", module=entry)
    assert "PWSECRET2" not in one_line_error(proc, "port")


def test_server_echoing_the_key_is_masked(server, tmp_path):
    """A server that repeats the Authorization header in an error body or a finish_reason: the
    key is masked in the error line, the table, --verbose and the results."""
    out = tmp_path / "echo.json"
    env = {**os.environ, "ECHO_KEY_VAR": "sk-ECHOSECRET42"}
    for scenario in ("echo", "finishecho;n=2"):
        proc = cli(
            server.url(scenario), "--model", "m", "--requests", "1", "--warmup", "0",
            "--force-output", "on", "--api-key-env", "ECHO_KEY_VAR", "-v", "-o", out, env=env,
        )  # fmt: skip
        assert proc.returncode in (0, 1), proc.stderr
        everything = proc.stdout + proc.stderr + out.read_text()
        assert "ECHOSECRET42" not in everything, everything
    doc = json.loads(out.read_text())
    assert doc["configurations"][0]["requests"][0]["finish_reason"] in ("Bearer ***", "***")


# ----------------------------------------------------------------------- 2. outputs up front
def unwritable_dir(tmp_path: Path) -> Path:
    """A directory where no file can be created, also by root (/proc), else a chmod 500 one."""
    if os.geteuid() == 0:
        if not os.path.isdir("/proc/self"):
            pytest.skip("running as root without /proc: no unwritable directory")
        return Path("/proc")
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    return d


def test_outputs_checked_before_anything_is_sent(server, tmp_path):
    ro = unwritable_dir(tmp_path)
    (tmp_path / "dir.json").mkdir()
    good = tmp_path / "good.json"
    scenario = "n=2;outputs"
    cases = [
        (["-o", ro / "r.json"], ("--output", "cannot write")),
        (["-o", good, "-o", tmp_path / "dir.json"], ("--output", "is a directory")),
        (["-o", tmp_path / "r.txt"], ("--output", "unknown format")),
        (["--plot", ro / "p.png"], ("--plot", "cannot write")),
        (["--plot", tmp_path / "p.gif"], ("--plot",)),
        (["-o", good, "-o", good], ("--output", "named twice")),
    ]
    for entry in ENTRIES:
        for extra, needles in cases:
            args = [server.url(scenario), "--model", "m", "--requests", "2", "--in-out", "4-2,8-2"]
            proc = cli(*args, *extra, module=entry)
            one_line_error(proc, *needles)
    assert server.count(scenario) == 0  # nothing was sent
    assert not good.exists()


def test_existing_results_not_replaced_before_there_is_something(server, tmp_path):
    """SIGTERM before any request finished: the previous results file stays as it was."""
    out = tmp_path / "keep.json"
    out.write_text('{"previous": true}\n')
    cmd = [sys.executable, "-m", "streambench", "endpoint", server.url("hang;keep"), "--model"]
    cmd += ["m", "--requests", "3", "--warmup", "0", "--force-output", "on", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while server.count("hang;keep") < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, stderr
    assert "nothing written" in stderr and "Traceback" not in stderr
    assert out.read_text() == '{"previous": true}\n'


# ----------------------------------------------------------------------- 3. server numbers
def run1(server, scenario: str, **kw):
    spec = dict(model="m", requests=1, warmup=0, force="on", output_tokens=8, timeout_s=10)
    spec.update(kw)
    return run_endpoint(EndpointSpec(url=server.url(scenario), **spec))


def test_huge_usage_count_is_bounded(server):
    """usage.completion_tokens 1e9: ignored (no allocation per reported token), counted from
    the 8 chunks, a warning recorded; the run takes well under a second of work."""
    t = time.perf_counter()
    res = run1(server, "usage=1e9")
    assert time.perf_counter() - t < 10
    rec = res.records[0]
    assert rec.ok and rec.output_tokens == 8 and rec.token_count == "chunks"
    assert rec.warnings and "implausible" in rec.warnings[0]
    assert res.summary.warnings == {"usage.completion_tokens": 1}
    assert len(rec.itl_s) == 7
    # also as a whole number far beyond anything asked, in every chunk
    res = run1(server, "chunkusage=999999999999")
    rec = res.records[0]
    assert rec.output_tokens == 8 and any("in the chunks" in w for w in rec.warnings)


@pytest.mark.parametrize("value", ["-3", "2.5", "NaN", "Infinity", "%228%22", "true", "[]", "0"])
def test_untrusted_usage_counts_fall_back_to_chunks(server, value):
    res = run1(server, f"usage={value}")
    rec = res.records[0]
    assert rec.ok and rec.output_tokens == 8 and rec.token_count == "chunks", rec
    assert rec.tpot_s is not None and res.summary.output_tokens_per_s > 0
    assert len(rec.warnings) == 1 and rec.warnings[0].startswith("usage.completion_tokens")
    assert rec.to_dict()["warnings"] == list(rec.warnings)


def test_trusted_usage_and_bad_prompt_tokens(server):
    # a plausible count is used (16 tokens over 8 chunks), no warning
    res = run1(server, "usage=16", output_tokens=16)
    assert res.records[0].output_tokens == 16 and not res.records[0].warnings
    # per-chunk counts that decrease, and a negative prompt count, are not trusted
    res = run1(server, "chunkusage=-1;ptok=-5")
    rec = res.records[0]
    assert rec.output_tokens == 8 and rec.prompt_tokens is None
    assert any("prompt_tokens" in w for w in rec.warnings)


def test_cli_records_usage_warning(server, tmp_path):
    out = tmp_path / "w.json"
    proc = cli(server.url("usage=-3"), "--model", "m", "--requests", "2", "--in-out", "4-8",
               "-o", out)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    entry = json.loads(out.read_text())["configurations"][0]
    assert entry["actual_output_tokens"] == 8
    assert any("usage.completion_tokens -3 is negative" in w for w in entry["warnings"])
    assert "warning: usage.completion_tokens" in proc.stdout


@pytest.mark.parametrize(
    "scenario, needle",
    [
        ("bigevent", "longer than"),
        ("many", "text chunks for max_tokens 8"),
        ("bigtext", "characters of text"),
        ("gzip", "compressed"),
        ("bigerror", "HTTP 500: xxx"),
        ("deep", "not JSON"),
    ],
)
def test_oversized_replies_fail_the_request_quickly(server, scenario, needle):
    t = time.perf_counter()
    res = run1(server, scenario)
    assert time.perf_counter() - t < 8
    rec = res.records[0]
    assert not rec.ok and needle in rec.error, rec.error
    assert len(rec.error) < 400


# ----------------------------------------------------------------------- 4. bounds
@pytest.mark.parametrize(
    "args, needle",
    [
        (["--requests", "99999999999"], f"--requests 99999999999: expected a whole number from 1 to {MAX_REQUESTS}"),  # noqa: E501
        (["--requests", "0"], "--requests 0"),
        (["--request-rate", "1e-9", "--timeout", "2"], "--request-rate 1e-09"),
        (["--request-rate", "nan"], "--request-rate"),
        (["--request-rate", "-inf"], "--request-rate"),  # inf: as fast as allowed (a valid point)
        (["--timeout", "nan"], "--timeout"),
        (["--timeout", "inf"], "--timeout"),
        (["--timeout", "0"], "--timeout"),
        (["--timeout", "-1"], "--timeout"),
        (["--concurrency", "0"], "--concurrency"),
        (["--concurrency", "100000000"], "--concurrency"),
        (["--warmup", "100000000"], "--warmup"),
        (["--warmup", "-1"], "--warmup"),
        (["--in-out", "2000000-8"], "2000000-8"),
        (["--in-out", "8-2000000"], "8-2000000"),
        (["--slo", "ttft=1e999s"], "duration"),
        (["--extra-body", '{"x": NaN}'], "--extra-body"),
        (["--requests", "1e3"], "--requests"),
    ],
)  # fmt: skip
def test_absurd_options_refused_up_front(args, needle):
    t = time.perf_counter()
    proc = cli("http://127.0.0.1:9/v1", "--model", "m", *args, module="streambench.endpoint")
    one_line_error(proc, needle)
    proc = cli("http://127.0.0.1:9/v1", "--model", "m", *args)
    assert proc.returncode == 2 and needle.split(" ")[0] in proc.stderr, proc.stderr
    assert time.perf_counter() - t < 30


def test_run_time_bound_includes_the_probes(server):
    """A server that answers 422 to the forcing fields, then never: 3 probes + warm-up + measured
    requests, each cut at the timeout, within EndpointSpec.max_duration_s."""
    spec = EndpointSpec(
        url=server.url("strict;hang"), model="m", requests=2, warmup=1, timeout_s=0.5
    )
    assert spec.max_duration_s == (3 + 1 + 2) * 0.5
    t = time.perf_counter()
    res = run_endpoint(spec)
    took = time.perf_counter() - t
    assert [r.status for r in res.records if r.index < 0] == [422, 422, None]
    assert res.summary.errors == {"timeout": 2}
    assert (1 + 1 + 2) * 0.5 <= took <= spec.max_duration_s + 1.5, took
    # with a rate at its minimum (1 / timeout): arrival gaps cut at the timeout
    spec = EndpointSpec(
        url=server.url("hang;rate"), model="m", requests=3, warmup=0, timeout_s=0.5,
        request_rate=2.0, force="on",
    )  # fmt: skip
    assert spec.max_duration_s == 3 * 0.5
    t = time.perf_counter()
    res = run_endpoint(spec)
    assert time.perf_counter() - t <= spec.max_duration_s + 1.5
    assert res.summary.errors == {"timeout": 3}
    gaps = list(arrival_gaps(10_000, 2.0, 0, 0.5))
    assert max(g for g, _ in gaps) == 0.5 and any(cut for _, cut in gaps)
    with pytest.raises(EndpointError, match="--request-rate"):
        EndpointSpec(url="http://h/v1", model="m", request_rate=1.9, timeout_s=0.5).validate()


def test_prompts_generated_lazily_for_many_requests(server, tmp_path):
    """--requests 1000000 with long prompts starts sending at once (prompts are made one at a
    time, the same seeded sequence), and SIGTERM keeps what finished."""
    assert list(iter_prompts(3, 5, seed=4)) == make_prompts(3, 5, seed=4)
    out = tmp_path / "many.json"
    scenario = "n=2;lazy"
    cmd = [sys.executable, "-m", "streambench", "endpoint", server.url(scenario), "--model", "m"]
    cmd += ["--requests", "1000000", "--in-out", "4096-2", "--concurrency", "4"]
    cmd += ["--warmup", "0", "--force-output", "on", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while server.count(scenario) < 10:
            assert time.monotonic() < deadline and proc.poll() is None, "nothing sent"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, stderr
    entry = json.loads(out.read_text())["configurations"][0]
    assert entry["status"] == "interrupted" and len(entry["requests"]) >= 5


# ----------------------------------------------------------------------- 5. signals
@pytest.mark.parametrize(
    "sig, entry, probe",
    [
        (signal.SIGTERM, "streambench", False),
        (signal.SIGHUP, "streambench", True),
        (signal.SIGINT, "streambench", False),
        (signal.SIGTERM, "streambench.endpoint", True),
        (signal.SIGHUP, "streambench.endpoint", False),
    ],
)
def test_signals_keep_finished_requests(server, tmp_path, sig, entry, probe):
    """SIGTERM/SIGHUP stop the first configuration like Ctrl-C: finished requests written with
    "interrupted": true, exit 128 + signal, one stderr line; a second signal does not break it."""
    out = tmp_path / "partial.json"
    scenario = f"n=20;gap=0.02;{sig.name}{entry}{probe}"
    cmd = [sys.executable, "-m", entry] + (["endpoint"] if entry == "streambench" else [])
    cmd += [server.url(scenario), "--model", "m", "--in-out", "8-20,8-21", "--requests", "30"]
    cmd += ["--warmup", "0", "-o", str(out)]
    cmd += [] if probe else ["--force-output", "on"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while server.count(scenario) < 3 + probe:  # two finished, the third in flight
            assert time.monotonic() < deadline and proc.poll() is None, "no requests"
            time.sleep(0.05)
        proc.send_signal(sig)
        if proc.poll() is None:  # a second one at once, while it stops and saves: ignored
            proc.send_signal(sig)  # (after the process leaves its policy, the default acts)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + sig, (proc.returncode, stdout, stderr)
    lines = [ln for ln in stderr.splitlines() if ln.startswith("streambench:")]
    assert lines == [f"streambench: error: interrupted ({sig.name}): finished requests kept "
                     f"in {out}"], stderr  # fmt: skip
    assert "Traceback" not in stderr
    doc = json.loads(out.read_text())
    assert doc["interrupted"] is True and len(doc["configurations"]) == 1
    entry_ = doc["configurations"][0]
    assert entry_["status"] == "interrupted" and sig.name in entry_["error"]
    done = [r for r in entry_["requests"] if not r["warmup"]]
    assert 2 <= len(done) < 30 and all(r["ok"] for r in done)
    assert entry_["aggregates"]["endpoint"]["ok"] == len(done)


def test_library_run_under_policy_returns_partial_result(server):
    """Inside a SignalPolicy, SIGTERM cancels the run in the event loop: a partial result."""
    import threading

    from streambench.errors import SignalPolicy

    spec = EndpointSpec(
        url=server.url("n=10;gap=0.02;lib"), model="m", requests=50, warmup=0, force="on"
    )
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    with SignalPolicy() as policy:
        timer.start()
        res = run_endpoint(spec)
    timer.join()
    assert policy.received == [signal.SIGTERM]
    assert res.interrupted and res.interrupt_signal == signal.SIGTERM
    assert 1 <= res.summary.ok < 50 and res.summary.failed == 0
    entry = to_entry(res)
    assert entry["status"] == "interrupted" and "(SIGTERM)" in entry["error"]


# ----------------------------------------------------------------------- 6. one-line errors
@pytest.mark.parametrize("entry", ENTRIES)
def test_bad_urls_one_line(entry):
    for url, needle in (
        ("http://127.0.0.1:99999/v1", "port"),
        ("http://127.0.0.1:0/v1", "port"),
        ("http://127.0.0.1:abc/v1", "port"),
        ("http:///v1", "http(s) URL"),
        ("http://:80/v1", "no host"),
        ("http://127.0.0.1:8000/v 1", "whitespace"),
        ("http://[::1/v1", "URL"),
        ("ftp://127.0.0.1/v1", "http(s)"),
    ):
        one_line_error(cli(url, "--model", "m", module=entry), needle)
    with pytest.raises(EndpointError, match="port"):
        request_url("http://h:65536/v1")
    assert request_url("http://h:65535") == "http://h:65535/v1/completions"


def test_module_entry_one_line_errors(tmp_path):
    (tmp_path / "d.json").mkdir()
    entry = "streambench.endpoint"
    one_line_error(cli("http://127.0.0.1:9/v1", "--model", "m", "-o", tmp_path / "d.json",
                       module=entry), "--output", "directory")  # fmt: skip
    one_line_error(cli("http://127.0.0.1:9/v1", module=entry), "--model")
    one_line_error(cli("http://127.0.0.1:9/v1", "--model", "m", "--requests", "x",
                       module=entry), "--requests")  # fmt: skip
    # a run that fails (nothing listens): exit 1, no traceback
    proc = cli(f"http://127.0.0.1:{free_port()}/v1", "--model", "m", "--requests", "1",
               "--timeout", "5", module=entry)  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr


# ----------------------------------------------------------------------- 7. clear messages
def test_redirect_says_where_without_secrets(server):
    for code in (301, 307, 308):
        res = run1(server, f"redirect={code}")
        err = res.records[0].error
        assert err.startswith(f"http: HTTP {code}: redirected to http://127.0.0.1:1/elsewhere")
        assert "(redirects are not followed; use that URL)" in err
        assert "LOCSECRET9" not in err and "api_key=***" in err


def test_connection_reset_has_a_meaning(server):
    res = run1(server, "reset")
    err = res.records[0].error
    assert err.startswith("stream_cut: ") and len(err) > len("stream_cut: ReadError: ") + 5, err
    assert not err.rstrip().endswith(":"), err
    assert "reset" in err.lower() or "closed" in err.lower(), err
    assert "ReadError: ReadError" not in err and "ReadError: )" not in err


@pytest.mark.parametrize("entry", ENTRIES)
def test_api_key_env_unset_or_empty_is_bad_input(entry):
    env = {k: v for k, v in os.environ.items() if k != "NO_SUCH_KEY_VAR"}
    proc = cli("http://127.0.0.1:9/v1", "--model", "m", "--api-key-env", "NO_SUCH_KEY_VAR",
               env=env, module=entry)  # fmt: skip
    one_line_error(proc, "--api-key-env NO_SUCH_KEY_VAR", "not set")
    env["NO_SUCH_KEY_VAR"] = ""
    proc = cli("http://127.0.0.1:9/v1", "--model", "m", "--api-key-env", "NO_SUCH_KEY_VAR",
               env=env, module=entry)  # fmt: skip
    one_line_error(proc, "NO_SUCH_KEY_VAR", "empty")
    env["NO_SUCH_KEY_VAR"] = "sk-with\nnewline"
    proc = cli("http://127.0.0.1:9/v1", "--model", "m", "--api-key-env", "NO_SUCH_KEY_VAR",
               env=env, module=entry)  # fmt: skip
    err = one_line_error(proc, "$NO_SUCH_KEY_VAR")
    assert "sk-with" not in err
