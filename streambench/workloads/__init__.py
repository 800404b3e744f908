"""Workloads: the user's own prompts and traffic, read the same way by ``streambench run`` and
``streambench endpoint``.

- :mod:`.files`: prompt files (``.txt``, ``.jsonl``, ShareGPT ``.json``, ``.csv``), read locally
  and checked (one line naming the file and line on any problem);
- :mod:`.spec`: :class:`WorkloadSpec`, the options (``--prompts``, ``--output-len``,
  ``--length-spread``, ``--shared-prefix`` ...) as plain JSON values, and their parsers;
- :mod:`.build`: selection, chat templates, the shared prefix and lengths: :class:`Request`
  objects, from a file (:func:`build_requests`) or drawn (:func:`synthetic_requests`);
- :mod:`.outputs`: per-request results (real lengths, MD5 of the text) and their statistics.

Neither torch nor transformers is imported here; tokenizers are passed in.
"""

from __future__ import annotations

from .build import Request, build_requests, resolve_output_len, select_items, synthetic_requests
from .files import PromptFile, PromptItem, read_prompt_file
from .outputs import output_record, workload_summary
from .spec import WorkloadSpec, parse_output_len, parse_spread

__all__ = [
    "PromptFile",
    "PromptItem",
    "Request",
    "WorkloadSpec",
    "build_requests",
    "output_record",
    "parse_output_len",
    "parse_spread",
    "read_prompt_file",
    "resolve_output_len",
    "select_items",
    "synthetic_requests",
    "workload_summary",
]
