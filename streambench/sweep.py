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

import warnings
from typing import Any

from .engines.transformers import load_model
from .engines.transformers.load import (
    DTYPES,
    LoadedModel,
    check_ipex_available,
    resolve_dtype,
)
from .engines.transformers.quantization import (
    BNB_KINDS,
    IPEX_LLM_KINDS,
    TORCHAO_KINDS,
    check_low_bit_available,
    check_low_bit_kind,
    load_ipex_llm_model,
    low_bit_backend,
)
from .errors import UsageError, describe_exception
from .runners.local.configuration import run_configuration
from .runners.local.plan import (
    PROMPT_TEXT,
    ConfigurationError,
    RankContext,
    SweepSettings,
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
    check_hub_models,
    hub_cache_directory,
    protected_directories,
    resolve_model_spec,
)

warnings.warn(
    "streambench.sweep is deprecated: import from streambench.runners.local, "
    "streambench.engines.transformers or streambench.spec.models",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "BNB_KINDS",
    "DTYPES",
    "EMBEDDED_MODEL",
    "IPEX_LLM_KINDS",
    "PROMPT_TEXT",
    "TORCHAO_KINDS",
    "ConfigurationError",
    "LoadedModel",
    "ModelSpec",
    "RankContext",
    "SweepSettings",
    "UsageError",
    "beam_wrapper_class",
    "build_prompt",
    "check_hub_models",
    "check_ipex_available",
    "check_low_bit_available",
    "check_low_bit_kind",
    "configuration_id",
    "describe_exception",
    "hub_cache_directory",
    "iter_configurations",
    "load_ipex_llm_model",
    "load_model",
    "low_bit_backend",
    "new_entry",
    "parse_in_out",
    "parse_int_list",
    "protected_directories",
    "quiet_transformers",
    "resolve_dtype",
    "resolve_model_spec",
    "run_configuration",
]


def _low_bit_model(spec: ModelSpec, low_bit: str, settings: Any, dtype: Any) -> Any:
    """Old spelling of :func:`streambench.engines.transformers.quantization.load_ipex_llm_model`."""
    return load_ipex_llm_model(spec.source, low_bit, settings.trust_remote_code)
