"""Checks shared by the engines' ``--quality`` tests (issue 26): a configuration's ``quality``
object against its reference's, recomputed from the greedy tokens in the results file."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

#: the synthetic text of the engines' quality sweeps: 64 + 8 tokens, 71 of them scored
QUALITY_IN_OUT = "64-8"
QUALITY_TOKENS = 71


def quality_sweep_config(path: Path, *variants: str) -> Path:
    """A config file of ``variants`` (YAML flow mappings) with ``quality: true``."""
    lines = ["quality: true", "variants:", *(f"  - {v}" for v in variants)]
    path.write_text("\n".join(lines) + "\n")
    return path


def recomputed_agreement(row: dict[str, Any], ref: dict[str, Any]) -> float:
    """The share of positions where ``row``'s greedy token is ``ref``'s, from the file's lists."""
    pairs = [
        (a, b)
        for mine, theirs in zip(row["quality"]["greedy"], ref["quality"]["greedy"], strict=True)
        for a, b in zip(mine, theirs, strict=True)
    ]
    return sum(a == b for a, b in pairs) / len(pairs)


def check_scored(row: dict[str, Any], ref: dict[str, Any]) -> tuple[float, float]:
    """``row`` scored the same texts as ``ref`` (its perplexity finite, every greedy token a
    token id); returns ``(perplexity ratio - 1, agreement recomputed)``."""
    assert row["status"] == "ok", row.get("error")
    q, r = row["quality"], ref["quality"]
    assert q["reasons"].get("perplexity") is None, q["reasons"]
    assert q["texts_md5"] == r["texts_md5"]  # the same token ids scored
    assert q["tokens"] == r["tokens"] == QUALITY_TOKENS
    assert [len(g) for g in q["greedy"]] == [len(g) for g in r["greedy"]]
    assert math.isfinite(q["perplexity"]) and q["perplexity"] >= 1
    return q["perplexity"] / r["perplexity"] - 1, recomputed_agreement(row, ref)
