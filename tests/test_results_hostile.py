"""Hostile results files for ``streambench compare`` and ``streambench plot``, and hostile text in
the reports. The files are real ones, written by ``streambench run`` on the embedded tiny model,
then corrupted here.

- the regression gate fails closed: whatever it cannot compare is exit 1, never a pass;
- a configuration that appears several times is matched one-to-one, in order;
- a malformed file is exit 2 with one line naming the file and the problem;
- text from a file or an option (model names, errors) cannot break a Markdown table or inject
  rich markup; unknown token counts show as "?" (never "None")."""

from __future__ import annotations

import copy
import csv
import doctest
import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from verdict_docs import scale_trials, set_trials

from streambench import report
from streambench.cli.run import main, parse_threshold
from streambench.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError
from streambench.results.writers import MD_COLUMNS

ENV_COLUMNS = "250"  # wide console tables: one table row per line


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> Path:
    """``d.json``/``d.jsonl``: 4-2 three times (duplicates) then 4-1 (one generated token); 3 trials
    each (the fewest that give ``compare`` an interval)."""
    out = tmp_path_factory.mktemp("real")
    cmd = [sys.executable, "-m", "streambench", "run", "--in-out", "4-2,4-2,4-2,4-1"]
    cmd += ["--trials", "3", "--warmup", "0", "-o", str(out / "d.json"), "-o", str(out / "d.jsonl")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture
def doc(real) -> dict:
    return json.loads((real / "d.json").read_text())


@pytest.fixture(autouse=True)
def _wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", ENV_COLUMNS)


def write(tmp_path: Path, name: str, value) -> str:
    path = tmp_path / name
    if isinstance(value, bytes):
        path.write_bytes(value)
    elif isinstance(value, str):
        path.write_text(value)
    else:
        path.write_text(json.dumps(value))  # NaN and Infinity written as JSON extensions
    return str(path)


def sb(capsys, *args: str) -> tuple[int, str, str]:
    """``streambench ARGS`` in this process: exit code, stdout, stderr."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(code: int, err: str, *words: str) -> None:
    assert code == EXIT_USAGE, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("streambench: error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, lines[0])


def stats(entry: dict, key: str = "first_token_s") -> dict:
    return entry["aggregates"][key]


# -- 1. the gate fails closed --------------------------------------------------------------------
def test_nan_median_in_new_fails_the_gate(capsys, tmp_path, doc, real):
    new = copy.deepcopy(doc)
    stats(new["configurations"][0])["median"] = float("nan")
    code, out, _ = sb(capsys, "compare", str(real / "d.json"), write(tmp_path, "n.json", new))
    assert code == EXIT_FAILED, out
    assert "NEW is NaN" in out and "could not compare" in out


def test_null_median_in_new_fails_the_gate(capsys, tmp_path, doc, real):
    new = copy.deepcopy(doc)
    stats(new["configurations"][1], "rest_token_mean_s")["median"] = None
    code, out, _ = sb(capsys, "compare", str(real / "d.json"), write(tmp_path, "n.json", new))
    assert code == EXIT_FAILED, out
    assert "cannot compare rest tokens median: NEW missing" in out


@pytest.mark.parametrize("side", ["old", "new"])
def test_null_aggregates_with_status_ok_fails_the_gate(capsys, tmp_path, doc, real, side):
    bad = copy.deepcopy(doc)
    bad["configurations"][2]["aggregates"] = None
    files = [str(real / "d.json"), write(tmp_path, "bad.json", bad)]
    if side == "old":
        files.reverse()
    code, out, _ = sb(capsys, "compare", *files)
    assert code == EXIT_FAILED, out
    assert f"{side.upper()} has status ok but no aggregates" in out


def test_nan_old_and_new_100x_slower_fails_the_gate(capsys, tmp_path, doc):
    old, new = copy.deepcopy(doc), copy.deepcopy(doc)
    for entry in old["configurations"]:
        stats(entry)["median"] = float("nan")
    for entry in new["configurations"]:
        stats(entry)["median"] *= 100
    code, out, _ = sb(
        capsys, "compare", write(tmp_path, "o.json", old), write(tmp_path, "n.json", new)
    )
    assert code == EXIT_FAILED, out
    assert "OLD is NaN" in out


@pytest.mark.parametrize(
    "text", ["nan", "NaN%", "inf", "-inf", "infinity%", "1e400", "-5%", "1001%", "", "five"]
)
def test_threshold_must_be_a_finite_bounded_percentage(capsys, real, text):
    d = str(real / "d.json")
    code, _, err = sb(capsys, "compare", d, d, "--threshold", text)
    assert_usage_error(code, err, "--threshold")


@pytest.mark.parametrize(
    ("text", "value"), [("0", 0.0), ("5%", 0.05), (" 12.5 % ", 0.125), ("1000%", 10.0)]
)
def test_threshold_accepts_percentages(text, value):
    assert parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), -0.01, 10.5, "5%", None, True])
def test_compare_documents_refuses_a_threshold_that_switches_the_gate_off(doc, threshold):
    with pytest.raises(ValueError, match="threshold"):
        report.compare_documents(doc, doc, threshold)


@pytest.mark.parametrize("side", [0, 1])
@pytest.mark.parametrize(
    ("value", "why"),
    [
        (None, "missing"),
        (float("nan"), "is NaN"),
        (float("inf"), "is infinite"),
        (-0.002, "is negative"),
        (0.0, "is 0"),
        ("0.002", "is not a number"),
        (True, "is not a number"),
        ([0.002], "is not a number"),
    ],
)
@pytest.mark.parametrize("metric", ["first_token_s", "rest_token_mean_s"])
def test_any_unusable_metric_on_either_side_fails_closed(doc, side, value, why, metric):
    """``compare_documents`` itself (not only the CLI, whose loader refuses strings) fails closed
    on every value that is not a positive finite number."""
    docs = [copy.deepcopy(doc), copy.deepcopy(doc)]
    stats(docs[side]["configurations"][1], metric)["median"] = value
    rows, failed = report.compare_documents(docs[0], docs[1], 0.05)
    assert failed
    row = rows[1]
    assert row.fails and f"{'OLD' if side == 0 else 'NEW'} {why}" in row.problem
    assert not any(r.fails for i, r in enumerate(rows) if i != 1)  # the others still compare


@pytest.mark.parametrize("status", ["failed", "interrupted", "weird"])
def test_a_configuration_not_ok_in_new_fails_the_gate(doc, status):
    new = copy.deepcopy(doc)
    new["configurations"][0].update(status=status, error="boom\nsecond line", aggregates=None)
    rows, failed = report.compare_documents(doc, new, 0.05)
    assert failed and rows[0].fails
    assert rows[0].problem == f"NEW {status}: boom second line"


def test_a_new_configuration_that_failed_fails_the_gate_but_a_new_ok_one_does_not(doc):
    extra = copy.deepcopy(doc["configurations"][0])
    extra["settings"]["batch_size"] = 7
    new = copy.deepcopy(doc)
    new["configurations"].append(extra)
    rows, failed = report.compare_documents(doc, new, 0.05)
    assert not failed and rows[-1].problem == "new in NEW (no baseline)"
    extra.update(status="failed", error="out of memory", aggregates=None)
    rows, failed = report.compare_documents(doc, new, 0.05)
    assert failed and rows[-1].problem == "new in NEW and failed: out of memory"


def test_nothing_compared_fails_the_gate(capsys, tmp_path, doc):
    empty = {**doc, "configurations": []}
    e = write(tmp_path, "empty.json", empty)
    code, out, _ = sb(capsys, "compare", e, e)
    assert code == EXIT_FAILED and "nothing compared" in out
    failed_only = copy.deepcopy(doc)
    for entry in failed_only["configurations"]:
        entry.update(status="failed", error="x", aggregates=None)
    rows, failed = report.compare_documents(failed_only, doc, 0.05)
    assert failed and rows[-1].label == "(nothing compared)"


def steady(doc: dict) -> dict:
    """``doc`` with first-token latencies of 10.0, 10.1, 10.2 ms (and later tokens of 1.00, 1.01,
    1.02 ms) in every configuration's trials: the real ones are as noisy as the machine (and
    trials that vary by over 50 % are never judged slower); these make the verdicts exact."""
    out = copy.deepcopy(doc)
    for entry in out["configurations"]:
        # exact trials: the machine's load while the fixture ran (a busy warning) is not theirs
        entry.pop("warnings", None)
        set_trials(entry, "first_token_s", [0.0100, 0.0101, 0.0102])
        if entry["aggregates"]["rest_token_mean_s"] is not None:
            set_trials(entry, "rest_token_mean_s", [0.00100, 0.00101, 0.00102])
    return out


def test_real_slowdowns_still_fail_and_the_threshold_is_inclusive(doc):
    old = steady(doc)
    new = copy.deepcopy(old)
    for entry in new["configurations"]:
        scale_trials(entry, "first_token_s", 1.25)
    # the interval of NEW/OLD is [12.5/10.2, 12.75/10.0] = [1.225, 1.275]
    rows, failed = report.compare_documents(old, new, 0.30)
    assert not failed and all(r.intervals["first token median"].verdict == "same" for r in rows)
    rows, failed = report.compare_documents(old, new, 0.20)
    assert failed and all(r.regressed == ["first token median"] for r in rows)
    iv = rows[0].intervals["first token median"]
    assert (iv.low, iv.high, iv.coverage) == pytest.approx((12.5 / 10.2, 12.75 / 10.0, 0.9))
    assert (iv.n_old, iv.n_new) == (3, 3)
    same = report.compare_documents(old, old, 0.0)
    assert not same[1]


def test_one_generated_token_has_no_rest_tokens_to_compare(doc):
    """4-1 has ``rest_token_mean_s: null`` on both sides by design: not a failure; but a value
    that disappears in NEW is."""
    single = {**doc, "configurations": [doc["configurations"][3]]}
    assert stats(single["configurations"][0], "first_token_s")["median"] > 0
    assert single["configurations"][0]["aggregates"]["rest_token_mean_s"] is None
    rows, failed = report.compare_documents(single, single, 0.05)
    assert not failed and rows[0].compared
    two = {**doc, "configurations": [doc["configurations"][0]]}
    new = copy.deepcopy(two)
    new["configurations"][0]["aggregates"]["rest_token_mean_s"] = None
    rows, failed = report.compare_documents(two, new, 0.05)
    assert failed and "rest tokens median: NEW missing" in rows[0].problem


# -- 2. duplicates, one-to-one -------------------------------------------------------------------
def test_a_file_with_duplicates_compared_with_itself_passes(capsys, real):
    d = str(real / "d.json")
    code, out, _ = sb(capsys, "compare", d, d)
    assert code == EXIT_OK, out
    assert "missing in NEW" not in out and "new in NEW" not in out
    assert "regression:" not in out and "│ slower" not in out
    assert out.count("1.000×") >= 3 * 3 + 2  # 4-1 has no rest tokens ratio
    rows, failed = report.compare_documents(report.load_document(d), report.load_document(d), 0.05)
    assert not failed and [r.label for r in rows][:3] == [
        "streambench/tiny-llama 4-2 bs1", "streambench/tiny-llama 4-2 bs1 #2",
        "streambench/tiny-llama 4-2 bs1 #3",
    ]  # fmt: skip
    assert all(r.ratio("first token median") == 1.0 for r in rows)
    assert "4-2 bs1 #2" in out and "4-2 bs1 #3" in out


def test_duplicates_match_in_order(doc):
    doc = steady(doc)
    new = copy.deepcopy(doc)
    scale_trials(new["configurations"][1], "first_token_s", 3)  # the 2nd occurrence only
    rows, failed = report.compare_documents(doc, new, 0.05)
    assert failed
    assert [r.regressed for r in rows] == [[], ["first token median"], [], []]
    assert rows[1].ratio("first token median") == pytest.approx(3.0)


def test_fewer_or_more_duplicates_in_new(doc):
    fewer = copy.deepcopy(doc)
    del fewer["configurations"][2]  # the 3rd 4-2
    rows, failed = report.compare_documents(doc, fewer, 0.05)
    assert failed and [r.problem for r in rows].count("missing in NEW") == 1
    assert rows[2].problem == "missing in NEW" and rows[2].label.endswith("#3")
    more = copy.deepcopy(doc)
    more["configurations"].insert(3, copy.deepcopy(doc["configurations"][2]))  # a 4th 4-2
    rows, failed = report.compare_documents(doc, more, 0.05)
    assert not failed
    assert [r.problem for r in rows].count("new in NEW (no baseline)") == 1


def test_jsonl_and_json_of_the_same_run_compare_equal(capsys, real):
    code, out, _ = sb(capsys, "compare", str(real / "d.jsonl"), str(real / "d.json"))
    assert code == EXIT_OK, out
    assert out.count("1.000×") >= 3 * 3 + 2  # 4-1 has no rest tokens ratio


# -- 3. malformed files: exit 2, one line naming the file ------------------------------------------
def _corrupt(doc: dict, how: str):
    d = copy.deepcopy(doc)
    entries = d["configurations"]
    if how == "configurations dict":
        d["configurations"] = {"a": entries[0]}
    elif how == "configurations null":
        d["configurations"] = None
    elif how == "configurations ints":
        d["configurations"] = [1, 2]
    elif how == "entry a string":
        entries[1] = "4-2"
    elif how == "string median":
        stats(entries[1])["median"] = "0.002"
    elif how == "bool median":
        stats(entries[1])["median"] = True
    elif how == "stats a list":
        entries[1]["aggregates"]["first_token_s"] = [0.002]
    elif how == "aggregates a number":
        entries[1]["aggregates"] = 3
    elif how == "config missing":
        del entries[0]["config"]
    elif how == "status missing":
        del entries[0]["status"]
    elif how == "batch size a string":
        entries[0]["settings"]["batch_size"] = "1"
    elif how == "latency list of strings":
        entries[0]["trials"][0]["token_latencies_s"] = ["1", "2"]
    elif how == "trials a dict":
        entries[0]["trials"] = {"0": entries[0]["trials"][0]}
    elif how == "no schema":
        del d["schema"]
    elif how == "schema a number":
        d["schema"] = 1
    elif how == "schema foreign":
        d["schema"] = "otherbench/1"
    elif how == "schema not a number":
        d["schema"] = "streambench.results/one"
    elif how == "schema 0":
        d["schema"] = "streambench.results/0"
    elif how == "top level list":
        return [d]
    return d


MALFORMED = [
    ("configurations dict", "'configurations' is an object"),
    ("configurations null", "'configurations' is null"),
    ("configurations ints", "configurations[0] is a number"),
    ("entry a string", "configurations[1] is a string"),
    ("string median", "configurations[1].aggregates.first_token_s.median is a string"),
    ("bool median", "median is true"),
    ("stats a list", "first_token_s is a list"),
    ("aggregates a number", "aggregates is a number"),
    ("config missing", "configurations[0].config is missing"),
    ("status missing", "configurations[0].status is missing"),
    ("batch size a string", "settings.batch_size is a string"),
    ("latency list of strings", "trials[0].token_latencies_s[0] is a string"),
    ("trials a dict", "configurations[0].trials is an object"),
    ("no schema", "no 'schema' key"),
    ("schema a number", "'schema' is a number"),
    ("schema foreign", "unknown schema 'otherbench/1'"),
    ("schema not a number", "unknown schema"),
    ("schema 0", "unknown schema version"),
    ("top level list", "holds a list"),
]


@pytest.mark.parametrize("command", ["compare-new", "compare-old", "plot"])
@pytest.mark.parametrize(("how", "message"), MALFORMED)
def test_malformed_documents_are_exit_2_naming_the_file(
    capsys, tmp_path, doc, real, command, how, message
):
    bad = write(tmp_path, "bad.json", _corrupt(doc, how))
    if command == "plot":
        args = ["plot", bad, "-o", str(tmp_path / "p.png")]
    elif command == "compare-new":
        args = ["compare", str(real / "d.json"), bad]
    else:
        args = ["compare", bad, str(real / "d.json")]
    code, _, err = sb(capsys, *args)
    assert_usage_error(code, err, bad, message)
    assert not (tmp_path / "p.png").exists()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("l.jsonl", "[1, 2]\n", "line 1 is a list, not a configuration object"),
        ("l.jsonl", '{"config": {}, "status": "ok"}\n42\n', "line 2 is a number"),
        ("l.jsonl", "\n\n", "is empty"),
        ("l.jsonl", "{not json\n", "line 1 is not JSON"),
        ("j.json", "", "is not JSON"),
        ("j.json", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("j.json", '{"schema": "streambench.results/1"}\n{}\n', "name the file .jsonl"),
        ("j.json", b"\xff\xfe{\x00}\x00", "is not UTF-8 text (byte 0xff at offset 0)"),
        ("j.json", b'{"schema": "streambench.results/1", "m": "\xe9"}', "is not UTF-8"),
    ],
)
def test_unreadable_files_are_exit_2_naming_the_file(
    capsys, tmp_path, real, name, content, message
):
    bad = write(tmp_path, name, content)
    code, _, err = sb(capsys, "compare", str(real / "d.json"), bad)
    assert_usage_error(code, err, bad, message)


def test_a_jsonl_line_with_a_bad_entry_names_the_line(capsys, tmp_path, real):
    lines = (real / "d.jsonl").read_text().splitlines()
    entry = json.loads(lines[2])
    entry["aggregates"]["rest_token_mean_s"]["median"] = "slow"
    lines[2] = json.dumps(entry)
    bad = write(tmp_path, "bad.jsonl", "\n".join(lines) + "\n")
    code, _, err = sb(capsys, "compare", str(real / "d.jsonl"), bad)
    assert_usage_error(code, err, bad, "configurations[2].aggregates.rest_token_mean_s.median")


def test_missing_file_and_directory_are_exit_2(capsys, tmp_path, real):
    code, _, err = sb(capsys, "compare", str(real / "d.json"), str(tmp_path / "nope.json"))
    assert_usage_error(code, err, "nope.json", "cannot read")
    # -o elsewhere: an output inside the directory named as input is refused for that first
    code, _, err = sb(capsys, "plot", str(tmp_path), "-o", str(real / "p.png"))
    assert_usage_error(code, err, str(tmp_path), "cannot read")


def test_a_newer_schema_says_upgrade(capsys, tmp_path, doc, real):
    newer = {**doc, "schema": "streambench.results/99"}
    path = write(tmp_path, "newer.json", newer)
    code, _, err = sb(capsys, "compare", str(real / "d.json"), path)
    assert_usage_error(code, err, path, "written by a newer streambench", "upgrade")
    lines = [json.dumps({**json.loads(line), "schema": "streambench.results/3"}) for line in
             (real / "d.jsonl").read_text().splitlines()]  # fmt: skip
    path = write(tmp_path, "newer.jsonl", "\n".join(lines))
    code, _, err = sb(capsys, "plot", path, "-o", str(tmp_path / "p.png"))
    assert_usage_error(code, err, path, "line 1 was written by a newer streambench")


def test_schema_readers_are_the_hook_for_the_next_version(monkeypatch, tmp_path, doc):
    """results/2 (the current version) is read as it is; a reader registered for results/3 turns
    such a file into the current form (and it is then no longer 'newer')."""
    assert report.load_document(write(tmp_path, "v2.json", doc)) == doc

    def read_v3(d: dict, source: str) -> dict:
        d = {**d, "schema": report.SCHEMA, "configurations": d.pop("runs")}
        return report.SCHEMA_READERS[2](d, source)

    v3 = {**doc, "schema": "streambench.results/3", "runs": doc["configurations"]}
    del v3["configurations"]
    path = write(tmp_path, "v3.json", v3)
    with pytest.raises(UsageError, match="newer streambench"):
        report.load_document(path)
    monkeypatch.setitem(report.SCHEMA_READERS, 3, read_v3)
    assert report.load_document(path)["configurations"] == doc["configurations"]


def test_utf8_bom_and_json_nan_are_read(tmp_path, doc):
    """A BOM (an editor on Windows) is fine; NaN (Python's json writes it) is a number, for the
    gate to refuse (exit 1), not a malformed file."""
    d = copy.deepcopy(doc)
    stats(d["configurations"][0])["median"] = float("nan")
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(d).encode())
    loaded = report.load_document(path)
    assert math.isnan(stats(loaded["configurations"][0])["median"])


def test_load_document_errors_are_usage_errors_and_value_errors(tmp_path):
    with pytest.raises(UsageError) as info:
        report.load_document(write(tmp_path, "x.json", {"schema": "streambench.results/1"}))
    assert isinstance(info.value, ValueError)  # callers that catch ValueError keep working
    assert "x.json" in str(info.value) and "'configurations' is null" in str(info.value)


def test_report_docstring_examples():
    result = doctest.testmod(report, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 4 and result.failed == 0


def test_plot_skips_holes_in_per_token_lists(capsys, tmp_path, doc):
    """An endpoint file may hold null in a per-token list (NaN written as null), a foreign one
    NaN: the plot leaves that trial out of the line instead of failing or drawing garbage."""
    d = copy.deepcopy(doc)
    d["configurations"][0]["trials"][0]["token_latencies_s"][1] = None
    d["configurations"][1]["trials"][1]["token_latencies_s"][0] = float("nan")
    d["configurations"][1]["trials"][1]["first_token_s"] = float("nan")
    d["configurations"][2]["aggregates"]["peak_memory_bytes"] = float("inf")
    out = tmp_path / "p.png"
    code, _, err = sb(capsys, "plot", write(tmp_path, "holes.json", d), "-o", str(out))
    assert code == EXIT_OK, err
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_plot_problems_name_the_file_or_the_output(capsys, tmp_path, doc):
    failed = copy.deepcopy(doc)
    for entry in failed["configurations"]:
        entry.update(status="failed", error="x", aggregates=None, trials=[])
    path = write(tmp_path, "failed.json", failed)
    code, _, err = sb(capsys, "plot", path, "-o", str(tmp_path / "p.png"))
    assert_usage_error(code, err, path, "nothing to plot")
    blocker = tmp_path / "file"
    blocker.write_text("")
    ok = write(tmp_path, "ok.json", doc)
    code, _, err = sb(capsys, "plot", ok, "-o", str(blocker / "p.png"))
    assert_usage_error(code, err, "cannot write -o", str(blocker / "p.png"))


def test_cli_end_to_end_exit_codes(tmp_path, doc, real):
    """The same as a user sees it, in a subprocess: 2 for a bad file, 1 for a NaN median."""
    bad = write(tmp_path, "bad.json", _corrupt(doc, "configurations dict"))
    nan = copy.deepcopy(doc)
    stats(nan["configurations"][0])["median"] = float("nan")
    nan_path = write(tmp_path, "nan.json", nan)
    base = [sys.executable, "-m", "streambench", "compare", str(real / "d.json")]
    proc = subprocess.run([*base, bad], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert bad in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([*base, nan_path], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr


# -- 4. hostile text in reports ------------------------------------------------------------------
_CELL = re.compile(r"(?:\\.|[^|\\])*")  # a GFM table cell: escaped characters or not a pipe


def md_cells(line: str) -> list[str]:
    """Split a Markdown table row as GitHub does (``\\|`` is not a delimiter)."""
    assert line.startswith("|") and line.endswith("|"), line
    cells, rest = [], line[1:]
    while rest:
        m = _CELL.match(rest)
        cells.append(m.group(0))
        rest = rest[m.end() + 1 :]
    return cells


@pytest.mark.parametrize(
    "name", ["a\nb|c", "x\\", "a\\|b", "a\r\nb", "<b>bold</b> & co", "tab\there\x00\u202e"]
)
def test_markdown_cells_cannot_break_the_table(doc, name):
    d = copy.deepcopy(doc)
    d["configurations"][1]["label"] = name
    d["configurations"][1]["settings"]["model"] = name
    d["configurations"][2].update(status="failed", error=f"boom\n# {name}\n|x|", aggregates=None)
    d["environment"]["device_name"] = name
    md = report.render_markdown(d)
    lines = md.splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert len(table) == 2 + len(d["configurations"])
    width = len(MD_COLUMNS)
    assert all(len(md_cells(line)) == width for line in table), md
    assert md_cells(table[3])[1].strip() == "ok"  # the row after the hostile label is intact
    failures = lines[lines.index("Failures:") + 2 :]
    assert len(failures) == 1 and failures[0].startswith("- ")
    assert not any(line.startswith("#") for line in lines[1:])
    assert "<b>" not in md


def test_markdown_of_a_hostile_model_name_from_the_cli(tmp_path):
    """``streambench endpoint --model "a\\nb|c"``-style names: through ``write_outputs``."""
    d = report.new_document("run", {"device": "cpu"})
    d["configurations"].append(
        {"label": "a\nb|c 4-2 bs1", "config": {"model": "a\nb|c"}, "status": "ok",
         "actual_input_tokens": None, "actual_output_tokens": 8}
    )  # fmt: skip
    out = tmp_path / "r.md"
    report.write_outputs([str(out)], d)
    row = [line for line in out.read_text().splitlines() if line.startswith("| a")]
    assert len(row) == 1 and md_cells(row[0])[0].strip() == "a<br>b\\|c 4-2 bs1"
    assert md_cells(row[0])[-1].strip() == "?-8"


@pytest.mark.parametrize(
    ("counts", "dash", "slash"),
    [((None, 8), "?-8", "?/8"), ((16, None), "16-?", "16/?"), ((None, None), "", "")],
)
def test_unknown_actual_token_counts_never_print_none(doc, counts, dash, slash):
    from rich.console import Console

    entry = copy.deepcopy(doc["configurations"][0])
    entry["actual_input_tokens"], entry["actual_output_tokens"] = counts
    assert report.actual_tokens(entry) == dash and report.actual_tokens(entry, "/") == slash
    assert report.csv_row(entry)["actual input/output tokens"] == dash
    text = report.render_markdown({"configurations": [entry]}) + report.render_csv(
        {"configurations": [entry]}
    )
    console = Console(file=io.StringIO(), width=200)
    console.print(report.configuration_table(entry))
    shown = console.file.getvalue()
    assert "None" not in text and "None" not in shown
    assert (f"actual in/out {slash} tokens" in shown) == bool(slash)
    rows = list(csv.DictReader(io.StringIO(report.render_csv({"configurations": [entry]}))))
    assert rows[0]["actual input/output tokens"] == dash


def test_rich_markup_in_a_label_is_shown_not_interpreted(capsys, tmp_path, doc):
    d = steady(doc)
    for i, entry in enumerate(d["configurations"]):
        entry["label"] = f"[/]evil[bold red]{i}"
    path = write(tmp_path, "markup.json", d)
    code, out, err = sb(capsys, "compare", path, path)
    assert code == EXIT_OK, out + err
    assert "[/]evil[bold red]0" in out
    new = copy.deepcopy(d)
    scale_trials(new["configurations"][0], "first_token_s", 10)
    code, out, err = sb(capsys, "compare", path, write(tmp_path, "n.json", new))
    assert code == EXIT_FAILED and "regression" in out and "[/]evil[bold red]0" in out, err


def test_console_table_of_an_entry_with_holes(doc):
    """``configuration_table`` (``run`` prints it per configuration) shows blanks for null, NaN
    or absent statistics instead of raising."""
    from rich.console import Console

    entry = copy.deepcopy(doc["configurations"][0])
    stats(entry)["stdev"] = None
    stats(entry)["percentiles"]["90"] = float("nan")
    del stats(entry, "rest_token_mean_s")["median"]
    entry["aggregates"]["peak_memory_bytes"] = None
    console = Console(file=io.StringIO(), width=200)
    console.print(report.configuration_table(entry))
    shown = console.file.getvalue()
    assert "first token (ms)" in shown and "None" not in shown and "nan" not in shown.lower()


def test_jsonl_lines_split_on_newline_only(tmp_path, real):
    """A raw U+2028 (valid inside a JSON string) is not a line break of JSON Lines."""
    lines = (real / "d.jsonl").read_text().splitlines()
    entry = json.loads(lines[0])
    entry["label"] = "odd\u2028label"
    lines[0] = json.dumps(entry, ensure_ascii=False)
    path = tmp_path / "u.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    loaded = report.load_document(path)
    assert loaded["configurations"][0]["label"] == "odd\u2028label"
    assert len(loaded["configurations"]) == len(lines)
