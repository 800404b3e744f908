"""``BenchmarkWrapper``: a drop-in replacement for ipex-llm's wrapper of the same name.

Change one import line and keep the rest of a script::

    from streambench import BenchmarkWrapper  # was: from ipex_llm.utils import BenchmarkWrapper

    model = BenchmarkWrapper(model, do_print=True)
    output = model.generate(input_ids, do_sample=False, max_new_tokens=32)
    print(model.first_cost, model.rest_cost_mean)   # seconds, of *this* generate() call

Unlike the original (seven pasted copies of ``generate()``, one per transformers range), it calls
the model's **own** ``generate()`` — so ipex-llm's, DeepSpeed's or any custom ``generate`` keeps
working — and times it from outside:

* greedy search, sampling, contrastive search (transformers < 4.56), assisted / speculative /
  prompt-lookup decoding: a :class:`~streambench.TimingStreamer` is passed as ``streamer=``
  (a streamer the caller passes still receives every token, through the timing streamer).
* beam search (``num_beams > 1``), which transformers refuses to stream: a
  :class:`StepTimer` logits processor is appended to ``logits_processor=``; ``generate()`` calls
  it once per decoding step, right after the step's forward pass. It feeds the same timing core
  through ``TimingStreamer.on_prompt()`` / ``on_step()`` / ``end()``. A ``streamer=`` passed
  with beam search is refused with a ``ValueError`` before anything runs, as transformers
  refuses it (for beam sampling, transformers >= 4.57 would silently give it the prompt only):
  the beams' tokens are final only when the search ends, so there is nothing to stream.

Exactly one of the two is used per call (``wrapper.timed_by`` says which), so no step is counted
twice. One wrapper times one ``generate()`` at a time: a call made while another thread's call
on the same wrapper is still running raises :class:`~streambench.timing.InterleavedRunsError`
(use one wrapper per thread, or serialize the calls).

What the attributes mean (all refer to the latest ``generate()`` call, ``None`` where unknown — a
call that produced no token, or raised, never leaves a previous call's numbers behind):

* ``first_cost`` (s): time to the first generated token. Decoder-only models: from the
  ``generate()`` call to the first token (prefill). Encoder-decoder models: from the end of the
  encoder (the prompt hand-over) to the first token, so that, as in the original,
  ``encoder_time + first_cost`` is the time to first token.
* ``rest_cost_mean`` (s/token): mean latency of every token after the first.
* ``encoder_time`` (s): encoder-decoder models only: from the ``generate()`` call to the prompt
  hand-over (input preparation + the encoder, after a device sync). ``None`` for decoder-only.
* ``peak_memory`` (GiB): the largest per-token memory reading of the call (CUDA/XPU: peak bytes
  allocated by torch; MPS: allocated; CPU: resident set size of the process).
"""

from __future__ import annotations

import dataclasses
import threading
import warnings
from typing import Any

from transformers.generation.logits_process import LogitsProcessor, LogitsProcessorList

from .devices import DeviceNotAvailableError
from .ranks import should_print
from .stats import RunsSummary, aggregate
from .streamer import TimingStreamer
from .timing import InterleavedRunsError, RunResult, exception_text
from .units import GiB

__all__ = ["BenchmarkWrapper", "StepTimer"]

# generate()'s leading positional parameters, identical from transformers 4.37 to 5.x.
_GENERATE_POSITIONAL = (
    "inputs",
    "generation_config",
    "logits_processor",
    "stopping_criteria",
    "prefix_allowed_tokens_fn",
    "synced_gpus",
    "assistant_model",
    "streamer",
)

# Guards the check-and-set of BenchmarkWrapper._busy (the thread inside generate(), if any).
_BUSY_GUARD = threading.Lock()

# Methods whose result is the model itself: return the wrapper instead, so that
# ``model = model.to("xpu")`` keeps the wrapper (ipex-llm users did this after wrapping).
_RETURN_SELF = frozenset(
    {"to", "cuda", "cpu", "xpu", "half", "float", "bfloat16", "double", "eval", "train",
     "requires_grad_", "to_empty", "apply"}
)  # fmt: skip

_OWN = frozenset(
    {
        "model", "do_print", "verbose", "print_fn", "first_cost", "rest_cost_mean",
        "encoder_time", "peak_memory", "last_result", "timed_by", "_device", "_memory",
        "_streamer", "_old_runs", "_busy",
    }
)  # fmt: skip


