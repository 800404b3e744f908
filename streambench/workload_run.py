"""``streambench run`` with a workload (:mod:`streambench.workloads`): the user's prompts, drawn
lengths or a shared prefix, measured with the model's own ``generate()``.

- :func:`preflight` (before any model is loaded): reads the prompt file, builds every model's
  requests with its tokenizer and context (no weights), so a bad file, a prompt too long or a
  missing chat template is exit 2 before anything is loaded or written;
- :func:`run_workload_configuration`: one configuration (model x batch size, or x ``--in-out``
  pair for drawn lengths). With a prompt file one trial runs every selected prompt once, in
  batches of the batch size, left-padded with an attention mask; warm-ups run the first batch.
  With drawn lengths each run is one batch of new draws. Each ``generate()`` is one run (one
  ``TimingStreamer`` run); its ``extra.workload`` keeps the padded length ``generate()`` saw and
  per request the prompt index, real input and output lengths and an MD5 of the text.
"""

from __future__ import annotations

import datetime
import math
import time
from typing import Any, Callable

from .errors import UsageError, describe_exception
from .generation import short_runs
from .local_run import ConfigurationError, SweepSettings, _aggregates, _pad_token_id
from .trial_loop import TrialLog, record_load
from .workloads import (
    WorkloadSpec,
    build_requests,
    output_record,
    read_prompt_file,
    resolve_output_len,
    synthetic_requests,
    workload_summary,
)

__all__ = [
    "count_new_tokens",
    "measure_function",
    "preflight",
    "run_workload_configuration",
    "steps_of",
]


def measure_function(settings: SweepSettings) -> Callable[..., dict[str, Any]]:
    """What measures one configuration of ``settings``: :func:`run_workload_configuration` with
    a workload, else :func:`streambench.local_run.run_configuration`."""
    from .local_run import run_configuration

    w = settings.workload
    return run_workload_configuration if w is not None and w.active else run_configuration


def preflight(settings: SweepSettings, note: Callable[[str], None]) -> None:
    """Check the prompt file against every model (tokenizer and context only, no weights) and
    record its SHA-256 and the number of usable prompts per model (:class:`UsageError`: exit 2,
    before any model is loaded)."""
    from .loading.load import tokenizer_and_context

    w = settings.workload
    if w is None or not w.uses_file:
        return
    file = read_prompt_file(str(w.prompts))
    for line in file.notes:  # once per sweep: workers read the file again, quietly
        note(line)
    w.prompts, w.prompts_sha256 = file.path, file.sha256
    w.output_len = resolve_output_len(w, file)
    for spec in settings.models:
        tokenizer, context, vocab = tokenizer_and_context(spec, settings)
        if tokenizer is None:
            raise UsageError(
                f"--prompts needs a tokenizer, and {spec.name} has none (a "
                "--random-weights preset): give a model directory with one"
            )
        requests, skipped = build_requests(
            w, file, tokenizer=tokenizer, seed=settings.seed, context=context, vocab=vocab
        )
        w.counts[spec.name] = len(requests)
        if skipped:
            note(
                f"{spec.name}: {len(skipped)} prompt(s) of {file.name} skipped (--skip-invalid), "
                f"first: {skipped[0]}"
            )


def steps_of(settings: SweepSettings, model_name: str, batch: int) -> int:
    """``generate()`` calls of one configuration (for the progress bar)."""
    w = settings.workload
    if w is None or not w.uses_file:
        return settings.warmup + settings.trials
    count = w.counts.get(model_name, 1)
    return settings.warmup + settings.trials * math.ceil(count / batch)


