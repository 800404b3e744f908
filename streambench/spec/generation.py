"""The settings people tune around ``generate()``, each a sweep axis of ``streambench run``:
attention and cache implementations, ``torch.compile``, sampling, assisted and prompt-lookup
decoding, and the escape hatches ``--generate-kwargs`` / ``--model-kwargs``.

A *variant* is one combination of them: a plain dict holding only the settings that differ from
their default (``{}`` is greedy decoding with transformers' defaults). A sweep runs every model x
variant x input/output pair x batch size. The variants are the product of the axes (a
comma-separated option value, or a list in ``--config``), or the config's ``variants:`` list for
comparisons that are not a product. A variant is JSON (it travels to the isolation workers) and
is part of the configuration's identity (results/2 ``settings.further``, so a file without it
means the defaults and old files still compare).

>>> parse_axis(SETTINGS["attn_implementation"], "eager,sdpa", "--attn-implementation")
['eager', 'sdpa']
>>> normalize_variant({"compile": True}, "--compile", trust_remote_code=False)
{'compile': True, 'cache_implementation': 'static'}
>>> variant_label({"attn_implementation": "sdpa", "prompt_lookup": 3})
'attn=sdpa lookup=3'

torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from .keys import generation_keys

__all__ = [
    "SETTINGS",
    "GenSetting",
    "check_against_transformers",
    "expand_variants",
    "identity",
    "load_key",
    "normalize_variant",
    "parse_axis",
    "variant_label",
]

#: generate() keywords streambench sets itself -> the option that sets them
OWNED_GENERATE = {
    "max_new_tokens": "--in-out",
    "min_new_tokens": "--in-out",
    "max_length": "--in-out",
    "min_length": "--in-out",
    "input_ids": "--in-out",
    "inputs": "--in-out",
    "attention_mask": "--in-out",
    "streamer": "none: streambench times generate() through its own streamer",
    "num_beams": "--num-beams",
    "do_sample": "--do-sample",
    "temperature": "--temperature",
    "top_p": "--top-p",
    "top_k": "--top-k",
    "cache_implementation": "--cache-implementation",
    "assistant_model": "--assistant-model",
    "prompt_lookup_num_tokens": "--prompt-lookup",
    "disable_compile": "--compile",
    "compile_config": "--compile / --compile-mode",
}
#: from_pretrained() keywords streambench sets itself -> the option that sets them
OWNED_MODEL = {
    "dtype": "--dtype",
    "torch_dtype": "--dtype",
    "device_map": "--device",
    "quantization_config": "--low-bit",
    "attn_implementation": "--attn-implementation",
    "trust_remote_code": "--trust-remote-code",
}
#: keywords that run code from elsewhere (the model's repository, the hub): only with
#: --trust-remote-code
REMOTE_CODE = ("trust_remote_code", "custom_generate", "use_kernels", "kernel_config")


@dataclass(frozen=True)
class GenSetting:
    """One tunable setting: its name (config key and identity key), its option, its default,
    whether it changes the loaded model (``load``) or only the ``generate()`` call, and its
    short name in labels. Derived from its entry in :data:`streambench.spec.keys.TABLE`, which also
    says how a value is parsed (and whether a comma-separated option value is an axis)."""

    name: str
    option: str
    default: Any
    load: bool
    short: str


#: the generation settings, in :data:`streambench.spec.keys.TABLE`'s order
SETTINGS: dict[str, GenSetting] = {
    name: GenSetting(name, k.option, k.gen.default, k.gen.load, k.gen.short)
    for name, k in generation_keys().items()
    if k.gen is not None
}


def parse_axis(setting: GenSetting, value: Any, where: str) -> list[Any]:
    """The values of one axis (:data:`streambench.spec.keys.TABLE`): a list (YAML), a
    comma-separated text (where the setting is an axis), or one value."""
    return generation_keys()[setting.name].coerce(value, where)


# -- variants ------------------------------------------------------------------------------------
def _check_owned(kwargs: Mapping[str, Any], owned: Mapping[str, str], where: str) -> None:
    for key in kwargs:
        if key in owned:
            raise UsageError(f"{where}: {key!r} is set by streambench; use {owned[key]}")


def _check_doors(variant: Mapping[str, Any], where: str, trust_remote_code: bool) -> None:
    """Remote code and hub kernels only with --trust-remote-code."""
    if trust_remote_code:
        return
    for name in ("generate_kwargs", "model_kwargs"):
        for key in variant.get(name) or {}:
            if key in REMOTE_CODE:
                raise UsageError(
                    f"{where}: {SETTINGS[name].option} {key!r} runs code from elsewhere; add "
                    "--trust-remote-code to allow it"
                )
    attn = variant.get("attn_implementation")
    if isinstance(attn, str) and "/" in attn:
        raise UsageError(
            f"{where}: --attn-implementation {attn!r} fetches an attention kernel from the hub; "
            "add --trust-remote-code to allow it"
        )


def normalize_variant(variant: Mapping[str, Any], where: str, trust_remote_code: bool) -> dict:
    """``variant`` with the defaults left out, checked: settings that need another
    (``--compile-mode`` needs ``--compile``; ``--temperature``, ``--top-p``, ``--top-k`` need
    ``--do-sample``), one kind of speculative decoding at a time, nothing streambench owns in
    the escape hatches, no remote code without ``--trust-remote-code``. ``--compile`` without a
    cache implementation gets ``static`` (what compiled decoding needs for fixed shapes)."""
    out = {k: v for k, v in variant.items() if v != SETTINGS[k].default and v != {}}
    if out.get("compile_mode") and not out.get("compile"):
        raise UsageError(f"{where}: --compile-mode needs --compile")
    if out.get("compile_mode") == "default":
        del out["compile_mode"]
    sampling = [k for k in ("temperature", "top_p", "top_k") if k in out]
    if sampling and not out.get("do_sample"):
        raise UsageError(f"{where}: {SETTINGS[sampling[0]].option} needs --do-sample")
    if "assistant_model" in out and "prompt_lookup" in out:
        raise UsageError(f"{where}: use --assistant-model or --prompt-lookup, not both")
    _check_owned(out.get("generate_kwargs") or {}, OWNED_GENERATE, f"{where}: --generate-kwargs")
    _check_owned(out.get("model_kwargs") or {}, OWNED_MODEL, f"{where}: --model-kwargs")
    _check_doors(out, where, trust_remote_code)
    _check_engine(out, where)
    if out.get("compile") and "cache_implementation" not in out:
        out["cache_implementation"] = "static"
    if out.get("cache_implementation") == "paged":
        raise UsageError(
            f"{where}: --cache-implementation paged is continuous batching, which refuses "
            "streamers (streambench cannot time it)"
        )
    return {k: out[k] for k in SETTINGS if k in out}


def _check_engine(variant: Mapping[str, Any], where: str) -> None:
    """The settings the variant's engine does not have (:attr:`.engines.Engine.refuses`)."""
    from ..engines import engine_of, get_engine

    engine = get_engine(engine_of(variant))
    only = [k for k in SETTINGS if k in variant and k in engine.refuses]
    if only:
        raise UsageError(
            f"{where}: {SETTINGS[only[0]].option} is a transformers setting, which --engine "
            f"{engine.name} does not have: run it as its own sweep, or list the combinations in "
            "the config's `variants:` list"
        )


