"""The results document as typed objects (``streambench.results/2``, ``docs/results-schema.md``).

- :class:`ResultsDocument`: ``environment``, the sweep's ``settings`` and the
  :class:`ConfigurationResult` list;
- :class:`ConfigurationResult`: one configuration, identified by its
  :class:`ConfigurationSettings` (every setting that selects the workload; the ``id`` and
  ``streambench compare``'s matching come from it), with ``config`` (how it ran), the
  :class:`Aggregates` over its trials and the :class:`RunRecord` of each run;
- :class:`Statistics`: ``n``, ``mean``, ``median``, ``stdev``, ``min``, ``max`` and a map of
  percentiles (``{"50": ..., "90": ..., "99": ...}``).

``from_dict`` reads both the results/2 form and the results/1 form (what old files hold, and
what ``streambench endpoint``'s runner still builds; ``streambench run``'s runner builds a
:class:`ConfigurationResult` directly, :mod:`streambench.runners.local.configuration`); ``to_dict``
writes
results/2. ``from_dict`` does not check types (values
are kept as they are, so that ``compare`` can refuse them one by one); ``load_document`` checks a
file before it gets here.

Units as in the file: seconds for times, bytes for memory, tokens/s for speeds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .percentiles import Statistics, statistics_tree
from .trial_intervals import fill_intervals

__all__ = [
    "AGGREGATE_STATISTICS",
    "SCHEMA",
    "SCHEMA_PREFIX",
    "SETTINGS_KEYS",
    "Aggregates",
    "ConfigurationResult",
    "ConfigurationSettings",
    "Environment",
    "ResultsDocument",
    "RunRecord",
    "RunSetup",
    "Statistics",
    "as_configuration",
    "statistics_tree",
]

#: identifies the results format; the number changes only on incompatible changes
SCHEMA = "streambench.results/2"
SCHEMA_PREFIX = "streambench.results"

# -- one run -------------------------------------------------------------------------------------
#: a run object's keys in the order :meth:`RunResult.to_dict` writes them
RUN_KEYS = (
    "device",
    "reference",
    "complete",
    "batch_size",
    "prompt_tokens",
    "new_tokens",
    "pre_prompt_s",
    "first_token_s",
    "rest_token_mean_s",
    "rest_token_stats_s",
    "total_s",
    "decode_tokens_per_s",
    "decode_throughput_tokens_per_s",
    "prefill_tokens_per_s",
    "peak_memory_bytes",
    "reserved_memory_bytes",
    "memory_kind",
    "streamer_overhead_s",
    "token_latencies_s",
    "step_latencies_s",
    "step_tokens",
    "memory_per_token_bytes",
    "extra",
)


@dataclass
class RunRecord:
    """One ``generate()`` call (or one request of ``streambench endpoint``): the numbers the
    reports read, typed; every other key of the run object in ``other``, as it was.

    ``first_token_s``: call -> first token (s); ``rest_token_mean_s``: mean latency of each later
    token (s/token); ``pre_prompt_s``: call -> prompt hand-over (s); ``peak_memory_bytes``;
    ``rest_token_stats_s``: statistics of the later tokens' latencies (s);
    ``token_latencies_s``: one per generated token, the first token's first (s), ``None`` when
    not recorded (warm-up runs); ``memory_per_token_bytes``: one reading per token, ``None`` for a
    token without a reading."""

    first_token_s: float | None = None
    rest_token_mean_s: float | None = None
    pre_prompt_s: float | None = None
    peak_memory_bytes: float | None = None
    rest_token_stats_s: Statistics | None = None
    token_latencies_s: list[float | None] | None = None
    memory_per_token_bytes: list[float | None] | None = None
    other: dict[str, Any] = field(default_factory=dict)

    _TYPED = (
        "first_token_s",
        "rest_token_mean_s",
        "pre_prompt_s",
        "peak_memory_bytes",
        "rest_token_stats_s",
        "token_latencies_s",
        "memory_per_token_bytes",
    )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        """From a run object (results/1 or /2, or :meth:`RunResult.to_dict`)."""
        lists = {}
        for key in ("token_latencies_s", "memory_per_token_bytes"):
            value = data.get(key)
            lists[key] = list(value) if isinstance(value, list) else value
        return cls(
            first_token_s=data.get("first_token_s"),
            rest_token_mean_s=data.get("rest_token_mean_s"),
            pre_prompt_s=data.get("pre_prompt_s"),
            peak_memory_bytes=data.get("peak_memory_bytes"),
            rest_token_stats_s=Statistics.from_dict(data.get("rest_token_stats_s")),
            other={k: v for k, v in data.items() if k not in cls._TYPED},
            **lists,
        )

    def to_dict(self) -> dict[str, Any]:
        """The run object (per-token lists only where recorded)."""
        stats = self.rest_token_stats_s
        typed: dict[str, Any] = {
            "pre_prompt_s": self.pre_prompt_s,
            "first_token_s": self.first_token_s,
            "rest_token_mean_s": self.rest_token_mean_s,
            "rest_token_stats_s": stats.to_dict() if stats is not None else None,
            "peak_memory_bytes": self.peak_memory_bytes,
        }
        if self.token_latencies_s is not None:
            typed["token_latencies_s"] = list(self.token_latencies_s)
        if self.memory_per_token_bytes is not None:
            typed["memory_per_token_bytes"] = list(self.memory_per_token_bytes)
        return _ordered({**self.other, **typed}, RUN_KEYS)


def _ordered(data: dict[str, Any], order: Iterable[str]) -> dict[str, Any]:
    """``data`` with the keys of ``order`` first (in that order), then the others."""
    out = {k: data[k] for k in order if k in data}
    out.update((k, v) for k, v in data.items() if k not in out)
    return out


# -- aggregates ----------------------------------------------------------------------------------
#: the statistics objects of ``aggregates``
AGGREGATE_STATISTICS = (
    "first_token_s",
    "rest_token_mean_s",
    "decode_tokens_per_s",
    "decode_throughput_tokens_per_s",
    "prefill_tokens_per_s",
    "pre_prompt_s",
)
_AGGREGATE_COUNTS = ("runs", "warmup", "incomplete")
_AGGREGATE_TAIL = ("peak_memory_bytes", "memory_kind", "new_tokens", "batch_size", "prompt_tokens")


@dataclass
class Aggregates:
    """Over the measured trials of a configuration: ``runs`` measured, ``warmup`` skipped,
    ``incomplete`` that never finished; statistics over the trials of ``first_token_s`` (s),
    ``rest_token_mean_s`` (s/token), ``decode_tokens_per_s`` (one sequence),
    ``decode_throughput_tokens_per_s`` (x batch), ``prefill_tokens_per_s``, ``pre_prompt_s``
    (s); ``peak_memory_bytes`` the largest peak; ``memory_kind`` what it measures; ``new_tokens``,
    ``batch_size``, ``prompt_tokens`` shared by every trial (``None`` when they differ);
    ``extra``: what a command adds (``endpoint``: its TTFT/TPOT/ITL/E2E summary)."""

    runs: int | None = None
    warmup: int | None = None
    incomplete: int | None = None
    first_token_s: Statistics | None = None
    rest_token_mean_s: Statistics | None = None
    decode_tokens_per_s: Statistics | None = None
    decode_throughput_tokens_per_s: Statistics | None = None
    prefill_tokens_per_s: Statistics | None = None
    pre_prompt_s: Statistics | None = None
    peak_memory_bytes: float | None = None
    memory_kind: str | None = None
    new_tokens: int | None = None
    batch_size: int | None = None
    prompt_tokens: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def statistic(self, name: str) -> Statistics | None:
        """One of :data:`AGGREGATE_STATISTICS` by name, or a statistics object of ``extra``
        (``tokens_per_step``); ``None`` for an unknown name."""
        if name in AGGREGATE_STATISTICS:
            return getattr(self, name)
        value = self.extra.get(name)
        return Statistics.from_dict(value) if isinstance(value, Mapping) else None

    @classmethod
    def from_dict(cls, data: Any) -> Aggregates | None:
        """From an ``aggregates`` object (results/1 or /2); ``None`` for anything else."""
        if not isinstance(data, Mapping):
            return None
        known = (*_AGGREGATE_COUNTS, *AGGREGATE_STATISTICS, *_AGGREGATE_TAIL)
        values: dict[str, Any] = {k: data.get(k) for k in (*_AGGREGATE_COUNTS, *_AGGREGATE_TAIL)}
        values.update((k, Statistics.from_dict(data.get(k))) for k in AGGREGATE_STATISTICS)
        extra = {k: statistics_tree(v) for k, v in data.items() if k not in known}
        return cls(**values, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in _AGGREGATE_COUNTS}
        for name in AGGREGATE_STATISTICS:
            stats = getattr(self, name)
            out[name] = stats.to_dict() if stats is not None else None
        out.update((k, getattr(self, k)) for k in _AGGREGATE_TAIL)
        out.update(self.extra)
        return out


# -- the configuration's identity ----------------------------------------------------------------
#: the settings that identify a configuration, in the order written; a missing one is its default
SETTINGS_KEYS = (
    "model",
    "input_tokens",
    "output_tokens",
    "batch_size",
    "num_beams",
    "concurrency",
    "request_rate",
    "chat",
)
#: defaults of the optional settings (written only when they differ)
_SETTING_DEFAULTS: dict[str, Any] = {"concurrency": None, "request_rate": None, "chat": False}


@dataclass
class ConfigurationSettings:
    """Every setting that selects the workload of a configuration: ``model``,
    ``input_tokens`` (prompt tokens per sequence, as asked), ``output_tokens`` (new tokens),
    ``batch_size``, ``num_beams`` (1: greedy); for a served model ``concurrency`` (requests in
    flight; ``None``: a local ``generate()``, one at a time, compared as 1), ``request_rate``
    (requests/s, ``None``: as fast as answered) and ``chat`` (the chat API). ``further``: settings
    added by later versions (a missing one means its default). How it ran (device, dtype,
    ``low_bit``, warm-ups, trials) is not identity: it stays in ``config``."""

    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    batch_size: int | None = None
    num_beams: int | None = 1
    concurrency: int | None = None
    request_rate: float | None = None
    chat: bool = False
    further: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConfigurationSettings:
        """From a results/2 ``settings`` object or a results/1 ``config`` (its other keys are
        ignored here: see :meth:`ConfigurationResult.from_dict`)."""
        known = {k: data[k] for k in SETTINGS_KEYS if k in data}
        if "num_beams" in data and data["num_beams"] is None:
            known["num_beams"] = 1
        further = data.get("further")
        return cls(**known, further=dict(further) if isinstance(further, Mapping) else {})

    def to_dict(self) -> dict[str, Any]:
        """The results/2 object: the first five always, the others when not their default."""
        out = {k: getattr(self, k) for k in SETTINGS_KEYS[:5]}
        for key, default in _SETTING_DEFAULTS.items():
            if getattr(self, key) != default:
                out[key] = getattr(self, key)
        if self.further:
            out["further"] = dict(self.further)
        return out

    def default_id(self) -> str:
        """The ``id`` derived from the settings: ``"MODEL|IN-OUT|bsN"``, then ``|beamsN`` (beams >
        1), ``|cN`` (a served model), ``|rateR``, ``|chat`` and ``|name=value`` of ``further``."""
        parts = [
            str(self.model),
            f"{self.input_tokens}-{self.output_tokens}",
            f"bs{self.batch_size}",
        ]
        if self.num_beams not in (None, 1):
            parts.append(f"beams{self.num_beams}")
        if self.concurrency is not None:
            parts.append(f"c{self.concurrency}")
        return "|".join(parts + self._load_parts())

    def match_key(self, with_model: bool = True) -> str:
        """What ``streambench compare`` matches: every setting, a missing one as its default
        (concurrency ``None`` as 1); the model only ``with_model``.

        >>> ConfigurationSettings("m", 8, 4, 1).match_key()
        'm|8-4|bs1|beams1'
        """
        parts = [
            f"{self.input_tokens}-{self.output_tokens}",
            f"bs{self.batch_size}",
            f"beams{1 if self.num_beams is None else self.num_beams}",
        ]
        if self.concurrency is not None and self.concurrency != 1:
            parts.append(f"c{self.concurrency}")
        if with_model:
            parts.insert(0, str(self.model))
        return "|".join(parts + self._load_parts())

    def _load_parts(self) -> list[str]:
        parts = []
        if self.request_rate is not None:
            rate = self.request_rate
            parts.append(f"rate{rate:g}" if isinstance(rate, (int, float)) else f"rate{rate}")
        if self.chat:
            parts.append("chat")
        parts += [f"{k}={v}" for k, v in sorted(self.further.items())]
        return parts


# -- how it ran, where it ran ---------------------------------------------------------------------
_SETUP_KEYS = ("low_bit", "dtype", "device", "warmup", "trials")


@dataclass
class RunSetup:
    """How a configuration ran (a configuration's ``config``; not part of its identity):
    ``low_bit`` (quantization, ``None``: none), ``dtype`` and ``device`` as resolved
    (``"float32"``, ``"cpu"``; ``"endpoint"`` for a served model), ``warmup`` runs skipped and
    ``trials`` measured; ``other``: a command's own keys (``endpoint``, ``sent_fields`` …)."""

    low_bit: str | None = None
    dtype: str | None = None
    device: str | None = None
    warmup: int | None = None
    trials: int | None = None
    other: dict[str, Any] = field(default_factory=dict)

    @property
    def cpu_embedding(self) -> bool:
        """ipex-llm's ``cpu_embedding`` (a CSV column): never used by streambench."""
        return bool(self.other.get("cpu_embedding", False))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSetup:
        """From ``config`` (results/2; in results/1 after its identity keys are taken out)."""
        other = {k: v for k, v in data.items() if k not in _SETUP_KEYS}
        return cls(**{k: data.get(k) for k in _SETUP_KEYS}, other=other)

    def to_dict(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in _SETUP_KEYS}, **self.other}


