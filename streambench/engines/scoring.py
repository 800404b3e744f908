"""``--quality`` for engines whose logits reach the host as NumPy arrays (llama.cpp, ONNX Runtime
GenAI): the same numbers as :meth:`streambench.engines.Engine.forced_scores` computes with torch.

    >>> import numpy as np
    >>> rows = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]))
    >>> nll, greedy = next_token_scores(rows, [1, 2])
    >>> [round(x, 4) for x in nll], greedy
    ([1.3863, 0.2231], [0, 2])
"""

from __future__ import annotations

from typing import Any

__all__ = ["next_token_scores"]


def next_token_scores(logits: Any, targets: list[int]) -> tuple[list[float], list[int]]:
    """Rows of ``logits`` (``[n, vocab]``, each the logits *before* a token) against the tokens
    that follow (``targets``, ``n`` ids): each token's negative log-likelihood in nats (its
    log-softmax, computed in float64 so that a float16 row does not round it) and each row's
    greedy token (the argmax; the first of equal largest values, as torch's and NumPy's)."""
    import numpy as np

    rows = np.asarray(logits, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[0] != len(targets):
        raise ValueError(f"logits of shape {rows.shape} for {len(targets)} tokens")
    top = rows.max(axis=1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(rows - top).sum(axis=1))
    picked = rows[np.arange(len(targets)), np.asarray(targets, dtype=np.int64)]
    return (log_z - picked).tolist(), rows.argmax(axis=1).astype(int).tolist()
