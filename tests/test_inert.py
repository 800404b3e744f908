"""Hostile text never drives the terminal, a trace link is a file, a header value is never kept
(issue 21, items 1, 3 and 4).

1. Text from a results file, a prompt file, a server or a model reaches the terminal only through
   :func:`streambench.terminal.inert` (or the consoles of :func:`streambench.terminal.console`):
   OSC 52 (clipboard), OSC 8 (hidden links), ``ESC[2J``, BEL, C1 and bidi controls are shown as
   escapes, and rich markup in a label is printed as written. Each CLI surface runs here as a
   real subprocess and no ESC byte may reach its stdout or stderr.
3. The HTML report links a profiler trace only as a relative path or a ``file:`` URL.
4. ``--header`` values are never written to ``environment.argv``, whatever their length.

The small OpenAI-compatible server is in this process (a thread); ``run`` uses the embedded tiny
model. Runtime ~40 s (2 shared cores).
"""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from streambench import terminal
from streambench.endpoint.scrub import scrub_argv
from streambench.results.report.html import file_link

FIXTURE = Path(__file__).parent / "fixtures" / "results-v1.json"
ROOT = Path(__file__).resolve().parent.parent

ESC = "\x1b"
OSC52 = f"{ESC}]52;c;aGFja2Vk\x07"  # write "hacked" to the clipboard
OSC8 = f"{ESC}]8;;http://evil.example/{ESC}\\click{ESC}]8;;{ESC}\\"  # a hidden link
CLEAR = f"{ESC}[2J{ESC}[H"  # clear the screen, cursor home
C1 = "\x9b31m\x9d0;title\x9c"  # one-byte CSI and OSC
BIDI = "\u202eevil\u202c\u2066x\u2069"
HOSTILE = [OSC52, OSC8, CLEAR + "[bold]b[/bold][link=http://evil.example]l[/link]", C1 + BIDI]
#: what must never reach a terminal: ESC, BEL, C1 (as UTF-8), the bidi overrides and isolates
FORBIDDEN = re.compile(
    "[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def cli(*args, stdin: str | None = None, env: dict | None = None, cwd=None, timeout: float = 180):
    """``python -m streambench ARGS`` with this checkout first on the path; bytes out."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "250", **(env or {})}
    env.pop("OPENAI_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "streambench", *map(str, args)],
        input=None if stdin is None else stdin.encode(),
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )


def assert_inert(proc) -> str:
    """No control character but newline, CR of a line end and tab in stdout or stderr; the
    two as text."""
    text = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    bad = FORBIDDEN.findall(text.replace("\r\n", "\n"))
    assert not bad, (bad[:5], text[-2000:])
    return text


# -- the function --------------------------------------------------------------------------------
@pytest.mark.parametrize("hostile", [*HOSTILE, "\r\b\x00\x7f", "a\u200fb\u061c"])
def test_inert_leaves_no_control_character(hostile):
    out = terminal.inert(hostile)
    assert not FORBIDDEN.search(out)
    assert terminal.inert(out) == out  # idempotent
    assert "\\x" in out or "\\u" in out  # shown, not dropped


def test_inert_keeps_ordinary_text_and_says_what_it_replaced():
    text = "naïve 模型 — 32-32 bs1\tok\n"
    assert terminal.inert(text) is text
    assert terminal.inert(OSC52) == "\\x1b]52;c;aGFja2Vk\\x07"
    assert terminal.inert("a\nb", newlines=False) == "a\\x0ab"
    assert terminal.inert_markup("[bold]x") == "\\[bold]x"


def test_console_renders_text_inert_and_draws_no_link():
    """On a terminal, only the console's own colours are escape sequences (SGR)."""
    from rich.text import Text

    buf = io.StringIO()
    con = terminal.console(file=buf, force_terminal=True, color_system="truecolor", width=200)
    con.print(Text(OSC52 + OSC8 + CLEAR, style="bold red"))
    con.print("[link=http://evil.example]click[/link] [green]ok[/green]")
    out = buf.getvalue()
    assert "\\x1b]52" in out and "click" in out
    assert re.sub(r"\x1b\[[0-9;]*m", "", out).count(ESC) == 0, repr(out)
    assert "]8;" not in out.replace("\\x1b]8;", "")  # no OSC 8 of the console's own


def test_python_warnings_and_log_records_are_printed_inert():
    """A library's warning or log line that quotes a model's or a file's text (transformers'
    about a checkpoint) is shown inert once the CLI has called ``guard_messages``."""
    code = (
        "import logging, warnings; from streambench import terminal; terminal.guard_messages(); "
        f"warnings.warn({OSC52 + CLEAR!r}); "
        f"logging.getLogger('transformers.x').warning('weights of %s unused', {OSC8!r})"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert b"UserWarning" in proc.stderr and b"unused" in proc.stderr
    assert_inert(proc)
    assert "\\x1b]52" in proc.stderr.decode() and "\\x1b]8;;" in proc.stderr.decode()


# -- compare, plot, report -----------------------------------------------------------------------
def hostile_doc(tmp_path: Path, failed: bool = False) -> Path:
    """The fixture with hostile labels, ids and model names (and errors when ``failed``)."""
    doc = json.loads(FIXTURE.read_text())
    for conf, bad in zip(doc["configurations"], HOSTILE):
        conf["label"] = bad + conf["label"]
        conf["id"] = bad + conf["id"]
        conf["config"]["model"] = bad + conf["config"]["model"]
        if failed:
            conf["status"], conf["error"] = "error", bad + " boom"
    path = tmp_path / ("failed.json" if failed else "hostile.json")
    path.write_text(json.dumps(doc))
    return path


def test_compare_prints_no_control_sequence_from_labels(tmp_path):
    """The reproduction of issue 21 item 1: OSC 52, OSC 8 and ESC[2J in a results file's labels
    and errors, compared: shown as text, never sent to the terminal; markup printed as written."""
    old, new = hostile_doc(tmp_path), hostile_doc(tmp_path, failed=True)
    same = cli("compare", old, old)
    text = assert_inert(same)
    assert same.returncode == 0, text
    assert "\\x1b]52;c;aGFja2Vk\\x07" in text and "\\x1b[2J" in text
    assert "[bold]b[/bold][link=http://evil.example]l[/link]" in text  # markup not obeyed
    failed = cli("compare", old, new)
    text = assert_inert(failed)
    assert failed.returncode == 1, text
    assert "boom" in text


def test_compare_on_a_terminal_sends_only_its_own_colours(tmp_path):
    """As a user sees it (a pseudo-terminal, colours on): every escape sequence is an SGR colour
    of the console's own."""
    old, new = hostile_doc(tmp_path), hostile_doc(tmp_path, failed=True)
    leader, follower = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color", "COLUMNS": "250"}
    env.pop("NO_COLOR", None)
    cmd = [sys.executable, "-m", "streambench", "compare", str(old), str(new)]
    proc = subprocess.Popen(cmd, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(120) == 1
    out = b"".join(chunks).decode("utf-8", "replace")
    assert "\x1b[" in out  # colours are on: the check below is not vacuous
    rest = re.sub(r"\x1b\[[0-9;]*m", "", out).replace("\r\n", "\n")
    assert not FORBIDDEN.search(rest), repr(FORBIDDEN.findall(rest)[:5])
    assert "\\x1b]52" in rest


def test_plot_and_report_of_hostile_files(tmp_path):
    path = hostile_doc(tmp_path)
    plot = cli("plot", path, "-o", tmp_path / "p.png")
    assert plot.returncode == 0, plot.stderr
    assert_inert(plot)
    report = cli("report", path, hostile_doc(tmp_path, True), "-o", tmp_path / "r.html")
    assert report.returncode == 0, report.stderr
    assert_inert(report)


def test_errors_quoting_a_file_or_its_name_are_inert(tmp_path):
    """A bad file's text and a file name with escapes in the one-line errors (also with
    --debug's traceback)."""
    bad = tmp_path / f"r{CLEAR}.json"
    doc = json.loads(FIXTURE.read_text())
    doc["schema"] = OSC52
    bad.write_text(json.dumps(doc))
    for args in (
        ("compare", bad, FIXTURE),
        ("report", bad, "-o", tmp_path / "r.html"),
        ("plot", tmp_path / f"missing{OSC8}.json", "-o", tmp_path / "p.png"),
        ("compare", FIXTURE, FIXTURE, "-o", tmp_path / f"x{OSC52}.txt", "--debug"),
    ):
        proc = cli(*args)
        text = assert_inert(proc)
        assert proc.returncode == 2, text
        assert "streambench: error:" in text and "\\x1b" in text, text


# -- run -----------------------------------------------------------------------------------------
def test_run_with_a_prompt_file_named_with_escapes(tmp_path):
    """The file's name is in the label (progress, table, results); its text in the errors."""
    good = tmp_path / f"p{OSC52}{BIDI}.txt"
    good.write_text("hello world\n")
    proc = cli(
        "run", "--prompts", good, "--output-len", "2", "--trials", "1", "--warmup", "0",
        "--isolate", "config", "--verbose",
    )  # fmt: skip
    text = assert_inert(proc)
    assert proc.returncode == 0, text
    assert "p\\x1b]52" in text
    bad = tmp_path / f"q{CLEAR}.jsonl"
    bad.write_text(json.dumps({"prompt": 5, "x": OSC8}) + "\n")
    proc = cli("run", "--prompts", bad, "--output-len", "2", "--trials", "1")
    text = assert_inert(proc)
    assert proc.returncode == 2 and "q\\x1b[2J" in text, text


# -- endpoint ------------------------------------------------------------------------------------
class _Server(BaseHTTPRequestHandler):
    """``/evil/v1/...``: a stream whose text and finish reason hold escapes; ``/err/v1/...``:
    HTTP 500 with escapes in the body. Every request's headers are kept in ``seen``."""

    seen: ClassVar[list[dict[str, str]]] = []

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        self.seen.append({**dict(self.headers), "_body": body.decode()})
        if self.path.startswith("/err/"):
            data = (OSC8 + CLEAR + " bad model").encode()  # raw text, not JSON-escaped
            self.send_response(500)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        for text in ("ab ", OSC52, CLEAR, " cd"):
            chunk = {"model": OSC52, "choices": [{"index": 0, "text": text}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        end = {"choices": [{"index": 0, "text": "", "finish_reason": OSC8 + "length"}]}
        self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
        self.close_connection = True


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def endpoint(server: str, scenario: str, *extra, model: str = "m"):
    return cli(
        "endpoint", f"{server}/{scenario}/v1", "--model", model, "--requests", "2",
        "--warmup", "0", "--timeout", "10", "--force-output", "off", *extra,
    )  # fmt: skip


def test_endpoint_server_text_is_shown_inert(server, tmp_path):
    """A server's error body, stream text and finish reason, and a model name with escapes: in
    the table, the --verbose lines and the errors, shown as text."""
    out = tmp_path / "e.json"
    proc = endpoint(server, "err", "--verbose", "-o", out, model=f"m{CLEAR}")
    text = assert_inert(proc)
    assert proc.returncode == 1, text
    assert "bad model" in text and "m\\x1b[2J" in text  # the model name in the label
    assert "bad model" in json.loads(out.read_text())["configurations"][0]["error"]
    proc = endpoint(server, "evil", "--verbose", "--save-outputs", model=f"m{OSC52}")
    text = assert_inert(proc)
    assert proc.returncode in (0, 1), text
    assert "m\\x1b]52" in text


# -- 3. the HTML report's links ------------------------------------------------------------------
@pytest.mark.parametrize(
    "trace",
    [
        "javascript:alert(document.domain)",
        " JavaScript:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "http://evil.example/x.json",
        "//evil.example/x.json",
        "file://evil.example/share/x.json",
        "vbscript:msgbox",
    ],
)
def test_trace_links_are_files_only(trace, tmp_path):
    """A link is ``None`` or reads as a relative path or a local ``file:`` URL in a browser
    (no scheme before the first ``/``, no ``//host``)."""
    for where in (None, str(tmp_path / "r.html")):
        link = file_link(trace, where)
        if link is None:
            continue
        assert (link.startswith("file:///") and not link.startswith("file:////")) or (
            ":" not in link.split("/")[0] and not link.startswith(("/", "\\"))
        ), link
        assert link.isprintable() and " " not in link and "\\" not in link


def test_report_links_only_safe_traces(tmp_path):
    """``streambench report`` on a file whose ``profile.trace`` values are hostile: the page's
    data holds no link but the relative path and the file: URL."""
    doc = json.loads(FIXTURE.read_text())
    traces = ["javascript:alert(1)", "data:text/html,x", "traces/a b.json", "file:///tmp/t.json"]
    for conf, trace in zip(doc["configurations"], traces):
        conf["profile"] = {"trace": trace}
    path = tmp_path / "d.json"
    path.write_text(json.dumps(doc))
    proc = cli("report", path, "-o", tmp_path / "r.html", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "r.html").read_text()
    links = re.findall(r'"profile":\s*("(?:[^"\\]|\\.)*"|null)', page)
    assert sorted(json.loads(x) or "" for x in links) == sorted(
        ["", "", "traces/a%20b.json", "file:///tmp/t.json"]
    ), links


# -- 4. header values ----------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["q1w", "x", "ab", "long-enough-value"])
def test_scrub_argv_drops_header_values_of_any_length(value):
    argv = ["endpoint", "http://h/v1", "--header", f"X-Tenant: {value}", f"--head=X-B: {value}"]
    argv += ["--hea", f"X-C:{value}", "--header", f"not a header {value}"]
    out = scrub_argv(argv)
    assert not any(value in a for a in out), out
    assert out[3] == "X-Tenant: ***" and out[4] == "--head=X-B: ***" and out[-1] == "***"


def test_short_header_value_never_written(server, tmp_path):
    """The reproduction: ``--header 'X-Tenant: q1w'`` (3 characters) was kept in
    ``environment.argv``; the header is sent, its value is in no output."""
    _Server.seen.clear()
    out, csv = tmp_path / "h.json", tmp_path / "h.csv"
    proc = endpoint(server, "evil", "--header", "X-Tenant: Zq9", "-o", out, "-o", csv)
    assert proc.returncode in (0, 1), proc.stderr
    assert any(h.get("X-Tenant") == "Zq9" for h in _Server.seen)  # it was sent
    for path in (out, csv):
        assert "Zq9" not in path.read_text(), path
    assert b"Zq9" not in proc.stdout + proc.stderr
    argv = json.loads(out.read_text())["environment"]["argv"]
    assert "X-Tenant: ***" in argv, argv
