"""``streambench endpoint --workers N`` (the measured phase over N client processes), the opening
line with ``--duration``, ``--ramp-up`` end to end and ``--resume`` of a load sweep, against the
stub server of ``tests/test_endpoint_load.py`` (its own process on 127.0.0.1).
Runtime: ~10 s on 2 shared cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from test_endpoint_load import ROOT, cli, seen, stub, url  # noqa: F401 - stub is a fixture


def _measured(entry: dict) -> list[dict]:
    return [r for r in entry["requests"] if not r["warmup"]]


def _mine(port: int, scenario: str) -> list[dict]:
    return [r for r in seen(port) if r["path"].startswith(f"/{scenario}/")]


def test_split_concurrency_is_even_and_whole():
    from streambench.endpoint.workers import split_concurrency

    assert split_concurrency(5, 2) == [3, 2]
    assert split_concurrency(4, 4) == [1, 1, 1, 1]
    assert split_concurrency(64, 3) == [22, 21, 21]


def test_bad_workers_exit_2_with_one_line():
    for extra, needle in (
        (["--workers", "0"], "--workers 0"),
        (["--workers", "65", "--concurrency", "100"], "--workers 65"),
        (["--workers", "3", "--concurrency", "2"], "--concurrency"),
        (["--workers", "2"], "--workers 2"),  # one request in flight without a rate
    ):
        res = cli("http://127.0.0.1:9/v1", "--model", "m", *extra, timeout=60)
        assert res.returncode == 2, (extra, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (extra, res.stderr)


def test_two_workers_send_every_request_exactly_once(stub, tmp_path):  # noqa: F811
    scenario = "workers=closed;service=0.01"
    out = tmp_path / "w.json"
    res = cli(
        url(stub, scenario), "--model", "m", "--in-out", "4-3", "--requests", "24",
        "--warmup", "1", "--concurrency", "4", "--workers", "2", "--force-output", "off",
        "-o", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    entry = json.loads(out.read_text())["configurations"][0]
    assert sorted(r["index"] for r in _measured(entry)) == list(range(24))
    assert all(r["ok"] for r in _measured(entry))
    assert entry["aggregates"]["endpoint"]["requests"] == 24
    assert len(_mine(stub, scenario)) == 24 + 1  # + the warm-up, sent by this process
    assert entry["settings"]["further"] == {"workers": 2}
    assert entry["id"].endswith("|workers=2")
    client = entry["client"]
    assert client["workers"] == 2 and len(client["per_worker"]) == 2
    assert all(w["timer_lag_s"] is not None for w in client["per_worker"])  # both loops ran


@pytest.mark.timing
def test_workers_follow_the_shared_constant_schedule(stub, tmp_path):  # noqa: F811
    # 40 requests/s, constant: request i is due at i / 40 s after the 0.2 s ramp-up (whose
    # 40 * 0.2 / 2 = 4 arrivals are sent as warm-up), arrivals alternating between 3 workers
    scenario = "workers=rate;service=0.005"
    out = tmp_path / "r.json"
    res = cli(
        url(stub, scenario), "--model", "m", "--in-out", "4-2", "--requests", "15",
        "--warmup", "0", "--request-rate", "40", "--arrivals", "constant", "--ramp-up", "0.2",
        "--concurrency", "6", "--workers", "3", "--force-output", "off", "-o", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    entry = json.loads(out.read_text())["configurations"][0]
    measured = sorted(_measured(entry), key=lambda r: r["index"])
    assert [r["index"] for r in measured] == list(range(15))
    late = [r["sent_s"] - r["index"] / 40 for r in measured]
    assert all(-0.002 <= x < 0.05 for x in late), late  # on time within the client's lag
    ramp = [r for r in entry["requests"] if r["warmup"]]
    assert len(ramp) == 4 and all(r["sent_s"] < 0 for r in ramp)
    assert len(_mine(stub, scenario)) == 15 + 4
    assert entry["client"]["send_lag_s"]["n"] == 15 + 4


def test_interrupted_workers_keep_what_finished(stub, tmp_path):  # noqa: F811
    # Ctrl-C reaches the whole process group: the workers ignore it, the parent stops them
    scenario = "workers=ctrlc;service=0.03"
    out = tmp_path / "i.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streambench", "endpoint", url(stub, scenario), "--model", "m",
         "--in-out", "4-2", "--requests", "5000", "--warmup", "0", "--concurrency", "4",
         "--workers", "2", "--force-output", "off", "-o", str(out)],
        env={**os.environ, "PYTHONPATH": ROOT}, cwd=ROOT, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while len(_mine(stub, scenario)) < 20 and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    doc = json.loads(out.read_text())
    entry = doc["configurations"][0]
    assert doc["interrupted"] and entry["status"] == "interrupted"
    indices = [r["index"] for r in _measured(entry)]
    assert len(indices) >= 10 and len(set(indices)) == len(indices)
    assert len(indices) <= len(_mine(stub, scenario))


@pytest.mark.parametrize("requests", [None, "7"])
def test_opening_line_names_the_duration_bound(stub, requests):  # noqa: F811
    extra = ["--requests", requests] if requests else []
    res = cli(
        url(stub, "service=0.002"), "--model", "m", "--in-out", "4-2", "--warmup", "0",
        "--duration", "0.3", "--force-output", "off", *extra,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    first = " ".join(res.stdout.split("\n\n")[0].split())
    assert "1000000" not in first and "for 0.3 s" in first, first
    if requests:
        assert "at most 7 requests" in first, first


def test_ramp_up_requests_are_sent_but_not_measured(stub, tmp_path):  # noqa: F811
    # 40 requests/s, constant, 0.25 s ramp-up: 40 * 0.25 / 2 = 5 arrivals during the ramp
    scenario = "ramp=1;service=0.005"
    out = tmp_path / "ramp.json"
    res = cli(
        url(stub, scenario), "--model", "m", "--in-out", "4-2", "--requests", "8",
        "--warmup", "1", "--request-rate", "40", "--arrivals", "constant", "--ramp-up", "250ms",
        "--force-output", "off", "-o", str(out),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    entry = json.loads(out.read_text())["configurations"][0]
    assert entry["aggregates"]["endpoint"]["requests"] == 8
    assert sorted(r["index"] for r in _measured(entry)) == list(range(8))
    ramp = [r for r in entry["requests"] if r["warmup"] and r["sent_s"] < 0]
    assert len(ramp) == 5  # sent before the measured phase began
    assert len(_mine(stub, scenario)) == 1 + 5 + 8  # warm-up, ramp-up, measured
    assert entry["settings"]["further"]["ramp_up_s"] == 0.25
    assert entry["config"]["load"]["ramp_up_s"] == 0.25
    assert "ramp_up=0.25" in entry["label"]


def test_resume_measures_only_the_missing_load_points(stub, tmp_path):  # noqa: F811
    scenario = "resume=1;service=0.003"
    out = tmp_path / "resume.json"
    common = [
        url(stub, scenario), "--model", "m", "--in-out", "4-2", "--requests", "3",
        "--warmup", "0", "--force-output", "off", "-o", str(out),
    ]  # fmt: skip
    res = cli(*common, "--request-rate", "100", "--concurrency", "1,2")
    assert res.returncode == 0, res.stderr
    first = json.loads(out.read_text())["configurations"]
    sent = len(_mine(stub, scenario))
    assert sent == 2 * 3
    res = cli(*common, "--request-rate", "100,inf", "--concurrency", "1,2", "--resume")
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("kept from the resumed file") == 2
    assert len(_mine(stub, scenario)) == sent + 2 * 3  # only the two new points were sent
    doc = json.loads(out.read_text())
    got = [(e["settings"].get("request_rate"), e["settings"]["concurrency"]) for e in
           doc["configurations"]]  # fmt: skip
    assert got == [(100.0, 1), (100.0, 2), (None, 1), (None, 2)]
    assert doc["configurations"][:2] == first  # kept as they were
    # other settings than the axes: refused, one line
    res = cli(*common, "--request-rate", "100", "--seed", "7", "--resume")
    assert res.returncode == 2 and "--resume" in res.stderr and "seed" in res.stderr
    res = cli(*common, "--find-max-rate", "--slo", "ttft=1s", "--resume")
    assert res.returncode == 2 and "--find-max-rate" in res.stderr
