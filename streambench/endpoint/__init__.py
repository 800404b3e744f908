"""Benchmark an OpenAI-compatible streaming server: TTFT, TPOT, ITL and E2E per request.

Client side only: requests are streamed (``"stream": true``) over HTTP with ``httpx`` and the
server-sent events are decoded with ``httpx-sse`` (multi-line ``data:`` fields, ``:`` keep-alive
comments, ``[DONE]``). Every time below is ``time.perf_counter()`` seconds on the client, counted
from the moment the request is handed to the HTTP client (*sent*), for one request:

- ``ttft_s``: sent -> the first event that carries a generated token of any kind: text, reasoning
  text, or a chunk without text whose per-chunk ``usage`` rose (empty role/usage-only chunks do
  not count); ``ttfo_s``: sent -> the first visible output text (:mod:`.stream_parts`).
- ``e2e_s``: sent -> the end of the stream (``[DONE]``, or the server closing a stream whose last
  chunk had a ``finish_reason``).
- ``tpot_s``: ``(e2e_s - ttft_s) / (output_tokens - 1)``; ``None`` with fewer than two tokens.
- ``itl_s``: one inter-token latency per output token after the first. A chunk that carries ``k``
  tokens is ``k`` tokens: the gap since the previous text chunk is split evenly over them; the
  ``k - 1`` companions of the *first* token arrived with it and get ``0.0`` (the same rule as the
  local timing core, :mod:`streambench.timing`). So ``sum(itl_s) = last text chunk - ttft_s``.
- ``chunk_times_s`` / ``chunk_tokens``: the raw text chunks (arrival time since sent, tokens).

Tokens per chunk (``token_count``, one value per request):

- ``"usage_per_chunk"``: the server sent cumulative ``usage`` in every chunk (vLLM with
  ``stream_options.continuous_usage_stats``): exact.
- ``"usage+tokenizer"`` / ``"usage+text"``: the total from the final ``usage`` chunk
  (``stream_options.include_usage``), split over the chunks by tokenizing the text (``--tokenizer``)
  or, without a tokenizer, in proportion to each chunk's characters (each chunk gets at least one
  token while there are enough).
- ``"tokenizer"``: no usage; the concatenated text tokenized locally, each token counted in the
  chunk where it ends.
- ``"chunks"``: no usage and no tokenizer: every text chunk is counted as one token (a lower
  bound when the server sends several tokens per chunk).

Failed requests (connection refused, HTTP 4xx/5xx, a redirect, a non-SSE reply, an ``error``
event, a stream cut before ``[DONE]``/``finish_reason``, a timeout) are kept with ``ok=False`` and
their ``error``; they never enter latency statistics. Only the URL given is contacted: no redirects
are followed and proxy/``.netrc`` settings from the environment are ignored.

Secrets never reach an output (results files, tables, error lines, ``--verbose`` lines): the API
key is sent as a bearer token and masked wherever it could appear (also when a server echoes it);
a ``user:password@`` in a URL, query-string credentials, ``--api-key`` values and credential-named
``--extra-body`` fields are replaced by ``***`` (see :func:`scrub_text`, :func:`scrub_argv`).

Everything the server sends is input and bounded: an event is at most ``MAX_EVENT_CHARS``
characters, a request at most ``2 * max_tokens + 64`` text chunks and ``MAX_CHARS_PER_TOKEN *
max_tokens + 65536`` characters, an error body is read up to 4 KiB, compressed replies are
refused, and ``usage`` counts must be whole, finite, non-negative and plausible (at most
``2 * max(max_tokens, text chunks) + 16``); a count that is not is ignored, the tokens are counted
from the text chunks instead and the request records a warning (``warnings``).

Time bound: every request (probe, warm-up, measured) is bounded by ``timeout_s``, and with
``request_rate`` each arrival gap is cut at ``timeout_s``, so one configuration takes at most
:attr:`EndpointSpec.max_duration_s` = ``(probes + warmup + ceil(requests / concurrency)) *
timeout_s`` (``(probes + warmup + requests) * timeout_s`` with a request rate); ``probes`` is 3
with ``force="auto"`` (1 unless the server answers 400/422 to the forcing fields), else 0.

Example (library use; ``python -m streambench.endpoint --help`` for the command line):
    >>> from streambench.endpoint import EndpointSpec, run_endpoint
    >>> spec = EndpointSpec(url="http://127.0.0.1:8000/v1", model="my-model", requests=8,
    ...                     concurrency=2, prompt_tokens=32, output_tokens=64)
    >>> result = run_endpoint(spec)  # doctest: +SKIP
    >>> result.summary.ttft_s.median, result.summary.tpot_s.p90  # doctest: +SKIP

Modules (every name is importable from ``streambench.endpoint``): :mod:`.spec` (what to send,
bounds, SLO parsing), :mod:`.scrub` (secrets masked), :mod:`.client` (one streamed request,
bounded), :mod:`.tokens` (tokens per chunk), :mod:`.prompts`, :mod:`.records` (one request),
:mod:`.metrics` (the summary of a run), :mod:`.runner` (the load generator), :mod:`.results`
(the results-document entry, the console table), :mod:`.cli` (the command line: options and
the command), :mod:`.served_sweep` (the served sweep runner around the driver), :mod:`.backends`
(the served backends behind ``--backend``: the contract, the registry, ``openai``); load:
:mod:`.load` (arrivals, ramp-up, duration, error-rate stop, percentiles, the client's lag),
:mod:`.loadgen` (the measured phase of a load point), :mod:`.workers` (``--workers``: that phase
over several client processes), :mod:`.loadcli` (the load options, the sweep axes),
:mod:`.capacity` (the ``--find-max-rate`` search), :mod:`.sweeps` (sweeps and searches around the
driver), :mod:`.transport` (``--header``, TLS), :mod:`.stream_parts` (reasoning, tokens
without text), :mod:`.server_metrics` (``--server-metrics``), :mod:`.extra_lines` (their table
lines).
"""

