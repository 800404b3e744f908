"""Hostile files and numbers (issue 21, items 9, 10, 12, 16, 17, 18 and unknown JSONL keys).

- every file read on a user's word is a regular file read with a byte limit: ``/dev/zero``
  (directly or through a symlink), a FIFO, a socket, an oversized file are one line, exit 2,
  never a hang or an out-of-memory kill (:mod:`streambench.reading`);
- a prompt longer than the model's context can hold (32 characters per token) is refused before
  it is tokenized;
- prompt files are split on ``\\n`` and ``\\r\\n`` only (U+2028 is text, not a line end);
- numbers are written with the digits 0-9 and at most 100 characters (``²``, ``٣``, 5,000
  digits: one line naming the option, key or file and line);
- a chat template that raises names the file and line, and ``--skip-invalid`` skips the prompt;
- a CSV cell may be as long as a prompt (beyond the csv module's 131,072 characters);
- unknown keys of a JSON Lines prompt file are named once.

CLI cases run as real processes under a timeout (a FIFO that blocks fails the test, it does not
hang it)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from streambench.errors import UsageError
from streambench.reading import LIMITS, read_bounded
from streambench.tiny import build_tokenizer, save_tiny_model
from streambench.workloads import WorkloadSpec, build_requests, read_prompt_file
from streambench.workloads import build as build_module
from streambench.workloads.files import MAX_PROMPT_CHARS

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(ROOT))
NINES = "9" * 5000


def sb(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streambench", *args],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
        timeout=timeout,
    )


def one_error_line(proc: subprocess.CompletedProcess, *words: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("streambench: error: "), proc.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def sparse(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that takes no disk space."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


@pytest.fixture
def specials(tmp_path) -> dict[str, Path]:
    """A symlink to /dev/zero, a FIFO and a socket under prompt, config and results names."""
    out = {}
    for name in ("zero.txt", "zero.json", "zero.yaml"):
        (tmp_path / name).symlink_to("/dev/zero")
        out[name] = tmp_path / name
    for name in ("fifo.jsonl", "fifo.json", "fifo.yaml"):
        os.mkfifo(tmp_path / name)
        out[name] = tmp_path / name
    return out


# -- 9. bounded reads of any file kind ------------------------------------------------------------
@pytest.mark.parametrize(
    "args, words",
    [
        (["run", "--prompts", "zero.txt"], ["--prompts", "zero.txt", "character device"]),
        (["run", "--prompts", "fifo.jsonl"], ["--prompts", "fifo.jsonl", "named pipe"]),
        (["compare", "/dev/zero", "x.json"], ["/dev/zero", "character device"]),
        (["compare", "fifo.json", "x.json"], ["fifo.json", "named pipe"]),
        (["compare", "zero.json", "x.json"], ["zero.json", "character device"]),
        (["plot", "fifo.json", "-o", "p.png"], ["fifo.json", "named pipe"]),
        (["report", "zero.json", "-o", "r.html"], ["zero.json", "character device"]),
        (["run", "--config", "zero.yaml"], ["config", "zero.yaml", "character device"]),
        (["run", "--config", "fifo.yaml"], ["config", "fifo.yaml", "named pipe"]),
        (["run", "--random-weights", "zero.json"], ["zero.json", "neither a local config"]),
        (["run", "--resume", "-o", "fifo.json"], ["--resume", "fifo.json", "named pipe"]),
        (["run", "--resume", "-o", "zero.json"], ["--resume", "zero.json", "character device"]),
        (["run", "--prompts", "adir.txt"], ["--prompts", "adir.txt", "a directory"]),
    ],
)
def test_devices_fifos_and_directories_are_refused_at_once(tmp_path, specials, args, words):
    (tmp_path / "adir.txt").mkdir()
    one_error_line(sb(*args, cwd=tmp_path, timeout=60), *words)
    assert not (tmp_path / "p.png").exists() and not (tmp_path / "r.html").exists()


def test_endpoint_prompt_file_fifo_is_refused_before_any_request(tmp_path, specials):
    proc = sb(
        "endpoint", "http://127.0.0.1:9", "--model", "m", "--prompts", "fifo.jsonl",
        cwd=tmp_path, timeout=60,
    )  # fmt: skip
    one_error_line(proc, "--prompts", "fifo.jsonl", "named pipe")


def test_a_socket_is_not_a_file(tmp_path):
    path = tmp_path / "s.jsonl"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        with pytest.raises(UsageError, match=r"s\.jsonl: it is a socket, not a regular file"):
            read_prompt_file(str(path))


@pytest.mark.parametrize(
    "name, args, limit",
    [
        ("big.txt", ["run", "--prompts", "big.txt"], "4 GiB"),
        ("big.json", ["compare", "big.json", "big.json"], "1 GiB"),
        ("big.yaml", ["run", "--config", "big.yaml"], "16 MiB"),
        ("shape.json", ["run", "--random-weights", "shape.json"], "16 MiB"),
    ],
)
def test_oversized_files_are_refused_on_their_size(tmp_path, name, args, limit):
    kind = {"txt": "prompts", "json": "results", "yaml": "config"}[name.split(".")[1]]
    kind = "config" if name == "shape.json" else kind
    sparse(tmp_path / name, LIMITS[kind] + 1)
    one_error_line(sb(*args, cwd=tmp_path, timeout=60), name, f"larger than {limit}")


def test_the_limit_holds_while_reading_a_file_that_states_no_size():
    # files of /proc state a size of 0: the read itself stops one byte past the limit
    assert os.stat("/proc/self/maps").st_size == 0
    with pytest.raises(UsageError, match="larger than 64 bytes"):
        read_bounded("/proc/self/maps", "config", "--config", limit=64)
    assert read_bounded("/proc/self/maps", "config", limit=1 << 20).startswith(b"")


def test_a_file_swapped_for_a_fifo_after_the_check_cannot_block(tmp_path):
    # os.stat is made to say "regular file": the O_NONBLOCK open and the check on the open
    # descriptor must still refuse the FIFO, in a child process so that a hang fails the test
    fifo = tmp_path / "p.jsonl"
    os.mkfifo(fifo)
    code = (
        "import os, stat, sys\n"
        "from streambench import reading\n"
        "from streambench.errors import UsageError\n"
        "real = os.stat\n"
        "class Regular:\n"
        "    st_mode = stat.S_IFREG | 0o644\n"
        "    st_size = 10\n"
        "reading.os.stat = lambda p: Regular()\n"
        "try:\n"
        "    reading.read_bounded(sys.argv[1], 'prompts', '--prompts')\n"
        "except UsageError as exc:\n"
        "    print(exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(fifo)],
        capture_output=True, text=True, env=ENV, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "named pipe (FIFO), not a regular file" in proc.stdout


def test_a_missing_file_and_a_good_file(tmp_path):
    with pytest.raises(UsageError, match=r"cannot read --config nope\.yaml: No such file"):
        read_bounded("nope.yaml", "config", "--config")
    (tmp_path / "ok.yaml").write_text("seed: 3\n")
    link = tmp_path / "link.yaml"
    link.symlink_to(tmp_path / "ok.yaml")  # a symlink to a regular file is read
    assert read_bounded(link, "config") == b"seed: 3\n"


# -- 10. a prompt's characters are bounded before tokenizing --------------------------------------
class CountingTokenizer:
    """The tiny tokenizer, recording the longest text it was given."""

    def __init__(self) -> None:
        self.tok = build_tokenizer()
        self.longest = 0
        self.chat_template = self.tok.chat_template

    def __call__(self, text, **kw):
        self.longest = max(self.longest, len(text))
        return self.tok(text, **kw)

    def __getattr__(self, name):
        return getattr(self.tok, name)


def test_a_prompt_over_the_context_bound_is_never_tokenized(tmp_path):
    path = tmp_path / "p.jsonl"
    long = "x" * (40 * 32 + 1)  # one character over 32 per token of a 40-token context
    lines = [
        {"prompt": "short"},
        {"prompt": long},
        {"messages": [{"role": "user", "content": long}]},
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    tok = CountingTokenizer()
    spec = WorkloadSpec(prompts=str(path), output_len=4)
    with pytest.raises(UsageError, match=r"p\.jsonl \(line 2\): 1281 characters, more than"):
        build_requests(spec, read_prompt_file(str(path)), tokenizer=tok, context=40)
    spec.skip_invalid = True
    reqs, skipped = build_requests(spec, read_prompt_file(str(path)), tokenizer=tok, context=40)
    assert len(reqs) == 1 and [s.split(":")[0] for s in skipped] == ["line 2", "line 3"]
    assert tok.longest < 100  # the long prompts were refused before the tokenizer saw them


def test_without_a_known_context_the_absolute_bound_holds(tmp_path, monkeypatch):
    monkeypatch.setattr(build_module, "MAX_PROMPT_CHARS", 1000)
    path = tmp_path / "p.txt"
    path.write_text("ok\n" + "y" * 1001 + "\n")
    spec = WorkloadSpec(prompts=str(path), output_len=4)
    with pytest.raises(UsageError, match=r"\(line 2\): 1001 characters, more than the 1000"):
        build_requests(spec, read_prompt_file(str(path)), tokenizer=None, for_run=False)
    assert build_module.char_limit(None) == 1000 and build_module.char_limit(10) == 320


def test_run_refuses_a_megabytes_line_quickly(tmp_path):
    path = tmp_path / "long.txt"
    path.write_text("short\n" + "x" * 3_000_000 + "\n")
    proc = sb("run", "--prompts", str(path), "--output-len", "4", "-o", str(tmp_path / "o.json"))
    one_error_line(proc, "long.txt (line 2)", "3000000 characters", "--skip-invalid")
    assert not (tmp_path / "o.json").exists()


# -- 12. lines end at \n and \r\n only ------------------------------------------------------------
ODD = ["\u2028", "\u2029", "\x85", "\f", "\v", "\x1c", "\x1d", "\x1e"]


def test_text_lines_split_on_newlines_only(tmp_path):
    path = tmp_path / "p.txt"
    first = "one" + "".join(ODD) + "two"
    path.write_bytes(f"{first}\r\nthree\n".encode())
    items = read_prompt_file(str(path)).items
    assert [i.text for i in items] == [first, "three"] and items[1].where == "line 2"


def test_a_jsonl_line_with_u2028_parses_and_line_numbers_hold(tmp_path):
    path = tmp_path / "p.jsonl"
    # json.dumps(ensure_ascii=False) writes U+2028 raw: valid JSON, valid JSON Lines
    good = [json.dumps({"prompt": f"a{c}b"}, ensure_ascii=False) for c in ODD[:3]]
    path.write_text("\r\n".join(good) + "\r\n[1]\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"\(line 4\): not a JSON object"):
        read_prompt_file(str(path))
    path.write_text("\n".join(good) + "\n", encoding="utf-8")
    items = read_prompt_file(str(path)).items
    assert [i.text for i in items] == [f"a{c}b" for c in ODD[:3]]
    assert [i.where for i in items] == ["line 1", "line 2", "line 3"]


# -- 16. numbers: the digits 0-9, at most 100 characters ------------------------------------------
@pytest.mark.parametrize(
    "args, words",
    [
        (["run", "--trials", "²"], ["--trials", "'²'", "digits 0-9"]),
        (["run", "--batch-size", "1,٣"], ["--batch-size", "digits 0-9"]),
        (["run", "--seed", NINES], ["--seed", "too long"]),
        (["run", "--in-out", "3²-4"], ["--in-out", "digits 0-9"]),
        (["run", "--in-out", f"{NINES}-4"], ["--in-out", "too long"]),
        (["run", "--temperature", "٠.٥"], ["--temperature", "digits 0-9"]),
        (["run", "--max-prompts", "٣", "--prompts", "p.txt"], ["--max-prompts", "digits 0-9"]),
        (["run", "--output-len", NINES, "--prompts", "p.txt"], ["--output-len", "too long"]),
        (["run", "--length-spread", "٠.٥"], ["--length-spread"]),
        (["run", "--generate-kwargs", f'{{"a": {NINES}}}'], ["--generate-kwargs", "4,300 digits"]),
        (["run", "--generate-kwargs", "[" * 100_000], ["--generate-kwargs", "nested too deeply"]),
        (["compare", "a.json", "b.json", "--threshold", "٥"], ["--threshold", "digits 0-9"]),
        (["endpoint", "http://127.0.0.1:9", "--model", "m", "--requests", "٣"], ["--requests"]),
        (["endpoint", "http://127.0.0.1:9", "--model", "m", "--seed", NINES], ["--seed"]),
        (["endpoint", "http://127.0.0.1:9", "--model", "m", "--concurrency", "١"], ["digits"]),
        (["endpoint", "http://127.0.0.1:9", "--model", "m", "--request-rate", "٢"], ["digits"]),
        (["endpoint", "http://127.0.0.1:9", "--model", "m", "--burstiness", "²"], ["digits"]),
    ],
)
def test_non_ascii_and_overlong_numbers_in_options(tmp_path, args, words):
    (tmp_path / "p.txt").write_text("hello\n")
    one_error_line(sb(*args, cwd=tmp_path, timeout=60), *words)


@pytest.mark.parametrize(
    "yaml_text, words",
    [
        ('num_trials: "٣"\n', ["c.yaml", "num_trials", "digits 0-9"]),
        (f"seed: {NINES}\n", ["c.yaml", "4300 digits"]),
        (f"seed: 0x{'f' * 5000}\n", ["c.yaml", "seed", "out of range", "bit number"]),
        (f"temperature: 0x{'f' * 5000}\n", ["c.yaml", "temperature", "not a number"]),
        ('in_out_pairs: ["32-²"]\n', ["c.yaml", "in_out_pairs", "digits 0-9"]),
        ("warm_up: 2024-13-45\n", ["c.yaml", "YAML cannot read"]),
    ],
)
def test_non_ascii_and_overlong_numbers_in_config_keys(tmp_path, yaml_text, words):
    (tmp_path / "c.yaml").write_text(yaml_text, encoding="utf-8")
    one_error_line(sb("run", "--config", "c.yaml", cwd=tmp_path, timeout=60), *words)


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("p.jsonl", '{"prompt": "a"}\n{"prompt": "b", "output_tokens": "²"}\n', ["line 2", "0-9"]),
        ("p.jsonl", '{"prompt": "a", "output_tokens": "٣"}\n', ["line 1", "digits 0-9"]),
        (
            "p.jsonl",
            f'{{"prompt": "a"}}\n{{"prompt": "b", "output_tokens": {NINES}}}\n',
            ["line 2", "4,300 digits"],
        ),
        ("p.jsonl", f'{{"prompt": "a", "output_tokens": "{NINES}"}}\n', ["line 1", "too long"]),
        ("p.csv", "prompt,output_tokens\nhi,3\nho,٣\n", ["row 3", "digits 0-9"]),
        ("p.json", f'[{{"conversations": [], "n": {NINES}}}]', ["4,300 digits"]),
    ],
)
def test_non_ascii_and_overlong_numbers_in_prompt_files(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UsageError) as err:
        read_prompt_file(str(path))
    for word in [name, *words]:
        assert word in str(err.value), (word, str(err.value))
    assert "\n" not in str(err.value)


def test_a_prompt_file_number_is_exit_2_naming_file_and_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a"}\n{"prompt": "b", "output_tokens": "²"}\n', encoding="utf-8")
    proc = sb("run", "--prompts", str(path), "--output-len", "from-data", timeout=60)
    one_error_line(proc, "p.jsonl (line 2)", "output_tokens", "digits 0-9")


# -- 17. a chat template that raises --------------------------------------------------------------
STRICT = (
    "{% for m in messages %}{% if loop.index0 > 0 and m['role'] == messages[loop.index0 - 1]"
    "['role'] %}{{ raise_exception('Conversation roles must alternate user/assistant') }}"
    "{% endif %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
)
TWICE = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]


def strict_jsonl(path: Path) -> Path:
    lines = [{"messages": [{"role": "user", "content": "hi"}]}, {"messages": TWICE}]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_a_raising_chat_template_names_file_and_line_and_can_be_skipped(tmp_path):
    tok = build_tokenizer()
    tok.chat_template = STRICT
    path = strict_jsonl(tmp_path / "p.jsonl")
    spec = WorkloadSpec(prompts=str(path), output_len=4)
    for for_run in (True, False):
        with pytest.raises(UsageError) as err:
            build_requests(spec, read_prompt_file(str(path)), tokenizer=tok, for_run=for_run)
        msg = str(err.value)
        assert "p.jsonl (line 2): the chat template refused" in msg and "alternate" in msg
        assert "\n" not in msg
    spec.skip_invalid = True
    reqs, skipped = build_requests(spec, read_prompt_file(str(path)), tokenizer=tok)
    assert len(reqs) == 1 and skipped[0].startswith("line 2: the chat template refused")


@pytest.fixture(scope="module")
def strict_model(tmp_path_factory) -> Path:
    path = save_tiny_model(tmp_path_factory.mktemp("strict") / "m", max_position_embeddings=256)
    tok = build_tokenizer()
    tok.chat_template = STRICT
    tok.save_pretrained(path)
    return path


def test_run_with_a_raising_chat_template(tmp_path, strict_model):
    path = strict_jsonl(tmp_path / "p.jsonl")
    out = tmp_path / "o.json"
    base = ["run", str(strict_model), "--prompts", str(path), "--output-len", "2"]
    base += ["--warmup", "0", "--trials", "1", "--isolate", "none", "-o", str(out)]
    one_error_line(sb(*base, timeout=240), "p.jsonl (line 2)", "chat template", "alternate")
    assert not out.exists()
    proc = sb(*base, "--skip-invalid", timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "skipped" in proc.stderr and "line 2" in proc.stderr
    entry = json.loads(out.read_text())["configurations"][0]
    assert entry["status"] == "ok"


# -- 18. a CSV cell as long as a prompt may be ----------------------------------------------------
def test_a_csv_cell_over_131072_characters_is_read(tmp_path):
    import csv

    path = tmp_path / "p.csv"
    cell = "z" * 200_000
    path.write_text(f'prompt\n"{cell}"\nshort\n')
    assert [i.text for i in read_prompt_file(str(path)).items] == [cell, "short"]
    assert csv.field_size_limit() == 131072  # the reader leaves the module's limit as it was


def test_a_csv_cell_over_the_prompt_bound_says_so(tmp_path, monkeypatch):
    from streambench.workloads import files

    monkeypatch.setattr(files, "MAX_PROMPT_CHARS", 1000)
    path = tmp_path / "p.csv"
    path.write_text(f'prompt\nok\n"{"z" * 1001}"\n')
    with pytest.raises(UsageError, match=r"p\.csv \(line 3\): a cell longer than 1000 characters"):
        read_prompt_file(str(path))
    assert MAX_PROMPT_CHARS == 32 * 1_048_576


# -- 23. unknown JSONL keys are named once --------------------------------------------------------
def test_unknown_jsonl_keys_are_named_once(tmp_path):
    path = tmp_path / "p.jsonl"
    lines = [
        {"prompt": "a", "max_tokens": 5},
        {"prompt": "b", "max_tokens": 6, "id": 2},
        {"prompt": "c", "output_tokens": 3},
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    f = read_prompt_file(str(path))
    assert f.unknown_keys == (("id", "line 2"), ("max_tokens", "line 1"))
    assert len(f.notes) == 1
    assert "'id' (line 2), 'max_tokens' (line 1)" in f.notes[0] and "p.jsonl" in f.notes[0]
    clean = tmp_path / "q.jsonl"
    clean.write_text('{"prompt": "a", "output_tokens": 2}\n')
    assert read_prompt_file(str(clean)).notes == []


def test_run_warns_once_about_unknown_jsonl_keys(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a", "max_tokens": 5}\n{"prompt": "b", "max_tokens": 6}\n')
    out = tmp_path / "o.json"
    proc = sb(
        "run", "--prompts", str(path), "--output-len", "2", "--warmup", "0", "--trials", "1",
        "--batch-size", "1,2", "-o", str(out), timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("unknown key(s) ignored: 'max_tokens' (line 1)") == 1, proc.stderr
