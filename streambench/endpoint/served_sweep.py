"""The served sweep runner of ``streambench endpoint``: every configuration (one
:class:`EndpointSpec` per in-out pair x rate x concurrency, or a capacity search's rates) measured
against a served model through the one sweep driver (:mod:`streambench.runners.driver`).

:func:`run_sweep` checks the outputs, locks them, reads ``--resume``'s file and runs the driver;
:class:`EndpointSweep` is the driver's runner and speaker. Latencies are the client's clock
(``time.perf_counter()`` seconds from the moment a request is handed to the HTTP client), never
the server's: see :mod:`streambench.endpoint`.
"""

from __future__ import annotations

import sys
from typing import Any

from ..errors import Interrupted
from ..runners.driver import Planned
from ..runners.run_io import check_result_targets, load_resumed, opening_line
from ..terminal import inert, inert_markup
from . import loadcli
from .metrics import EndpointResult
from .quality import ServedQuality, quality_plan
from .records import RequestRecord
from .results import endpoint_table, environment, length_note, request_line, to_entry
from .runner import EndpointBenchmark
from .scrub import scrub_text
from .server_metrics import MetricsMemo
from .spec import EndpointError, EndpointSpec
from .sweeps import duration_text, finish_search, make_search, point_failed, sweep_settings
from .tokens import load_tokenizer


def run_sweep(args: Any, specs: list[EndpointSpec]) -> int:
    """Check the ``--output``/``--plot`` targets, hold them (a second writer is refused: exit 2)
    and run the sweep; the exit code of :func:`streambench.endpoint.cli.cmd_endpoint`."""
    from ..results.output_lock import holding_outputs

    outputs = checked_outputs(args, specs)
    with holding_outputs(outputs, args.plot):
        return _drive(args, specs, outputs)


def _drive(args: Any, specs: list[EndpointSpec], outputs: list[str]) -> int:
    """The endpoint sweep, its outputs checked and locked."""
    from .. import terminal
    from ..results.schema import new_document
    from ..runners.driver import Driver

    sweep = EndpointSweep(args, specs)
    doc = new_document("endpoint", environment(specs[0]), sweep.settings)
    resumed = resumed_configurations(args, outputs, sweep, doc["environment"])
    out = terminal.console(highlight=False)  # a server's text is shown, never obeyed
    err = terminal.console(stderr=True)
    driver = Driver(doc, outputs, sweep, out, err, args.plot, resumed=resumed)
    sweep.announce(out)
    code = driver.run(sweep)
    if sweep.search is None:
        return code
    return finish_search(sweep.search, driver, out, code)


def resumed_configurations(
    args: Any, outputs: list[str], sweep: EndpointSweep, env: dict[str, Any]
) -> dict[str, Any]:
    """``--resume``: the configurations of the first ``-o`` JSON/JSONL file, by id
    (:func:`streambench.runners.run_io.load_resumed`: written with the same settings, apart from the
    sweep's axes, from this machine with the same versions)."""
    if not getattr(args, "resume", False):
        return {}
    if sweep.search is not None:
        raise EndpointError(
            "--resume does not combine with --find-max-rate: each rate of a search depends on "
            "the points before it; run the search again"
        )
    return load_resumed(outputs, sweep.settings, env, "endpoint")


def checked_outputs(args: Any, specs: list[EndpointSpec]) -> list[str]:
    """The ``--output`` paths, after checking them and the ``--plot`` target (writable, a known
    format, none of the run's inputs: the tokenizer, the prompts file, the CA bundle) before
    anything is sent."""
    from ..results.outputs import RunInputs

    outputs = [str(o) for o in (args.output or [])]
    workload = specs[0].workload
    protected = RunInputs(
        [
            ("tokenizer", specs[0].tokenizer),
            ("prompts file", workload.prompts if workload is not None else None),
            ("trace file", getattr(args, "trace", None)),
            ("CA bundle", getattr(args, "ca_bundle", None)),
        ]
    )
    check_result_targets(outputs, str(args.plot) if args.plot else None, protected)
    return outputs