from __future__ import annotations

from .backends import ServedBackend, backend_names, get_backend
from .capacity import CapacitySearch, SearchSettings
from .cli import add_arguments, cmd_endpoint, main, specs_from_args
from .load import ClientLag, LoadSettings, arrival_offsets
from .metrics import EndpointResult, EndpointSummary, summarize
from .prompts import PROMPT_WORDS_UP_FRONT, iter_prompts, make_prompts
from .records import RequestRecord
from .results import CSV_COLUMNS, configuration_id, endpoint_table, environment, to_entry
from .runner import EndpointBenchmark, arrival_gaps, run_endpoint
from .scrub import scrub_argv, scrub_text
from .spec import (
    DEFAULT_API_KEY_ENV,
    FORCE_FIELDS,
    MAX_CHARS_PER_TOKEN,
    MAX_CONCURRENCY,
    MAX_ERROR_BODY,
    MAX_EVENT_CHARS,
    MAX_IN_OUT_PAIRS,
    MAX_REQUEST_RATE,
    MAX_REQUESTS,
    MAX_TIMEOUT_S,
    MAX_TOKENS,
    MAX_WARMUP,
    SLO_KEYS,
    EndpointError,
    EndpointSpec,
    parse_duration,
    parse_slo,
    request_url,
)
from .tokens import apportion, count_chunk_tokens, load_tokenizer
from .transport import Transport

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_API_KEY_ENV",
    "FORCE_FIELDS",
    "MAX_CHARS_PER_TOKEN",
    "MAX_CONCURRENCY",
    "MAX_ERROR_BODY",
    "MAX_EVENT_CHARS",
    "MAX_IN_OUT_PAIRS",
    "MAX_REQUESTS",
    "MAX_REQUEST_RATE",
    "MAX_TIMEOUT_S",
    "MAX_TOKENS",
    "MAX_WARMUP",
    "PROMPT_WORDS_UP_FRONT",
    "SLO_KEYS",
    "CapacitySearch",
    "ClientLag",
    "EndpointBenchmark",
    "EndpointError",
    "EndpointResult",
    "EndpointSpec",
    "EndpointSummary",
    "LoadSettings",
    "RequestRecord",
    "SearchSettings",
    "ServedBackend",
    "Transport",
    "add_arguments",
    "apportion",
    "arrival_gaps",
    "arrival_offsets",
    "backend_names",
    "cmd_endpoint",
    "configuration_id",
    "count_chunk_tokens",
    "endpoint_table",
    "environment",
    "get_backend",
    "iter_prompts",
    "load_tokenizer",
    "main",
    "make_prompts",
    "parse_duration",
    "parse_slo",
    "request_url",
    "run_endpoint",
    "scrub_argv",
    "scrub_text",
    "specs_from_args",
    "summarize",
    "to_entry",
]