def _requests(loaded: Any, w: WorkloadSpec, settings: SweepSettings, cfg: dict[str, Any]) -> Any:
    """``(requests, skipped, runs)``: ``runs`` the batches of request indices, warm-ups first."""
    batch = cfg["batch_size"]
    vocab = int(getattr(loaded.config, "vocab_size", 0) or 32000)
    if w.uses_file:
        file = read_prompt_file(str(w.prompts))
        if w.prompts_sha256 and file.sha256 != w.prompts_sha256:
            raise ConfigurationError(f"--prompts {file.path} changed while the sweep ran")
        reqs, skipped = build_requests(
            w,
            file,
            tokenizer=loaded.tokenizer,
            seed=settings.seed,
            context=loaded.context_length,
            vocab=vocab,
        )
        batches = [list(range(i, min(i + batch, len(reqs)))) for i in range(0, len(reqs), batch)]
        runs = [(True, -1, batches[0])] * settings.warmup
        runs += [(False, t, b) for t in range(settings.trials) for b in batches]
        return reqs, len(skipped), runs
    n = settings.warmup + settings.trials
    if not (w.length_spread or w.shared_prefix):  # --save-outputs alone: the usual prompt
        from .local_run import build_prompt
        from .workloads import Request

        row = tuple(build_prompt(loaded, cfg["input_tokens"], 1, settings.seed)[0].tolist())
        one = Request(0, "prompt", None, None, row, len(row), cfg["output_tokens"])
        runs = [(i < settings.warmup, i - settings.warmup, [0] * batch) for i in range(n)]
        return [one], 0, runs
    reqs = synthetic_requests(
        w,
        cfg["input_tokens"],
        cfg["output_tokens"],
        n * batch,
        tokenizer=loaded.tokenizer,
        seed=settings.seed,
        vocab=vocab,
    )
    limit = loaded.context_length
    longest = max(len(r.input_ids or ()) + (r.output_tokens or 0) for r in reqs)
    if limit is not None and longest > limit:
        raise ConfigurationError(
            f"a drawn prompt + output of {longest} tokens exceeds the "
            f"model's context of {limit} tokens"
        )
    runs = [
        (i < settings.warmup, i - settings.warmup, list(range(i * batch, (i + 1) * batch)))
        for i in range(n)
    ]
    return reqs, 0, runs


def _eos_ids(loaded: Any) -> set[int]:
    out: set[int] = set()
    for source in (loaded.model.generation_config, loaded.config):
        value = getattr(source, "eos_token_id", None)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, int):
                out.add(v)
    return out


def count_new_tokens(row: list[int], eos: set[int], natural: bool) -> int:
    """Tokens one batch row generated: with a natural length, up to and including its own first
    EOS (``generate()`` pads finished rows until the longest is done), else all of them.

    >>> count_new_tokens([5, 6, 2, 0, 0], {2}, True), count_new_tokens([5, 6, 2], {2}, False)
    (3, 3)
    """
    if natural:
        for i, tok in enumerate(row):
            if tok in eos:
                return i + 1
    return len(row)


class _Batches:
    """One timed ``generate()`` per batch of requests, left-padded with an attention mask."""

    def __init__(
        self, loaded: Any, w: WorkloadSpec, settings: SweepSettings, print_fn: Any
    ) -> None:
        from .streamer import TimingStreamer

        self.loaded, self.w = loaded, w
        self.natural = w.output_len == "natural" and w.uses_file
        self.pad = _pad_token_id(loaded)
        self.eos = _eos_ids(loaded)
        self.streamer = TimingStreamer(
            loaded.device, verbose=settings.verbose, do_print=settings.verbose, print_fn=print_fn
        )

    def run(self, reqs: list[Any], warm: bool, trial: int) -> None:
        import torch

        width = max(len(r.input_ids) for r in reqs)
        ids = [[self.pad] * (width - len(r.input_ids)) + list(r.input_ids) for r in reqs]
        mask = [[0] * (width - len(r.input_ids)) + [1] * len(r.input_ids) for r in reqs]
        device = self.loaded.device
        kwargs: dict[str, Any] = dict(
            attention_mask=torch.tensor(mask, device=device),
            do_sample=False,
            pad_token_id=self.pad,
            streamer=self.streamer,
        )
        if self.natural:
            kwargs["max_new_tokens"] = self.w.max_output_len
        else:
            n = max(int(r.output_tokens) for r in reqs)
            kwargs["max_new_tokens"] = kwargs["min_new_tokens"] = n
        self.streamer.mark_start()
        out = self.loaded.model.generate(torch.tensor(ids, device=device), **kwargs)
        start = 1 if self.loaded.is_encoder_decoder else width
        rows = out[:, start:].tolist()
        records = []
        for req, row in zip(reqs, rows):
            n_new = count_new_tokens(row, self.eos, self.natural)
            text = None
            if self.loaded.tokenizer is not None:
                text = self.loaded.tokenizer.decode(row[:n_new], skip_special_tokens=True)
            records.append(
                output_record(req.index, req.input_tokens, n_new, text, self.w.save_outputs)
            )
        run = self.streamer.runs[-1]
        run.extra["workload"] = {
            "warmup": warm,
            "trial": trial,
            "padded_input_tokens": width,
            "requests": records,
        }
        if not self.natural:  # a run with fewer tokens is incomplete (see _record)
            run.extra["workload"]["forced_tokens"] = kwargs["min_new_tokens"]


