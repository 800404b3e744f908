"""streambench.distributed in one process: print ranks, rows, problems, the table, and a real
one-rank gloo process group. The multi-rank runs are in test_distributed_launch.py."""

from __future__ import annotations

import json
import socket

import pytest

from streambench import TimingStreamer
from streambench import distributed as sd
from streambench.distributed import ClusterSummary, RankSummary, find_problems, gather_summaries


def fake_run(streamer: TimingStreamer, tokens: int) -> None:
    streamer.mark_start()
    streamer.on_prompt(1, 4)
    for _ in range(tokens):
        streamer.on_step(1)
    streamer.end()


@pytest.fixture
def one_rank_group():
    """A real gloo process group of one rank (rank 0), destroyed afterwards."""
    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        yield dist
    finally:
        dist.destroy_process_group()


@pytest.fixture(autouse=True)
def default_print_ranks(monkeypatch):
    monkeypatch.delenv(sd.PRINT_RANKS_ENV, raising=False)
    sd.PRINT_POLICY.reset()  # the default print ranks live in one PrintPolicy object
    yield
    sd.PRINT_POLICY.reset()


def test_parse_print_ranks():
    assert sd.parse_print_ranks(0) == frozenset([0])
    assert sd.parse_print_ranks("0, 3") == frozenset([0, 3])
    assert sd.parse_print_ranks([1, 2]) == frozenset([1, 2])
    assert sd.parse_print_ranks("all") is None and sd.parse_print_ranks(None) is None
    assert sd.parse_print_ranks("none") == frozenset()
    with pytest.raises(ValueError, match="comma-separated"):
        sd.parse_print_ranks("rank zero")
    with pytest.raises(ValueError, match="'all'"):
        sd.parse_print_ranks(True)


def test_not_initialized_everyone_prints(monkeypatch):
    assert not sd.is_initialized() and sd.get_rank() is None and sd.get_world_size() == 1
    sd.set_print_ranks("none")
    assert sd.should_print()  # a single process always prints
    assert sd.init_distributed("cpu") is False  # no WORLD_SIZE: nothing to initialize


def test_env_sets_default_print_ranks(monkeypatch):
    monkeypatch.setenv(sd.PRINT_RANKS_ENV, "1,2")
    assert sd.get_print_ranks() == frozenset([1, 2])
    sd.PRINT_POLICY.reset()
    monkeypatch.setenv(sd.PRINT_RANKS_ENV, "bogus")
    with pytest.raises(ValueError, match=sd.PRINT_RANKS_ENV):
        sd.get_print_ranks()


def test_streamer_prints_on_print_ranks_only(one_rank_group):
    lines: list[str] = []
    default = TimingStreamer("cpu", do_print=True, print_fn=lines.append)
    fake_run(default, 3)
    assert len(lines) == 2 and lines[0].startswith("=========First token cost")
    other = TimingStreamer("cpu", do_print=True, verbose=True, print_fn=lines.append, print_ranks=1)
    fake_run(other, 3)
    assert len(lines) == 2  # rank 0 is not a print rank of this streamer
    assert other.summary().new_tokens == 3  # ... but it still records
    sd.set_print_ranks([1])
    fake_run(default, 3)
    assert len(lines) == 2
    sd.set_print_ranks("all")
    fake_run(default, 3)
    assert len(lines) == 4


def test_gather_without_process_group():
    s = TimingStreamer("cpu")
    for _ in range(3):
        fake_run(s, 5)
    c = gather_summaries(s, warmup=1)
    assert c.world_size == 1 and c.backend is None and c.ok and c.details_gathered
    (r,) = c.ranks
    assert r.status == "ok" and r.runs == 2 and r.recorded_runs == 3 and r.new_tokens == (5, 5)
    assert c.first_token_s.n == 2 and c.first_token_s.max == max(r.first_token_s)
    assert len(r.details) == 2 and len(r.details[0]["token_latencies_s"]) == 5
    json.dumps(c.to_dict())  # plain data


def test_gather_in_a_one_rank_group(one_rank_group):
    s = TimingStreamer("cpu")
    fake_run(s, 4)
    c = gather_summaries(s)
    assert c.world_size == 1 and c.backend == "gloo" and c.ok and c.this_rank == 0
    assert c.ranks[0].new_tokens == (4,)
    lines: list[str] = []
    assert c.report(print_fn=lines.append)
    sd.set_print_ranks("none")
    assert not c.report(print_fn=lines.append) and c.report(print_fn=lines.append, force=True)


def test_sources_and_errors():
    s = TimingStreamer("cpu")
    fake_run(s, 2)
    assert gather_summaries(s.runs[0]).ranks[0].runs == 1
    assert gather_summaries([s.runs[0], s.runs[0]]).ranks[0].runs == 2
    failed = gather_summaries(ValueError("bad prompt")).ranks[0]
    assert failed.status == "failed" and failed.error == "ValueError: bad prompt"
    empty = gather_summaries(None)
    assert empty.ranks[0].status == "empty" and not empty.ok
    assert "no measured run" in gather_summaries(s, warmup=1).problems[0]
    with pytest.raises(TypeError, match="TimingStreamer"):
        gather_summaries(42)
    with pytest.raises(ValueError, match="timeout_s"):
        gather_summaries(s, timeout_s=0)