def expand_variants(
    config_axes: Mapping[str, list[Any]],
    variants: list[Mapping[str, Any]] | None,
    cli_axes: Mapping[str, list[Any]],
    trust_remote_code: bool,
) -> list[dict[str, Any]]:
    """Every variant of the sweep, in order, duplicates dropped: for each entry of ``variants``
    (``[{}]`` when none), the product of the axes; precedence: config axes < the variant <
    command-line axes (the command line wins, as for every config key)."""
    out: list[dict[str, Any]] = []
    for i, variant in enumerate(variants or [{}]):
        axes = {**config_axes, **{k: [v] for k, v in variant.items()}, **cli_axes}
        names = [k for k in SETTINGS if k in axes]
        where = f"variant {i + 1}" if variants else "settings"
        for combo in itertools.product(*(axes[k] for k in names)):
            one = normalize_variant(dict(zip(names, combo)), where, trust_remote_code)
            if one not in out:
                out.append(one)
    return out


def parse_variants(value: Any, where: str) -> list[dict[str, Any]]:
    """The config's ``variants:`` list: each a mapping of setting names to one value."""
    if not isinstance(value, list) or not value:
        raise UsageError(
            f"{where}: expected a non-empty list of settings, e.g. [{{attn_implementation: "
            "eager}, {attn_implementation: sdpa, compile: true}]"
        )
    out = []
    for i, item in enumerate(value):
        here = f"{where} item {i + 1}"
        if not isinstance(item, Mapping):
            raise UsageError(f"{here}: expected a mapping of settings")
        variant = {}
        for key, raw in item.items():
            setting = SETTINGS.get(key) if isinstance(key, str) else None
            if setting is None:
                raise UsageError(f"{here}: unknown setting {key!r} (known: {', '.join(SETTINGS)})")
            values = parse_axis(setting, raw, f"{here}: key {key!r}")
            if len(values) != 1:
                raise UsageError(f"{here}: key {key!r} takes one value in a variant")
            variant[key] = values[0]
        out.append(variant)
    return out


# -- identity and labels -------------------------------------------------------------------------
def _identity_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return value