def run_workload_configuration(
    loaded: Any,
    entry: dict[str, Any],
    settings: SweepSettings,
    on_run: Callable[[int, bool], None] | None = None,
    print_fn: Callable[[str], None] = print,
    variant: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The workload counterpart of :func:`streambench.local_run.run_configuration` (same
    contract: fills ``entry`` in place, raises after marking it failed or interrupted).
    Generation-setting variants do not combine with a workload yet (refused by the spec)."""
    cfg = entry["config"]
    entry["started_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    entry["model_loading_time_s"] = loaded.load_time_s
    cfg["dtype"] = str(loaded.dtype).replace("torch.", "")
    cfg["device"] = str(loaded.device)
    t0 = time.perf_counter()
    try:
        if settings.num_beams > 1:
            raise ConfigurationError(
                "a workload (--prompts, --length-spread, --shared-prefix, "
                "--save-outputs) runs greedy only: use --num-beams 1"
            )
        w = settings.workload
        assert w is not None
        reqs, skipped, runs = _requests(loaded, w, settings, cfg)
        batches = _Batches(loaded, w, settings, print_fn)
        log = TrialLog()
        _run_all(batches, reqs, runs, entry, settings, on_run, print_fn, log)
        _record(entry, batches.streamer.runs, settings.warmup, skipped)
        entry["encoder_decoder"] = loaded.is_encoder_decoder
        entry["stopped"] = "trials"
        record_load(entry, settings, log)
    except KeyboardInterrupt as exc:
        entry["status"] = "interrupted"
        entry["error"] = f"interrupted ({exc or 'SIGINT'}) before this configuration finished"
        raise
    except (ConfigurationError, UsageError) as exc:
        entry["status"], entry["error"] = "failed", str(exc)
        raise
    except Exception as exc:
        entry["status"] = "failed"
        entry["error"] = describe_exception(exc).splitlines()[0]
        raise
    finally:
        entry["duration_s"] = time.perf_counter() - t0
    return entry


def _run_all(
    batches: _Batches,
    reqs: list[Any],
    runs: list[Any],
    entry: dict[str, Any],
    settings: SweepSettings,
    on_run: Any,
    print_fn: Any,
    log: TrialLog,
) -> None:
    """Every run; ``log`` gets each trial's machine load (a trial: one or more batches)."""
    import torch

    from .interference import Snapshot, TrialLoad

    before = None
    with torch.inference_mode():
        for i, (warm, trial, idx) in enumerate(runs):
            if settings.verbose:
                kind = "warm-up" if warm else f"trial {trial + 1}/{settings.trials}"
                print_fn(f"-- {entry['label']}: {kind}, {len(idx)} request(s)")
            if not warm and before is None:
                log.starts.append(time.time())
                before = Snapshot.take()
            batches.run([reqs[j] for j in idx], warm, trial)
            last = i + 1 == len(runs) or runs[i + 1][1] != trial
            if before is not None and last:
                log.loads.append(TrialLoad.between(before, Snapshot.take()))
                before = None
            if on_run is not None:
                on_run(i, warm)


def _record(entry: dict[str, Any], runs: list[Any], warmup: int, skipped: int) -> None:
    warm, measured = runs[:warmup], runs[warmup:]
    bad = [r for r in measured if not r.complete or not r.has_tokens]
    if bad:
        raise ConfigurationError(f"{len(bad)} of {len(measured)} runs produced no timed token")
    problem = short_runs(runs, [r.extra["workload"].get("forced_tokens", 0) for r in runs])
    if problem:
        raise ConfigurationError(problem)
    requests = [q for r in measured for q in r.extra["workload"]["requests"]]
    summary = workload_summary(requests, skipped)
    padded = [r.extra["workload"]["padded_input_tokens"] for r in measured]
    summary["padded_input_tokens"] = {"min": min(padded), "max": max(padded)}
    entry["actual_input_tokens"] = round(summary["input_tokens"]["mean"])
    entry["actual_output_tokens"] = round(summary["output_tokens"]["mean"])
    entry["aggregates"] = _aggregates(runs, warmup)
    entry["aggregates"]["workload"] = summary
    entry["warmup_runs"] = [r.to_dict(per_token=False) for r in warm]
    entry["trials"] = [r.to_dict() for r in measured]
    entry["status"] = "ok"