_ENV_KEYS = (
    "streambench",
    "python",
    "platform",
    "date",
    "cpu_model",
    "cpu_count",
    "argv",
    "torch",
    "transformers",
    "device",
    "device_name",
)


@dataclass
class Environment:
    """Where it ran: versions (``streambench``, ``python``, ``torch``, ``transformers``; others in
    ``other``), ``platform`` (OS), ``date`` (start, UTC, ISO 8601), ``cpu_model``, ``cpu_count``,
    ``argv``, ``device`` (resolved, ``"cuda:0"``; ``"endpoint"``) and ``device_name`` (GPU or CPU
    model; the URL of an endpoint). ``None``: not recorded."""

    streambench: str | None = None
    python: str | None = None
    platform: str | None = None
    date: str | None = None
    cpu_model: str | None = None
    cpu_count: int | None = None
    argv: list[str] | None = None
    torch: str | None = None
    transformers: str | None = None
    device: str | None = None
    device_name: str | None = None
    other: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any) -> Environment:
        if not isinstance(data, Mapping):
            return cls()
        other = {k: v for k, v in data.items() if k not in _ENV_KEYS}
        return cls(**{k: data.get(k) for k in _ENV_KEYS}, other=other)

    def to_dict(self) -> dict[str, Any]:
        """The recorded keys (``None`` left out), then the others."""
        known = {k: getattr(self, k) for k in _ENV_KEYS if getattr(self, k) is not None}
        return {**known, **self.other}