def identity(variant: Mapping[str, Any]) -> dict[str, Any]:
    """The variant as results/2 ``settings.further``: scalars (JSON objects as canonical JSON
    text), so that two files compare by value."""
    return {k: _identity_value(v) for k, v in variant.items()}


def variant_label(variant: Mapping[str, Any]) -> str:
    """Short text for labels and table titles (``""`` for the defaults)."""
    parts = []
    for key, value in variant.items():
        short = SETTINGS[key].short
        if value is True:
            parts.append(short)
        else:
            parts.append(f"{short}={_identity_value(value)}")
    return " ".join(parts)


def load_key(variant: Mapping[str, Any]) -> str:
    """What the loaded model depends on: variants with the same key share one load."""
    return json.dumps({k: v for k, v in variant.items() if SETTINGS[k].load}, sort_keys=True)


def load_kwargs(variant: Mapping[str, Any]) -> dict[str, Any]:
    """``from_pretrained()`` / ``from_config()`` keywords of a variant."""
    out = dict(variant.get("model_kwargs") or {})
    if variant.get("attn_implementation"):
        out["attn_implementation"] = variant["attn_implementation"]
    return out


# -- checks against the installed transformers ---------------------------------------------------
def attention_names() -> list[str]:
    """The attention implementations this transformers accepts."""
    try:
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        return ["eager", *ALL_ATTENTION_FUNCTIONS.valid_keys()]
    except ImportError:  # transformers < 4.48
        return ["eager", "sdpa", "flash_attention_2"]


def cache_names() -> list[str] | None:
    """The cache implementations this transformers accepts; ``None`` when it has none."""
    try:
        from transformers.generation.configuration_utils import ALL_CACHE_IMPLEMENTATIONS
    except ImportError:
        try:
            from transformers.generation.configuration_utils import NEEDS_CACHE_CONFIG
        except ImportError:
            return None
        return ["static", *NEEDS_CACHE_CONFIG]
    return list(ALL_CACHE_IMPLEMENTATIONS)


def check_against_transformers(variants: Iterable[Mapping[str, Any]]) -> None:
    """An unknown attention or cache implementation fails up front with the valid names (only
    a sweep that sets one imports transformers' modeling code here: ~3 s on a small CPU, before
    the warm process of ``--isolate`` could start)."""
    asked = [v for v in variants if v.get("attn_implementation") or "cache_implementation" in v]
    if not asked:
        return
    import transformers

    for variant in asked:
        attn = variant.get("attn_implementation")
        valid = attention_names() if attn else []
        if attn and "/" not in attn and attn not in valid:
            raise UsageError(
                f"--attn-implementation {attn!r} is not known to transformers "
                f"{transformers.__version__}: use one of {', '.join(valid)}"
            )
        cache = variant.get("cache_implementation")
        if cache is None:
            continue
        names = cache_names()
        if names is None:
            raise UsageError(
                f"--cache-implementation needs transformers >= 4.38 (installed: "
                f"{transformers.__version__})"
            )
        if cache not in names:
            usable = ", ".join(n for n in names if n != "paged")
            raise UsageError(
                f"--cache-implementation {cache!r} is not known to transformers "
                f"{transformers.__version__}: use one of {usable}"
            )


# -- generate() ------------------------------------------------------------------------------------
def _has_disable_compile() -> bool:
    from transformers import GenerationConfig

    return hasattr(GenerationConfig(), "disable_compile")


def generate_kwargs(variant: Mapping[str, Any], assistant: Any = None) -> dict[str, Any]:
    """The ``generate()`` keywords of a variant (besides the lengths, the prompt and the
    streamer, which streambench owns). ``disable_compile=True`` always, where transformers has
    it: transformers >= 4.51 compiles by itself with a static cache on an accelerator, and
    ``--compile`` compiles the forward itself, so static vs dynamic compares caches, never
    compilation."""
    out: dict[str, Any] = {}
    if "cache_implementation" in variant:
        out["cache_implementation"] = variant["cache_implementation"]
    if variant.get("do_sample"):
        out["do_sample"] = True
        for key in ("temperature", "top_p", "top_k"):
            if key in variant:
                out[key] = variant[key]
    if "prompt_lookup" in variant:
        out["prompt_lookup_num_tokens"] = variant["prompt_lookup"]
    if assistant is not None:
        out["assistant_model"] = assistant
    if _has_disable_compile():
        out["disable_compile"] = True
    out.update(variant.get("generate_kwargs") or {})
    return out


def speculative(variant: Mapping[str, Any]) -> bool:
    """Assisted or prompt-lookup decoding (several tokens per step)."""
    return "assistant_model" in variant or "prompt_lookup" in variant