class StepTimer(LogitsProcessor):
    """A logits processor that records one decoding step per call into a :class:`TimingStreamer`.

    ``generate()`` calls every logits processor once per step, right after the step's forward
    pass and before the next token is chosen — in every decoding mode, beam search included
    (transformers 4.37 to 5.x). The scores are returned unchanged.

    Args:
        streamer: the timing core to feed (``on_prompt`` must have been called, or
            ``encoder_hook`` armed, before the first step).
        num_beams: beams per input sequence; the batch size reported is rows / ``num_beams``.
        is_encoder_decoder: the prompt length reported is then the decoder's (as a streamer
            would see it), else the length of ``input_ids`` at the first step.
    """

    def __init__(
        self, streamer: TimingStreamer, num_beams: int = 1, is_encoder_decoder: bool = False
    ) -> None:
        self.streamer = streamer
        self.num_beams = max(int(num_beams), 1)
        self.is_encoder_decoder = is_encoder_decoder
        self.steps = 0
        self.fell_back = False

    def prompt_once(self, batch_size: int = 0, prompt_tokens: int = 0) -> None:
        """Record the prompt hand-over (once per call; later calls are ignored)."""
        run = self.streamer._run
        if run is None or run.awaiting_prompt:
            self.streamer.on_prompt(batch_size, prompt_tokens)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        streamer = self.streamer
        run = streamer._run
        if run is None or run.awaiting_prompt:  # the encoder hook never fired
            self.fell_back = True
            streamer.on_prompt(0, 0)
            run = streamer._run
        if self.steps == 0 and run is not None:
            run.batch_size = max(int(input_ids.shape[0]) // self.num_beams, 1)
            if not self.is_encoder_decoder or not run.prompt_tokens:
                run.prompt_tokens = int(input_ids.shape[-1])
        self.steps += 1
        streamer.on_step(1)
        return scores


def _model_device(model: Any) -> Any:
    """The device a model's weights are on: ``model.device``, else its first parameter's, else
    the same for ``model.module`` (DeepSpeed engines, DDP). ``None`` when nothing tells."""
    seen = 0
    while model is not None and seen < 4:
        seen += 1
        try:
            dev = getattr(model, "device", None)
        except Exception:  # noqa: BLE001 - a property may raise on exotic models
            dev = None
        if dev is not None and not callable(dev):
            return dev
        params = getattr(model, "parameters", None)
        if callable(params):
            try:
                return next(iter(params())).device
            except (StopIteration, TypeError, AttributeError):
                pass
        model = getattr(model, "module", None)
    return None


def _reason(exc: BaseException) -> str:
    """An exception's message, or its type (and what it means) when the message is empty or
    only repeats the type: never an empty ``...: `` in our own messages."""
    text = str(exc).strip()
    return text if text and text != type(exc).__name__ else exception_text(exc)


def _num_beams(model: Any, kwargs: dict[str, Any]) -> int:
    if kwargs.get("num_beams") is not None:
        return int(kwargs["num_beams"])
    for cfg in (kwargs.get("generation_config"), getattr(model, "generation_config", None)):
        beams = getattr(cfg, "num_beams", None)
        if beams is not None:
            return int(beams)
    return 1


def _prompt_shape(kwargs: dict[str, Any]) -> tuple[int, int]:
    """(batch, prompt length) from the inputs handed to generate(), best effort."""
    for key in ("inputs", "input_ids", "inputs_embeds"):
        value = kwargs.get(key)
        shape = getattr(value, "shape", None)
        if shape is not None and len(shape) >= 1:
            if key == "inputs_embeds" or len(shape) >= 2:
                return int(shape[0]), int(shape[1]) if len(shape) > 1 else 1
            return 1, int(shape[0])
    return 1, 0


class BenchmarkWrapper:
    """Wrap a model so that each ``generate()`` call is timed; drop-in for ipex-llm's wrapper.

    Args:
        model: anything with a ``generate()`` method: a ``transformers`` model, an ipex-llm
            low-bit model, a DeepSpeed inference engine, a custom class.
        do_print: after each ``generate()``, print the original's lines
            (``=========First token cost 0.0213 s=========`` etc.; for encoder-decoder models
            the ``=====================encoder cost ... s=======================`` line first).
        verbose: also print every token's latency and memory (on every device).
        device: the device to time (sync and memory); default: the model's own device, read at
            each call. Pass it when the model does not tell (``model.device`` missing).
        memory: read memory at every token (``peak_memory``); ``False`` skips the probe.
        print_fn: where printed lines go (default ``print``).

    After each ``generate()``: ``first_cost``, ``rest_cost_mean``, ``encoder_time`` (seconds),
    ``peak_memory`` (GiB) describe that call (``None`` where unknown; see the module docstring for
    the reference points), ``last_result`` is its full :class:`~streambench.RunResult`,
    ``timed_by`` is ``"streamer"`` or ``"logits_processor"``. ``runs`` and ``stats(warmup)`` cover
    every call so far; ``streamer`` is the :class:`~streambench.TimingStreamer` in use.

    Any other attribute, and calling the wrapper, goes to the wrapped model (``model.config``,
    ``model.device``, ``model(**inputs)``); ``.to()``, ``.cuda()``, ``.eval()`` … return the
    wrapper.

    Raises:
        TypeError: ``model`` has no ``generate()`` method.
        ValueError / DeviceNotAvailableError: the model's device cannot be timed (e.g. ``meta``),
            raised when wrapping and at each ``generate()`` call, before generation starts.
    """

    def __init__(
        self,
        model: Any,
        do_print: bool = False,
        verbose: bool = False,
        *,
        device: Any = None,
        memory: bool = True,
        print_fn: Any = print,
    ) -> None:
        if not callable(getattr(model, "generate", None)):
            raise TypeError(
                f"BenchmarkWrapper needs a model with a generate() method (a transformers, "
                f"ipex-llm or DeepSpeed model); got {type(model).__name__}, which has none"
            )
        d = self.__dict__
        d["model"] = model
        d["do_print"] = do_print
        d["verbose"] = verbose
        d["print_fn"] = print_fn
        d["_device"] = device
        d["_memory"] = memory
        d["_streamer"] = None
        d["_old_runs"] = []
        d["_busy"] = None
        self._clear()
        self._streamer_for_call()  # validate the device now: fail at wrap time, not mid-script

    # -- results -------------------------------------------------------------------------------
    @property
    def streamer(self) -> TimingStreamer:
        """The timing core in use (one per device the model has been on)."""
        return self._streamer

    @property
    def runs(self) -> list[RunResult]:
        """Every timed ``generate()`` call so far, oldest first (calls that raised included, with
        ``complete=False``)."""
        return [*self._old_runs, *self._streamer.runs]

    def stats(self, warmup: int = 0) -> RunsSummary:
        """Statistics over :attr:`runs` after skipping the first ``warmup`` calls."""
        return aggregate(self.runs, warmup=warmup)

    def reset(self) -> None:
        """Forget every recorded run and clear the per-call attributes."""
        self._old_runs.clear()
        self._streamer.reset()
        self._clear()

    # -- the timed call ------------------------------------------------------------------------
    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """Call the wrapped model's ``generate(*args, **kwargs)`` and time it; returns its
        output unchanged. See the class docstring for what is set afterwards.

        Raises:
            ValueError: ``streamer=`` together with beam search (``num_beams > 1``), which
                transformers cannot stream; drop ``streamer=`` and decode the returned ids.
            InterleavedRunsError: another thread's ``generate()`` on this wrapper is still
                running (one wrapper per thread, or serialize the calls).
        """
        me = threading.get_ident()
        with _BUSY_GUARD:
            outer = self._busy
            if outer is not None and outer != me:
                names = {th.ident: th.name for th in threading.enumerate()}
                raise InterleavedRunsError(
                    f"BenchmarkWrapper.generate() called from thread {names.get(me, me)!r} while "
                    f"thread {names.get(outer, outer)!r} is still inside generate() on the same "
                    "wrapper: concurrent calls would be timed as one run. Use one BenchmarkWrapper "
                    "(and TimingStreamer) per concurrent generate() call, or run the calls one "
                    "after another (e.g. under a lock)"
                )
            self.__dict__["_busy"] = me
        try:
            return self._generate(args, kwargs)
        finally:
            self.__dict__["_busy"] = outer

    def _generate(self, args: tuple, kwargs: dict) -> Any:
        self._clear()
        if len(args) > len(_GENERATE_POSITIONAL):
            raise TypeError(
                f"BenchmarkWrapper.generate() takes at most {len(_GENERATE_POSITIONAL)} positional "
                f"arguments ({', '.join(_GENERATE_POSITIONAL)}); pass the others by keyword"
            )
        if len(args) > 1:  # move positional generate() arguments to keywords, to inject ours
            for name, value in zip(_GENERATE_POSITIONAL[1:], args[1:]):
                if name in kwargs:
                    raise TypeError(f"generate() got multiple values for argument {name!r}")
                kwargs[name] = value
            args = args[:1]
        self._refuse_untimeable(kwargs)
        streamer = self._streamer_for_call()
        beams = _num_beams(self.model, kwargs)
        if beams > 1:
            if kwargs.get("streamer") is not None:
                raise ValueError(
                    f"BenchmarkWrapper: streamer= cannot be used with beam search (num_beams="
                    f"{beams}): transformers does not stream beam search (the beams' tokens are "
                    "final only when the search ends; it raises, or for beam sampling silently "
                    "gives the streamer the prompt only). The call is timed without a streamer: "
                    "drop streamer= and decode the returned ids, or set num_beams=1 to stream"
                )
            kwargs.pop("streamer", None)
            return self._generate_with_processor(streamer, args, kwargs)
        return self._generate_with_streamer(streamer, args, kwargs)

    def _generate_with_streamer(self, ts: TimingStreamer, args: tuple, kwargs: dict) -> Any:
        caller = kwargs.pop("streamer", None)
        ts.inner = None if caller is ts else caller
        ts.mark_start()  # also closes a run a previous, failed call left open
        before = len(ts._runs)
        try:
            output = self.model.generate(*args, streamer=ts, **kwargs)
        except BaseException:
            ts.inner = None
            self._record(ts, before, failed=True)
            raise
        ts.inner = None
        if ts._run is not None and not ts._run.awaiting_prompt:
            # generate() returned without end(): the streamer was dropped on the way (hub code).
            ts.end()
        self._record(ts, before, timed_by="streamer", kwargs=kwargs)
        return output

    def _generate_with_processor(self, ts: TimingStreamer, args: tuple, kwargs: dict) -> Any:
        is_enc_dec = self._is_encoder_decoder()
        beams = _num_beams(self.model, kwargs)
        timer = StepTimer(ts, beams, is_enc_dec)
        user = kwargs.get("logits_processor")
        kwargs["logits_processor"] = LogitsProcessorList([*(user or []), timer])
        call = dict(kwargs)
        if args:
            call["inputs"] = args[0]
        batch, prompt_len = _prompt_shape(call)
        hook = None
        encoder = None
        if is_enc_dec and kwargs.get("encoder_outputs") is None:
            get_encoder = getattr(self.model, "get_encoder", None)
            encoder = get_encoder() if callable(get_encoder) else None
        ts.inner = None
        ts.mark_start()  # also closes a run a previous, failed call left open
        before = len(ts._runs)
        if encoder is not None and hasattr(encoder, "register_forward_hook"):
            # The prompt hand-over of an encoder-decoder model is the end of the encoder.
            hook = encoder.register_forward_hook(lambda *_: timer.prompt_once(batch, 1))
        else:
            ts.on_prompt(batch, 1 if is_enc_dec else prompt_len)
        try:
            output = self.model.generate(*args, **kwargs)
        except BaseException:
            self._record(ts, before, failed=True)
            raise
        finally:
            if hook is not None:
                hook.remove()
        if ts._run is not None:
            ts.end()
        self._record(
            ts, before, timed_by="logits_processor", kwargs=kwargs, no_encoder=timer.fell_back
        )
        return output

    # -- helpers -------------------------------------------------------------------------------
    def _clear(self) -> None:
        d = self.__dict__
        d["first_cost"] = None
        d["rest_cost_mean"] = None
        d["encoder_time"] = None
        d["peak_memory"] = None
        d["last_result"] = None
        d["timed_by"] = None

    def _is_encoder_decoder(self) -> bool:
        config = getattr(self.model, "config", None)
        return bool(getattr(config, "is_encoder_decoder", False))

    def _streamer_for_call(self) -> TimingStreamer:
        device = self._device if self._device is not None else _model_device(self.model)
        if device is None:
            raise ValueError(
                f"BenchmarkWrapper cannot tell which device {type(self.model).__name__} runs on "
                "(no .device and no parameters): pass it, e.g. BenchmarkWrapper(model, "
                "device='cuda')"
            )
        current = self._streamer
        if current is not None and current.device == str(device):
            return current
        try:
            streamer = TimingStreamer(device=device, memory=self._memory)
        except DeviceNotAvailableError as exc:
            raise DeviceNotAvailableError(
                f"BenchmarkWrapper: the model is on {device}, which this machine cannot time: "
                f"{_reason(exc)}"
            ) from None
        except ValueError as exc:
            raise ValueError(
                f"BenchmarkWrapper: the model is on device {str(device)!r}, which streambench "
                f"cannot time ({_reason(exc)}). Move the model to a cpu, cuda, xpu or mps "
                "device first (model.to('cpu')), or pass BenchmarkWrapper(model, device='cpu') "
                "to time it against another device's clock and memory"
            ) from None
        if current is not None:
            if current.device == streamer.device:
                return current
            self._old_runs.extend(current.runs)
        self.__dict__["_streamer"] = streamer
        return streamer

    @staticmethod
    def _refuse_untimeable(kwargs: dict[str, Any]) -> None:
        gen_cfg = kwargs.get("generation_config")
        cache = kwargs.get("cache_implementation") or getattr(gen_cfg, "cache_implementation", None)
        if cache == "paged":
            raise NotImplementedError(
                "BenchmarkWrapper cannot time continuous batching (cache_implementation='paged'): "
                "transformers switches to generate_batch(), which refuses streamers and logits "
                "processors, so no token can be timed. Drop cache_implementation='paged' to time "
                "the regular generate(), or time model.generate_batch() as a whole yourself"
            )

    def _record(
        self,
        ts: TimingStreamer,
        before: int,
        *,
        failed: bool = False,
        timed_by: str | None = None,
        kwargs: dict | None = None,
        no_encoder: bool = False,
    ) -> None:
        """Set the per-call attributes from the run this call made (all at once)."""
        if failed:
            return  # attributes stay None; the incomplete run is kept in .runs
        new = ts.runs[before:]
        result = new[-1] if new else None
        d = self.__dict__
        d["timed_by"] = timed_by
        d["last_result"] = result
        if result is None or not result.has_tokens:
            self._warn_no_tokens(result, kwargs or {})
            if self.do_print and should_print():  # under torch.distributed: the print ranks
                self.print_fn("=========No token generated: no first token cost=========")
            return
        encoder = None
        first = result.first_token_s
        if self._is_encoder_decoder() and not no_encoder and result.pre_prompt_s is not None:
            encoder = result.pre_prompt_s
            first = max(first - encoder, 0.0) if first is not None else None
        peak = result.peak_memory_bytes
        d["first_cost"] = first
        d["rest_cost_mean"] = result.rest_token_mean_s
        d["encoder_time"] = encoder
        d["peak_memory"] = peak / GiB if peak is not None else None
        if (self.do_print or self.verbose) and should_print():  # rank 0 only when distributed
            self._print(result, first, encoder)

    def _warn_no_tokens(self, result: RunResult | None, kwargs: dict) -> None:
        if kwargs.get("max_new_tokens") == 0:
            return
        where = "the timing streamer" if result is None else "the timing streamer after the prompt"
        warnings.warn(
            f"BenchmarkWrapper: no generated token reached {where}, so first_cost and "
            "rest_cost_mean are None for this call. This generate() bypassed the streamer: "
            "transformers 4.56 runs contrastive search and DoLa as hub code that drops it, and a "
            "custom generate() may ignore streamer=. Time greedy search, sampling, beam search "
            "or assisted decoding, or use transformers < 4.56 for contrastive search",
            RuntimeWarning,
            stacklevel=5,  # the caller of BenchmarkWrapper.generate()
        )

    def _print(self, result: RunResult, first: float | None, encoder: float | None) -> None:
        out = self.print_fn
        if encoder is not None:
            out(f"=====================encoder cost {encoder} s=======================")
        shown = dataclasses.replace(result, first_token_s=first) if encoder is not None else result
        for line in shown.seed_lines():
            out(line)
        if self.verbose:
            mem = result.memory_per_token_bytes
            if mem:
                shown_mem = [None if m is None else round(m / GiB, 4) for m in mem]
                out(f"Peak memory for every token: {shown_mem}")
            for line in result.token_lines():
                out(line)

    # -- forwarding to the wrapped model -------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        model = self.__dict__.get("model")
        if model is None or name.startswith("__"):
            raise AttributeError(name)
        value = getattr(model, name)
        if name in _RETURN_SELF and callable(value):
            return _ReturnsWrapper(self, value)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OWN or "model" not in self.__dict__:
            self.__dict__[name] = value
        else:
            setattr(self.model, name, value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(dir(self.model)))

    def __repr__(self) -> str:
        return f"BenchmarkWrapper({self.model!r})"


class _ReturnsWrapper:
    """A bound method of the model that returns the wrapper where the model returned itself."""

    __slots__ = ("method", "wrapper")

    def __init__(self, wrapper: BenchmarkWrapper, method: Any) -> None:
        self.wrapper = wrapper
        self.method = method

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = self.method(*args, **kwargs)
        return self.wrapper if result is self.wrapper.model else result
