"""What each request of a workload produced: its prompt index, real input and output lengths and
an MD5 of the generated text (the text itself with ``--save-outputs``), and the statistics over
all requests of a configuration (``aggregates.workload``).

>>> output_record(3, 12, 5, "hello", save=False)["output_md5"]
'5d41402abc4b2a76b9719d911017c592'
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

__all__ = ["output_record", "workload_summary"]


def output_record(
    prompt_index: int,
    input_tokens: int | None,
    output_tokens: int | None,
    text: str | None,
    save: bool,
) -> dict[str, Any]:
    """One request's workload facts (``output_text`` only with ``save``)."""
    out: dict[str, Any] = {
        "prompt_index": prompt_index,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "output_md5": hashlib.md5(text.encode("utf-8")).hexdigest() if text is not None else None,
    }
    if save:
        out["output_text"] = text
    return out


def workload_summary(requests: Iterable[dict[str, Any]], skipped: int = 0) -> dict[str, Any]:
    """``aggregates.workload``: the number of requests, statistics of their real input and
    output lengths (tokens), distinct outputs (by MD5) and prompts skipped."""
    from ..stats import describe

    reqs = list(requests)

    def stats(key: str) -> Any:
        st = describe(r[key] for r in reqs if isinstance(r.get(key), int))
        return st.to_dict() if st is not None else None

    return {
        "requests": len(reqs),
        "input_tokens": stats("input_tokens"),
        "output_tokens": stats("output_tokens"),
        "distinct_outputs": len({r.get("output_md5") for r in reqs if r.get("output_md5")}),
        "skipped_prompts": skipped,
    }