def row(rank, tokens, first, rest, peak=100, status="ok", complete=None, error=None):
    return RankSummary(
        rank=rank,
        status=status,
        error=error,
        device="cpu",
        new_tokens=tuple(tokens),
        first_token_s=tuple(first),
        rest_token_mean_s=tuple(rest),
        peak_memory_bytes=tuple([peak] * len(tokens)),
        complete=tuple(complete or [True] * len(tokens)),
        memory_kind="rss",
    )


def cluster(*ranks):
    return ClusterSummary(2, "gloo", 0, tuple(ranks), tuple(find_problems(ranks)))


def test_slowest_rank_per_run():
    c = cluster(
        row(0, [8, 8], [0.10, 0.30], [0.02, 0.02], peak=2**30),
        row(1, [8, 8], [0.20, 0.25], [0.03, 0.02], peak=2**29),
    )
    assert c.ok
    # per run, the slowest rank: run 1 -> 0.20 (rank 1), run 2 -> 0.30 (rank 0)
    assert c.first_token_s.min == 0.20 and c.first_token_s.max == 0.30
    assert c.rest_token_mean_s.min == 0.02 and c.rest_token_mean_s.max == 0.03
    assert c.peak_memory_bytes == 2**30
    assert c.slowest_rank == {"first_token": 1, "rest_token": 1, "peak_memory": 0}
    table = c.table()
    assert "2 rank(s) (gloo), 2 measured run(s) each" in table
    assert "1.0000" in table and "0.2500 (r1)" in table  # GiB; median of per-run maxima
    d = c.to_dict()
    assert d["max_over_ranks"]["first_token_s"]["max"] == 0.30 and d["ok"]
    json.dumps(d)


def test_problems_are_detected():
    c = cluster(row(0, [8, 8], [0.1, 0.1], [0.01, 0.01]), row(1, [8, 5], [0.1, 0.1], [0.01, 0.01]))
    assert c.problems == (
        "ranks generated different numbers of tokens in measured run 2: rank 0: 8, rank 1: 5",
    )
    assert "mixed" in c.table() and "problems:" in c.table()
    c = cluster(row(0, [8, 8], [0.1, 0.1], [0.01, 0.01]), row(1, [8], [0.1], [0.01]))
    assert c.problems[0].startswith("ranks measured different numbers of runs")
    assert c.first_token_s is None  # runs cannot be matched: no per-run maximum
    c = cluster(
        row(0, [8], [0.1], [0.01], complete=[False]),
        RankSummary(rank=1, status="missing", error="did not reach gather_summaries()"),
    )
    assert c.missing == (1,) and not c.ok
    assert any("incomplete" in p for p in c.problems)
    c = cluster(row(0, [8], [0.1], [0.01]), row(1, [], [], [], status="failed", error="boom"))
    assert c.failed == (1,) and c.problems == ("rank 1 failed: boom",)
    assert c.rank(1).status == "failed"
    with pytest.raises(KeyError):
        c.rank(5)


def test_row_roundtrip():
    r = row(3, [4, 4], [0.1, None], [0.01, None])
    again = RankSummary.from_row(json.loads(json.dumps(r.row())))
    assert again == r


def test_tensor_parallel_kwargs():
    kw = sd.tensor_parallel_kwargs()
    if "distributed_config" in kw:
        assert kw["distributed_config"].tp_plan == "auto"
    else:
        assert kw == {"tp_plan": "auto"}


def test_no_torch_import_at_module_level():
    import subprocess
    import sys

    code = (
        "import sys, streambench.distributed as d; print('torch' in sys.modules, d.should_print())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_resolve_tp_mode(monkeypatch):
    monkeypatch.delenv(sd.TP_ENV, raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert sd.resolve_tp_mode() == "none"
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert sd.resolve_tp_mode() == "transformers" and sd.resolve_tp_mode("deepspeed") == "deepspeed"
    monkeypatch.setenv(sd.TP_ENV, "none")
    assert sd.resolve_tp_mode() == "none"
    with pytest.raises(ValueError, match="transformers, deepspeed"):
        sd.resolve_tp_mode("megatron")


def test_rank_device(monkeypatch):
    import torch

    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert sd.rank_device("cuda") == torch.device("cuda", 3)
    assert sd.rank_device("cuda:1") == torch.device("cuda", 1)  # an explicit index is kept
    assert sd.rank_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert sd.rank_device("cuda") == torch.device("cuda")


def test_gather_entry_reads_result_file_runs():
    s = TimingStreamer("cpu")
    for _ in range(3):
        fake_run(s, 4)
    runs = s.runs
    entry = {
        "status": "ok",
        "error": None,
        "warmup_runs": [runs[0].to_dict(per_token=False)],
        "trials": [r.to_dict() for r in runs[1:]],
    }
    out = sd.gather_entry(entry)
    (row0,) = out["ranks"]["ranks"]
    assert row0["status"] == "ok" and row0["new_tokens"] == [4, 4] and row0["recorded_runs"] == 3
    assert row0["details"] == entry["trials"] and out["status"] == "ok"
    failed = sd.gather_entry({**entry, "status": "failed", "error": "OOM"})
    assert failed["ranks"]["problems"] == ["rank 0 failed: OOM"]