def short_runs(runs: Sequence[Any], n_out: int | Sequence[int]) -> str | None:
    """Why runs that produced fewer than their forced tokens (``n_out``, or one count per run)
    make the configuration incomplete (``None`` when none did), whatever the cause:
    ``max_time`` or ``stop_strings`` in ``--generate-kwargs``, an engine that stops at EOS.
    Their numbers describe another workload than the configuration's: not recorded as ``ok``."""
    forced = [n_out] * len(runs) if isinstance(n_out, int) else list(n_out)
    short = [(r.new_tokens, n) for r, n in zip(runs, forced) if r.new_tokens < n]
    if not short:
        return None
    fewest, of = min(short)
    what = f"the {n_out} forced tokens" if isinstance(n_out, int) else "their forced tokens"
    return (
        f"incomplete: {len(short)} of {len(runs)} runs (warm-ups included) stopped before "
        f"{what} (the shortest: {fewest} of {of}); something ended generate() early (max_time, "
        "stop_strings or stopping_criteria in --generate-kwargs, or an engine that stops at "
        "EOS): remove it, or lower the output length of --in-out"
    )


def explain_generate_error(exc: BaseException, variant: Mapping[str, Any]) -> str | None:
    """A clear message for known refusals of ``generate()``; ``None`` for the others."""
    import transformers

    text = str(exc)
    if speculative(variant) and any(
        w in text for w in ("min_new_tokens", "min_length", "MinLength")
    ):
        return (
            f"transformers {transformers.__version__} refuses min_new_tokens with assisted / "
            "prompt-lookup decoding, and streambench forces the output length with it: use "
            f"another transformers version ({text.strip().splitlines()[0][:200]})"
        )
    return None


# -- torch.compile ---------------------------------------------------------------------------------
def compile_model(model: Any, mode: str | None) -> None:
    """``model.forward = torch.compile(model.forward, mode=...)``: compiled on first use (the
    first warm-up), prefill and decode each their own graph."""
    import torch

    kwargs = {} if mode in (None, "default") else {"mode": mode}
    model.forward = torch.compile(model.forward, **kwargs)


class CompileWatch:
    """``torch._dynamo`` counters around each run: how long compiling took (dynamo's own
    ``_compile.compile_inner`` time), whether inductor's on-disk FX graph cache was warm, and
    whether a run compiled anything (a measured run that recompiled is not a clean number)."""

    def __init__(self, mode: str | None) -> None:
        self.mode = mode or "default"
        self.compile_time_s = 0.0
        self.compiling_warmups = 0
        self.cache_hits = 0
        self.cache_misses = 0
        self.recompiled_trials: list[int] = []
        self._before: tuple[float, ...] = ()

    @staticmethod
    def _snapshot() -> tuple[float, ...]:
        from torch._dynamo.utils import compilation_time_metrics, counters

        compile_s = sum(compilation_time_metrics.get("_compile.compile_inner", []))
        return (
            float(counters["frames"]["total"]),
            float(counters["stats"]["unique_graphs"]),
            float(compile_s),
            float(counters["inductor"]["fxgraph_cache_hit"]),
            float(counters["inductor"]["fxgraph_cache_miss"]),
        )

    def before(self) -> None:
        self._before = self._snapshot()

    def after(self, warm: bool, index: int) -> bool:
        """Account for one run; ``True`` when it compiled something."""
        delta = [a - b for a, b in zip(self._snapshot(), self._before)]
        compiled = delta[0] > 0 or delta[1] > 0
        if warm:
            self.compile_time_s += delta[2]
            self.compiling_warmups += int(compiled)
            self.cache_hits += int(delta[3])
            self.cache_misses += int(delta[4])
        elif compiled:
            self.recompiled_trials.append(index)
        return compiled

    def to_dict(self) -> dict[str, Any]:
        cache = None
        if self.cache_hits or self.cache_misses:
            cache = "warm" if not self.cache_misses else "cold" if not self.cache_hits else "mixed"
        return {
            "mode": self.mode,
            "compile_time_s": self.compile_time_s,
            "compiling_warmups": self.compiling_warmups,
            "inductor_cache": cache,
            "recompiled_trials": list(self.recompiled_trials),
        }


def compile_watch(variant: dict[str, Any]) -> Any:
    if not variant.get("compile"):
        return None
    return CompileWatch(variant.get("compile_mode"))


def record_compile(entry: dict[str, Any], watch: Any) -> None:
    """``entry["compile"]``, and each measured run that recompiled marked ``recompiled``."""
    entry["compile"] = watch.to_dict()
    for i in watch.recompiled_trials:
        if 0 <= i < len(entry["trials"]):
            entry["trials"][i]["recompiled"] = True
    if watch.recompiled_trials:
        trials = ", ".join(str(i + 1) for i in watch.recompiled_trials)
        entry.setdefault("warnings", []).append(
            f"trial(s) {trials} recompiled (torch._dynamo): not clean numbers; add warm-ups"
        )
