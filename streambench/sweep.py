"""Old home of the ``streambench run`` sweep: a re-export shim, kept so that existing imports
(``from streambench.sweep import load_model``) keep working.

Where things live now:

- what ``MODEL`` means, hub checks: :mod:`streambench.spec.models`;
- ``--low-bit`` kinds and checks: :mod:`streambench.engines.transformers.quantization`;
- loading a model (:func:`load_model`, :class:`LoadedModel`, dtypes, tokenizers, IPEX):
  :mod:`streambench.engines.transformers` (:mod:`~streambench.engines.transformers.load`,
  :mod:`~streambench.engines.transformers.tensor_parallel`,
  :mod:`~streambench.engines.transformers.placement`);
- the sweep itself (settings, prompts, entries, :func:`run_configuration`,
  :class:`RankContext`): :mod:`streambench.runners.local.plan`;
- :class:`UsageError`: :mod:`streambench.errors`.
"""

from __future__ import annotations

from typing import Any

from .engines.transformers import load_model
from .engines.transformers.load import (
    DTYPES,
    LoadedModel,
    _apply_ipex,
    _auto_class,
    _first_line,
    _offline_kwargs,
    check_ipex_available,
    resolve_dtype,
)
from .engines.transformers.load import dtype_kwargs as _dtype_kwargs
from .engines.transformers.load import load_tokenizer as _load_tokenizer
from .engines.transformers.quantization import (
    BNB_KINDS,
    IPEX_LLM_KINDS,
    TORCHAO_KINDS,
    check_low_bit_available,
    check_low_bit_kind,
    load_ipex_llm_model,
    low_bit_backend,
)
from .engines.transformers.quantization import low_bit_missing as _low_bit_missing
from .engines.transformers.quantization import quantization_config as _quantization_config
from .engines.transformers.quantization import quantized_weights as _quantized_weights
from .engines.transformers.quantization import torchao_config as _torchao_config
from .errors import UsageError, describe_exception
from .runners.local.configuration import run_configuration
from .runners.local.plan import (
    PROMPT_TEXT,
    ConfigurationError,
    RankContext,
    SweepSettings,
    _pad_token_id,
    _stats_dict,
    beam_wrapper_class,
    build_prompt,
    configuration_id,
    iter_configurations,
    new_entry,
    parse_in_out,
    parse_int_list,
    quiet_transformers,
)
from .spec.models import (
    EMBEDDED_MODEL,
    ModelSpec,
    _hub_host,
    _in_hub_cache,
    _looks_like_path,
    _offline_env,
    check_hub_models,
    hub_cache_directory,
    protected_directories,
    resolve_model_spec,
)

__all__ = [
    "EMBEDDED_MODEL",
    "ConfigurationError",
    "LoadedModel",
    "ModelSpec",
    "RankContext",
    "SweepSettings",
    "UsageError",
    "build_prompt",
    "load_model",
    "parse_in_out",
    "parse_int_list",
    "resolve_model_spec",
    "run_configuration",
]

# every other name this module had, for code that imported it from here
_REEXPORTED = (
    BNB_KINDS, DTYPES, IPEX_LLM_KINDS, PROMPT_TEXT, TORCHAO_KINDS, _apply_ipex, _auto_class,
    _dtype_kwargs, _first_line, _hub_host, _in_hub_cache, _load_tokenizer, _looks_like_path,
    _low_bit_missing, _offline_env, _offline_kwargs, _pad_token_id, _quantization_config,
    _quantized_weights, _stats_dict, _torchao_config, beam_wrapper_class, check_hub_models,
    check_ipex_available, check_low_bit_available, check_low_bit_kind, configuration_id,
    hub_cache_directory, iter_configurations, low_bit_backend, new_entry, protected_directories,
    quiet_transformers, resolve_dtype, describe_exception,
)  # fmt: skip


def _low_bit_model(spec: ModelSpec, low_bit: str, settings: Any, dtype: Any) -> Any:
    """Old spelling of :func:`streambench.engines.transformers.quantization.load_ipex_llm_model`."""
    return load_ipex_llm_model(spec.source, low_bit, settings.trust_remote_code)
