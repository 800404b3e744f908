"""Shared fixtures: tiny random-weight models built from a config (no download, no hub)."""

from __future__ import annotations

import time

import pytest
import torch

from streambench.tiny import build_model, tiny_llama_config, tiny_t5_config


@pytest.fixture(scope="session")
def llama():
    return build_model(tiny_llama_config())


@pytest.fixture(scope="session")
def t5():
    return build_model(tiny_t5_config())


@pytest.fixture
def prompt():
    torch.manual_seed(1)
    return torch.randint(3, 259, (1, 12))


def gen_kwargs(n: int, **extra):
    """Force exactly ``n`` new tokens, greedy."""
    return dict(max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0, **extra)


def assisted(model, n: int):
    """(model, kwargs) for assisted decoding that yields exactly ``n`` tokens, greedy.

    transformers 4.57.x refuses ``min_new_tokens`` with an assistant ("Passing
    `MinLengthLogitsProcessor` when using `assisted_generation is disabled"): there a copy of the
    model without an EOS token is used instead, which also always yields ``n`` tokens.
    """
    import copy

    import transformers
    from packaging.version import Version

    if Version("4.57") <= Version(transformers.__version__) < Version("5"):
        model = copy.deepcopy(model)
        model.generation_config.eos_token_id = None
        return model, dict(max_new_tokens=n, do_sample=False, pad_token_id=0)
    return model, gen_kwargs(n)


class KnownLatency:
    """Makes a model's forward pass sleep a known time and records when each forward ended.

    ``prefill_s`` for a forward over more than one position (the prompt), ``decode_s`` for a
    one-position step. Ground truth for the timing tests comes from ``ends``.
    """

    def __init__(self, model, prefill_s=0.050, decode_s=0.010, raise_at=None, sleep_in=None):
        self.prefill_s, self.decode_s = prefill_s, decode_s
        self.raise_at = raise_at
        self.ends: list[float] = []
        self.calls = 0
        module = sleep_in if sleep_in is not None else model
        self._pre = module.register_forward_pre_hook(self._before, with_kwargs=True)
        self._post = model.register_forward_hook(self._after)

    def _before(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            ids = kwargs.get("decoder_input_ids")
        self.calls += 1
        if self.raise_at is not None and self.calls == self.raise_at:
            raise RuntimeError("boom: injected failure")
        length = ids.shape[-1] if ids is not None else 1
        time.sleep(self.prefill_s if length > 1 else self.decode_s)

    def _after(self, module, args, output):
        self.ends.append(time.perf_counter())

    def remove(self):
        self._pre.remove()
        self._post.remove()


@pytest.fixture
def known_latency():
    made = []

    def make(model, **kw):
        k = KnownLatency(model, **kw)
        made.append(k)
        return k

    yield make
    for k in made:
        k.remove()


class Recorder:
    """A plain streamer that records what it receives and when (used as ``inner=``)."""

    def __init__(self, sleep_s: float = 0.0):
        self.sleep_s = sleep_s
        self.puts: list[tuple[tuple[int, ...], float]] = []
        self.ended = 0

    def put(self, value):
        self.puts.append((tuple(value.shape), time.perf_counter()))
        if self.sleep_s:
            time.sleep(self.sleep_s)

    def end(self):
        self.ended += 1


def pytest_collection_modifyitems(config, items):
    """A test that compares measured times with a model of known latency is a timing test: it
    runs in `make test`'s second, one-at-a-time phase, never beside another test's load."""
    timing = pytest.mark.timing
    for item in items:
        if "known_latency" in getattr(item, "fixturenames", ()):
            item.add_marker(timing)
