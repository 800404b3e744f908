"""streambench.engines.transformers, streambench.ranks and streambench.runners.local.plan: the
device resolved once
(Placement), rank facts, print policy objects, and the plain loader below tensor parallelism."""

from __future__ import annotations

import pytest

from streambench.cluster import GatherSequence
from streambench.engines.transformers import (
    Placement,
    load_model,
    load_on_device,
    resolve_model_spec,
)
from streambench.ranks import PrintPolicy, RankFacts
from streambench.runners.local.plan import RankContext, SweepSettings


def test_rank_facts_from_env():
    assert RankFacts.from_env({}) == RankFacts(0, 1, 0)
    facts = RankFacts.from_env({"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1"})
    assert facts.launched and not facts.is_writer and facts.local_rank == 1
    assert RankFacts.from_env({"RANK": "x", "WORLD_SIZE": "8"}) == RankFacts()  # no launch


def test_placement_takes_this_ranks_device_once():
    import torch

    launch = RankFacts(rank=3, world_size=4, local_rank=3)
    p = Placement.resolve(torch.device("cuda"), "deepspeed", launch)  # a torch.device: trusted
    assert p.device == torch.device("cuda", 3) and p.world_size == 4 and p.tp == "deepspeed"
    assert Placement.resolve(torch.device("cuda", 1), ranks=launch).device.index == 1
    assert p.on_cpu.device.type == "cpu" and p.on_cpu.ranks == launch
    assert Placement.resolve("cpu", ranks=RankFacts()).device == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        Placement.resolve("warp-drive")


def test_print_policies_are_independent_objects(monkeypatch):
    monkeypatch.setenv("STREAMBENCH_PRINT_RANKS", "2")
    a, b = PrintPolicy(), PrintPolicy()
    a.set("all")
    assert a.get() is None and b.get() == frozenset([2])
    a.reset()
    assert a.get() == frozenset([2])


def test_gather_sequence_counts_per_group():
    seq = GatherSequence()
    assert [seq.next("all"), seq.next("all"), seq.next("0-1")] == [1, 2, 1]


def _settings(tp: str = "none") -> SweepSettings:
    return SweepSettings(models=[resolve_model_spec(None)], in_out=[(4, 4)], batch_sizes=[1], tp=tp)


def test_load_model_resolves_the_placement_and_loads_plain():
    import torch

    settings = _settings()
    loaded = load_model(settings.models[0], settings, torch.device("cpu"))
    assert loaded.device == torch.device("cpu") and loaded.dtype == torch.float32
    assert loaded.tokenizer is not None and loaded.load_time_s > 0
    again = load_on_device(settings.models[0], settings, Placement.resolve("cpu"))
    assert type(again.model) is type(loaded.model)


def test_load_model_refuses_a_placement_for_another_tp_mode():
    settings = _settings("transformers")
    with pytest.raises(ValueError, match="tp='none'"):
        load_model(settings.models[0], settings, Placement.resolve("cpu"))


def test_rank_context_keeps_the_placement(monkeypatch):
    import torch

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = RankContext.from_env(torch.device("cpu"))
    assert ctx.is_writer and ctx.world_size == 1 and ctx.placement.device.type == "cpu"
    given = Placement.resolve("cpu")
    assert RankContext.from_env(given).placement is given
    assert RankContext.from_env().placement is None