class EndpointSweep:
    """The :class:`streambench.runners.driver.Runner` of ``streambench endpoint``: one
    configuration per
    :class:`EndpointSpec`, measured by :class:`EndpointBenchmark`. It is also the driver's speaker:
    every message is scrubbed of secrets."""

    def __init__(self, args: Any, specs: list[EndpointSpec]) -> None:
        self.args = args
        self.specs = specs
        self.tokenizer = load_tokenizer(specs[0].tokenizer, specs[0].trust_remote_code)
        self.secrets = specs[0].secrets()
        settings = specs[0].to_dict()
        for key in ("prompt_tokens", "output_tokens"):
            settings.pop(key)
        if specs[0].trace is not None or (
            specs[0].workload is not None and specs[0].workload.uses_file
        ):
            settings["in_out"] = []
        else:
            settings["in_out"] = sorted({f"{s.prompt_tokens}-{s.output_tokens}" for s in specs})
        self.search = make_search(args, specs[0])
        settings.update(sweep_settings(args, specs, self.search))
        self.settings = settings
        self.usage_failures = 0
        self.tolerant = loadcli.is_load_sweep(args)  # failed requests are results
        self._failed: set[int] = set()  # id() of entries with failed requests
        self._length_noted = False
        self.metrics_memo = MetricsMemo()  # --server-metrics: a server without them said once
        plan = quality_plan(args, specs)  # --quality: bad input refused before any request
        self.quality = ServedQuality(plan, self.tokenizer) if plan is not None else None

    # -- speaker -------------------------------------------------------------------------------
    def error(self, message: str) -> None:
        print(f"streambench: error: {inert(scrub_text(message, self.secrets))}", file=sys.stderr)

    def note(self, message: str) -> None:
        print(f"streambench: {inert(scrub_text(message, self.secrets))}", file=sys.stderr)

    def kept_message(self, written: list[str], untouched: list[str], finished: int) -> str:
        if written:
            return f"finished requests kept in {', '.join(written)}"
        if untouched:
            return "before any request finished: nothing written"
        return "finished requests kept"

    # -- runner --------------------------------------------------------------------------------
    def announce(self, out: Any) -> None:
        """The first line: what is sent where, and about how long it takes (the worst-case
        bound with --verbose: :func:`~streambench.endpoint.sweeps.duration_text`)."""
        first = self.specs[0]
        if self.search is not None:
            st = self.search.settings
            load = (
                f"capacity search over {st.low:g}-{st.high:g} requests/s (at most "
                f"{st.max_points} points), concurrency {first.max_in_flight}"
            )
        else:
            rates = sorted({s.request_rate for s in self.specs if s.request_rate is not None})
            shown = [f"{r:g}" for r in rates]
            if self.args.request_rate is not None and len(rates) < len(
                {s.request_rate for s in self.specs}
            ):
                shown.append("inf")  # asked for: every request at once
            load = "concurrency " + ",".join(
                str(c) for c in dict.fromkeys(s.max_in_flight for s in self.specs)
            )
            load += f", {','.join(shown)} requests/s" if shown else ""
        when = duration_text(self.specs, self.search, bool(self.args.verbose))
        where = f"against {inert_markup(self.settings['endpoint'])}, {load}"
        if first.backend != "openai":  # the default is not named: its line stays as it was
            where = f"through --backend {inert_markup(first.backend)} {where}"
        where += f"; {when}" if when else ""
        line = opening_line(
            "endpoint", len(self.specs), first.warmup, self._measured_text(first), where, "x"
        )
        out.print(line, markup=True)

    def _measured_text(self, spec: EndpointSpec) -> str:
        """What each point measures: ``N requests``, or with ``--duration`` the time (and the
        ``--requests`` cap only when given)."""
        duration = spec.load.duration_s
        if spec.multi_turn is not None:
            return f"{spec.requests} sessions of up to {spec.multi_turn.max_turns} turns"
        if duration is None:
            return f"{spec.requests} requests"
        cap = f", at most {spec.requests} requests" if self.args.requests is not None else ""
        return f"requests for {duration:g} s{cap}"

    def plan(self) -> Any:
        """The configurations: a list, or (a capacity search) a lazy plan, one rate at a time."""
        from .capacity import search_plan
        from .results import configuration_id

        def planned(spec: EndpointSpec) -> Planned:
            steps = spec.requests
            if spec.multi_turn is not None:  # a step per turn: the sessions' turns in all
                conv = spec.multi_turn
                steps = sum(len(conv.items[i % len(conv.items)].turns) for i in range(steps))
            return Planned(*configuration_id(spec), spec.warmup + steps, spec)

        if self.search is not None:
            return search_plan(self.search, planned)
        return [planned(spec) for spec in self.specs]

    def measure(self, planned: Planned, advance: Any, keep: Any) -> Any:
        """Run one configuration; an interrupted one is kept (when a measured request finished)
        and the interruption raised again."""
        import signal

        def on_request(rec: RequestRecord) -> None:
            # Runs inside the event loop while other requests stream: keep it cheap.
            if rec.index >= 0:
                advance(1)

        bench = EndpointBenchmark(
            planned.item,
            on_request=on_request,
            tokenizer=self.tokenizer,
            metrics_memo=self.metrics_memo,
        )
        try:
            result = bench.run()
        except KeyboardInterrupt as exc:  # a signal outside the event loop's own handling
            bench.interrupted = True
            bench.interrupt_signal = getattr(exc, "signum", int(signal.SIGINT))
            result = bench.result()
        entry = self._entry(result)
        if entry is not None and self.quality is not None and not result.interrupted:
            try:  # after the timed requests, never inside them
                entry["quality"] = self.quality.of_point(result)
            except KeyboardInterrupt as exc:  # the point's timed requests stand: keep them
                keep(entry)
                raise Interrupted(getattr(exc, "signum", int(signal.SIGINT))) from None
        if self.search is not None and not result.interrupted:
            self.search.record(planned.id, result)
        if result.interrupted:
            if entry is not None:
                keep(entry)
            raise Interrupted(result.interrupt_signal or int(signal.SIGINT))
        return entry

    def _entry(self, result: EndpointResult) -> Any:
        if result.interrupted and not any(not r.warmup for r in result.records):
            return None  # nothing measured: nothing to keep
        entry = to_entry(result)
        note = None if self._length_noted else length_note(entry, result.spec)
        if note:  # once per run: every point has the same cause and fix
            self._length_noted = True
            self.note(note)
        if point_failed(result, self.tolerant):
            self._failed.add(id(entry))
        if self.args.verbose:
            for rec in result.records:
                print(inert(request_line(rec)))
        return entry

    def failed(self, entry: Any) -> bool:
        return id(entry) in self._failed

    def table(self, entry: Any) -> Any:
        return endpoint_table(entry)
