"""``streambench.results/2`` and the results/1 files written before it.

The fixtures ``tests/fixtures/results-v1.{json,jsonl}`` were written by streambench before
results/2 (``streambench run --in-out 8-4,16-4 --batch-size 1,2 --warmup 0 --trials 2``), and
``results-v1-endpoint.json`` by ``streambench endpoint`` against the stub server (8-4, 2
requests). They must keep loading, plotting and comparing with results/2 files."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streambench import report
from streambench.results import (
    SCHEMA,
    ConfigurationResult,
    ConfigurationSettings,
    ResultsDocument,
    Statistics,
    load_document,
    load_results,
    render_json,
    render_jsonl,
)
from streambench.results.percentiles import percentile_key

FIXTURES = Path(__file__).parent / "fixtures"
V1_JSON, V1_JSONL = FIXTURES / "results-v1.json", FIXTURES / "results-v1.jsonl"
V1_ENDPOINT = FIXTURES / "results-v1-endpoint.json"
V1_FILES = [V1_JSON, V1_JSONL, V1_ENDPOINT]


def sb(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streambench", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "COLUMNS": "250"},
    )


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    """A results/2 run of the fixture's settings: ``new.json``, ``new.jsonl``."""
    out = tmp_path_factory.mktemp("fresh")
    proc = sb(
        "run", "--in-out", "8-4,16-4", "--batch-size", "1,2", "--warmup", "0", "--trials", "2",
        "-o", str(out / "new.json"), "-o", str(out / "new.jsonl"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out


def test_the_fixtures_are_results_1():
    assert json.loads(V1_JSON.read_text())["schema"] == "streambench.results/1"
    assert "schema" not in json.loads(V1_JSONL.read_text().splitlines()[0])
    assert SCHEMA == "streambench.results/2"


@pytest.mark.parametrize("path", V1_FILES, ids=lambda p: p.name)
def test_results_1_files_load_as_results_2(path):
    doc = load_document(path)
    assert doc["schema"] == SCHEMA
    assert report.validate_document(doc, "again") == doc  # what the reader returns is valid v2
    if path.suffix == ".jsonl":
        original = [json.loads(line) for line in path.read_text().splitlines()]
    else:
        original = json.loads(path.read_text())["configurations"]
    for v1, v2 in zip(original, doc["configurations"], strict=True):
        assert v2["id"] == v1["id"] and v2["label"] == v1["label"]
        for key in ("model", "input_tokens", "output_tokens", "batch_size", "num_beams"):
            assert v2["settings"][key] == v1["config"][key]
            assert key not in v2["config"]
        for key in ("dtype", "device", "warmup", "trials", "low_bit"):
            assert v2["config"][key] == v1["config"][key]
        for name, old in v1["aggregates"].items():
            if isinstance(old, dict) and "p90" in old:
                new = v2["aggregates"][name]
                assert new["median"] == old["median"] == new["percentiles"]["50"]
                assert new["percentiles"]["90"] == old["p90"]
                assert new["percentiles"]["99"] == old["p99"]
                assert "p90" not in new
        assert v2["trials"][0]["token_latencies_s"] == v1["trials"][0]["token_latencies_s"]


def test_the_id_is_derived_from_the_settings():
    for path in V1_FILES:
        for entry in load_results(path).configurations:
            assert entry.settings.default_id() == entry.id
    assert ConfigurationSettings("m", 8, 4, 2, num_beams=4).default_id() == "m|8-4|bs2|beams4"
    served = ConfigurationSettings("m", 8, 4, 1, concurrency=4, request_rate=2.5, chat=True)
    assert served.default_id() == "m|8-4|bs1|c4|rate2.5|chat"


def test_missing_settings_mean_the_default():
    local = ConfigurationSettings.from_dict({"model": "m", "input_tokens": 8, "output_tokens": 4,
                                              "batch_size": 1})  # fmt: skip
    served = ConfigurationSettings.from_dict(
        {"model": "m", "input_tokens": 8, "output_tokens": 4, "batch_size": 1, "num_beams": 1,
         "concurrency": 1, "chat": False, "request_rate": None}
    )  # fmt: skip
    assert local.match_key() == served.match_key() == "m|8-4|bs1|beams1"
    assert local.to_dict() == {"model": "m", "input_tokens": 8, "output_tokens": 4,
                               "batch_size": 1, "num_beams": 1}  # fmt: skip
    assert (
        ConfigurationSettings("m", 8, 4, 1, concurrency=2).match_key(False) == "8-4|bs1|beams1|c2"
    )


@pytest.mark.parametrize("path", V1_FILES, ids=lambda p: p.name)
def test_round_trip_v1_to_v2_and_back(path, tmp_path):
    """results/1 -> typed -> results/2 file -> typed: the same objects; the v2 dict is stable."""
    typed = load_results(path)
    v1 = json.loads(path.read_text()) if path.suffix == ".json" else None
    if v1 is not None:
        assert ResultsDocument.from_dict(v1) == typed  # the runners' dict form converts alike
    out = tmp_path / "v2.json"
    out.write_text(render_json(typed))
    again = load_results(out)
    assert again == typed
    assert again.to_dict() == typed.to_dict() == json.loads(out.read_text())
    lines = tmp_path / "v2.jsonl"
    lines.write_text(render_jsonl(typed))
    assert load_results(lines).configurations == typed.configurations
    assert all(json.loads(line)["schema"] == SCHEMA for line in lines.read_text().splitlines())


def test_a_fresh_run_writes_valid_results_2(fresh):
    doc = json.loads((fresh / "new.json").read_text())
    assert doc["schema"] == SCHEMA and doc["command"] == "run"
    assert load_document(fresh / "new.json") == doc  # validates, returned as it is
    entry = doc["configurations"][3]
    assert entry["settings"] == {"model": "streambench/tiny-llama", "input_tokens": 16,
                                 "output_tokens": 4, "batch_size": 2, "num_beams": 1}  # fmt: skip
    assert entry["id"] == "streambench/tiny-llama|16-4|bs2"
    stats = entry["aggregates"]["first_token_s"]
    assert set(stats) == {"n", "mean", "median", "stdev", "min", "max", "percentiles", "ci95",
                          "ci95_note"}  # fmt: skip
    n = len(entry["trials"])
    assert stats["ci95"] is None and stats["ci95_note"].startswith(f"{n} trial(s)")  # < 6 trials
    assert set(stats["percentiles"]) == {"50", "90", "99"}
    assert entry["trials"][0]["rest_token_stats_s"]["percentiles"]["90"] > 0
    lines = (fresh / "new.jsonl").read_text().splitlines()
    assert [json.loads(line)["schema"] for line in lines] == [SCHEMA] * 4
    assert load_document(fresh / "new.jsonl")["configurations"] == doc["configurations"]


@pytest.mark.parametrize("old", [V1_JSON, V1_JSONL], ids=lambda p: p.name)
def test_compare_results_1_with_a_fresh_results_2_run_matches_everything(fresh, old):
    proc = sb("compare", str(old), str(fresh / "new.json"), "--threshold", "1000%")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "missing in NEW" not in out and "new in NEW" not in out and "nothing" not in out
    for label in ("8-4 bs1", "8-4 bs2", "16-4 bs1", "16-4 bs2"):
        assert re.search(rf"streambench/tiny-llama {label}\s", out), out
    old_doc, new_doc = load_results(old), load_results(fresh / "new.json")
    rows, failed = report.compare_documents(old_doc, new_doc, 10.0)
    assert not failed and len(rows) == 4 and all(r.compared and not r.problem for r in rows)


def test_compare_and_plot_of_the_endpoint_fixture(tmp_path):
    proc = sb("compare", str(V1_ENDPOINT), str(V1_ENDPOINT))
    assert proc.returncode == 0 and "1.000×" in proc.stdout, proc.stdout + proc.stderr
    proc = sb("plot", str(V1_ENDPOINT), "-o", str(tmp_path / "e.png"))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("path", [V1_JSON, V1_JSONL], ids=lambda p: p.name)
def test_plot_of_a_results_1_file(tmp_path, path):
    proc = sb("plot", str(path), "-o", str(tmp_path / "p.png"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_statistics_read_both_forms():
    v1 = {"n": 3, "mean": 2.0, "median": 2.0, "p90": 2.8, "p99": 2.98, "stdev": 1.0, "min": 1,
          "max": 3}  # fmt: skip
    s = Statistics.from_dict(v1)
    assert (s.median, s.p90, s.p99, s.percentile(50), s.percentile("99")) == (2.0, 2.8, 2.98, 2.0,
                                                                              2.98)  # fmt: skip
    v2 = s.to_dict()
    assert v2["percentiles"] == {"50": 2.0, "90": 2.8, "99": 2.98} and "p90" not in v2
    assert Statistics.from_dict(v2) == s
    assert Statistics.from_dict({"percentiles": {"50": 1.5, "99.9": 4}}).median == 1.5
    assert percentile_key(99.9) == "99.9" and Statistics.from_dict([1]) is None


def test_per_token_memory_may_hold_nulls(tmp_path):
    """A token without a memory reading is ``null``: valid, kept, and the plot draws the rest."""
    doc = json.loads(V1_JSON.read_text())
    doc["configurations"][0]["trials"][0]["memory_per_token_bytes"][1] = None
    typed = ResultsDocument.from_dict(doc)
    assert typed.configurations[0].trials[0].memory_per_token_bytes[1] is None
    path = tmp_path / "holes.json"
    path.write_text(render_json(typed))
    assert load_results(path).configurations[0].trials[0].memory_per_token_bytes[1] is None
    proc = sb("plot", str(path), "-o", str(tmp_path / "p.png"))
    assert proc.returncode == 0, proc.stderr


def test_the_v2_checks_name_the_place(tmp_path):
    doc = load_document(V1_JSON)
    bad = copy.deepcopy(doc)
    bad["configurations"][2]["aggregates"]["first_token_s"]["percentiles"]["90"] = "fast"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"configurations\[2\].aggregates.first_token_s."
                       r"percentiles.90 is a string"):  # fmt: skip
        load_document(path)
    bad = copy.deepcopy(doc)
    del bad["configurations"][0]["settings"]
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"configurations\[0\].settings is missing"):
        load_document(path)


def test_typed_and_dict_entries_report_alike():
    doc = json.loads(V1_JSON.read_text())
    entry = doc["configurations"][1]
    typed = ConfigurationResult.from_dict(entry)
    assert report.csv_row(entry) == report.csv_row(typed)
    assert report.render_markdown(doc) == report.render_markdown(ResultsDocument.from_dict(doc))
    assert (
        report.csv_row(entry)["1st token p90 (ms)"]
        == f"{entry['aggregates']['first_token_s']['p90'] * 1e3:.3f}"
    )


@pytest.mark.parametrize(
    "name", ["values", "percentiles", "schema", "writers", "compare"], ids=lambda n: n
)
def test_results_docstring_examples(name):
    import doctest
    import importlib

    module = importlib.import_module(f"streambench.results.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_memory_per_position_keeps_readings_after_tokens_without_one():
    """memory=True reads only where affordable: most tokens have no reading (None). The plot's
    per-position median must keep the later readings (a position no trial read is NaN, a gap),
    not stop at the first position without one."""
    import math

    from streambench.results.report.plot import per_position
    from streambench.results.schema import RunRecord

    trials = [
        RunRecord.from_dict({"memory_per_token_bytes": [100, None, None, 130, None, 150]}),
        RunRecord.from_dict({"memory_per_token_bytes": [110, None, 120, None, None, 160]}),
    ]
    med, lo, hi = per_position(trials, "memory_per_token_bytes", skip_holes=True)
    assert len(med) == 6
    assert med[0] == 105 and med[2] == 120 and med[3] == 130 and med[5] == 155
    assert math.isnan(med[1]) and math.isnan(med[4]) and math.isnan(lo[4]) and math.isnan(hi[1])