# -- one configuration ---------------------------------------------------------------------------
_SCALARS = (
    "status",
    "error",
    "actual_input_tokens",
    "actual_output_tokens",
    "encoder_decoder",
    "model_loading_time_s",
    "started_at",
    "duration_s",
)
_ENTRY_KEYS = ("id", "label", "settings", "config", *_SCALARS, "aggregates", "warmup_runs")


@dataclass
class ConfigurationResult:
    """One configuration: ``settings`` (its identity), ``id`` (stable key) and ``label`` (for
    people), ``config`` (how it ran: ``low_bit``, ``dtype``, ``device``, ``warmup``, ``trials``
    and a command's own keys), ``status`` (``ok``, ``failed``, ``interrupted``), ``error`` (one
    line), ``actual_input_tokens``/``actual_output_tokens`` (per sequence, ``None`` when
    unknown), ``encoder_decoder``, ``model_loading_time_s`` (s), ``started_at`` (UTC, ISO 8601),
    ``duration_s`` (s), ``aggregates`` (``None`` unless ``ok``), ``warmup_runs`` and ``trials``,
    ``csv_extra`` (a command's own CSV columns) and ``extra`` (other keys: ``requests``,
    ``warnings``, ``ranks``)."""

    settings: ConfigurationSettings = field(default_factory=ConfigurationSettings)
    id: str | None = None
    label: str | None = None
    config: RunSetup = field(default_factory=RunSetup)
    status: str | None = None
    error: str | None = None
    actual_input_tokens: int | None = None
    actual_output_tokens: int | None = None
    encoder_decoder: bool | None = None
    model_loading_time_s: float | None = None
    started_at: str | None = None
    duration_s: float | None = None
    aggregates: Aggregates | None = None
    warmup_runs: list[RunRecord] = field(default_factory=list)
    trials: list[RunRecord] = field(default_factory=list)
    csv_extra: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The label, else the id, else ``""``: how reports name the configuration."""
        for value in (self.label, self.id):
            if value is not None:
                return str(value)
        return ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConfigurationResult:
        """THE conversion of a configuration entry: results/2 (with ``settings``), results/1
        (identity inside ``config``: old files, and what ``endpoint`` builds), or a partial one
        (missing keys stay ``None``). Values are not checked. Also how the isolation worker's
        results/2 objects are read back in the parent: ``from_dict(r.to_dict())`` gives ``r``'s
        document again."""
        cfg = data.get("config")
        cfg = dict(cfg) if isinstance(cfg, Mapping) else {}
        given = data.get("settings")
        if isinstance(given, Mapping):  # results/2
            settings = ConfigurationSettings.from_dict(given)
        else:  # results/1: the identity is part of config
            settings = ConfigurationSettings.from_dict(cfg)
            cfg = {k: v for k, v in cfg.items() if k not in (*SETTINGS_KEYS, "further")}
        csv_extra = data.get("csv_extra")
        known = {*_ENTRY_KEYS, "trials", "csv_extra", "environment", "schema", "command"}
        aggregates = Aggregates.from_dict(data.get("aggregates"))
        trials = _runs(data.get("trials"))
        fill_intervals(aggregates, trials)  # ci95 from the trials where the file has none
        return cls(
            settings=settings,
            id=data.get("id"),
            label=data.get("label"),
            config=RunSetup.from_dict(cfg),
            **{k: data.get(k) for k in _SCALARS},
            aggregates=aggregates,
            warmup_runs=_runs(data.get("warmup_runs")),
            trials=trials,
            csv_extra=dict(csv_extra) if isinstance(csv_extra, Mapping) else {},
            extra={k: statistics_tree(v) for k, v in data.items() if k not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        """The results/2 configuration object."""
        out: dict[str, Any] = {
            "id": self.id if self.id is not None else self.settings.default_id(),
            "label": self.name or self.settings.default_id(),
            "settings": self.settings.to_dict(),
            "config": self.config.to_dict(),
        }
        out.update((k, getattr(self, k)) for k in _SCALARS)
        out["aggregates"] = self.aggregates.to_dict() if self.aggregates is not None else None
        out["warmup_runs"] = [r.to_dict() for r in self.warmup_runs]
        out["trials"] = [r.to_dict() for r in self.trials]
        out.update(self.extra)
        if self.csv_extra:
            out["csv_extra"] = dict(self.csv_extra)
        return out


def _runs(value: Any) -> list[RunRecord]:
    if not isinstance(value, list):
        return []
    return [RunRecord.from_dict(r) for r in value if isinstance(r, Mapping)]


# -- the document --------------------------------------------------------------------------------
@dataclass
class ResultsDocument:
    """A results file: ``command`` that wrote it (``run``, ``endpoint``), ``environment`` (versions
    and machine), ``settings`` (the sweep as asked), ``configurations`` in sweep order,
    ``interrupted`` (stopped before its end); ``extra``: other top-level keys. In memory the
    document is always the current version: :meth:`to_dict` writes :data:`SCHEMA`."""

    command: str = "run"
    environment: Environment = field(default_factory=Environment)
    settings: dict[str, Any] = field(default_factory=dict)
    configurations: list[ConfigurationResult] = field(default_factory=list)
    interrupted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, where: str = "results") -> ResultsDocument:
        """From a results/2 or results/1 document (or the dict a runner builds, with results/1
        entries). ``ValueError`` when ``configurations`` is not a list of objects."""
        entries = data.get("configurations") if isinstance(data, Mapping) else None
        typed = (Mapping, ConfigurationResult)
        if not isinstance(entries, list) or not all(isinstance(e, typed) for e in entries):
            raise ValueError(
                f"{where}: 'configurations' must be a list of objects (read files with "
                "load_document)"
            )
        known = ("schema", "command", "environment", "settings", "configurations", "interrupted")
        env, settings = data.get("environment"), data.get("settings")
        return cls(
            command=data.get("command", "run"),
            environment=Environment.from_dict(env),
            settings=dict(settings) if isinstance(settings, Mapping) else {},
            configurations=[as_configuration(e) for e in entries],
            interrupted=bool(data.get("interrupted", False)),
            extra={k: v for k, v in data.items() if k not in known},
        )

    @classmethod
    def coerce(
        cls, doc: ResultsDocument | Mapping[str, Any], where: str = "results"
    ) -> ResultsDocument:
        """``doc`` itself, or a dict converted with :meth:`from_dict`."""
        return doc if isinstance(doc, cls) else cls.from_dict(doc, where)

    def to_dict(self) -> dict[str, Any]:
        """The results/2 document."""
        return {
            "schema": SCHEMA,
            "command": self.command,
            "environment": self.environment.to_dict(),
            "settings": dict(self.settings),
            "configurations": [e.to_dict() for e in self.configurations],
            "interrupted": self.interrupted,
            **self.extra,
        }

    def line_dicts(self) -> list[dict[str, Any]]:
        """The JSON Lines form: one object per configuration with ``schema``, ``command`` and
        ``environment`` added."""
        env = self.environment.to_dict()
        head = {"schema": SCHEMA, "command": self.command, "environment": env}
        return [{**head, **e.to_dict()} for e in self.configurations]


def as_configuration(entry: ConfigurationResult | Mapping[str, Any]) -> ConfigurationResult:
    """``entry`` itself, or a dict converted with :meth:`ConfigurationResult.from_dict`."""
    if isinstance(entry, ConfigurationResult):
        return entry
    return ConfigurationResult.from_dict(entry)


def new_document(
    command: str, env: dict[str, Any], settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An empty results document in its file form (``configurations`` are appended as they
    finish; the writers read it with :meth:`ResultsDocument.coerce`)."""
    return {
        "schema": SCHEMA,
        "command": command,
        "environment": env,
        "settings": settings or {},
        "configurations": [],
        "interrupted": False,
    }
