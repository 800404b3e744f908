"""The contract of a *served backend*: how ``streambench endpoint`` talks to one kind of server.

A served backend is not a local engine: streambench does not run the model, it sends requests
and reads the streamed replies, so every time it records is the client's clock
(``time.perf_counter()`` seconds since the request was handed to the HTTP client), never the
server's. A backend says four things (:class:`ServedBackend`):

- its ``name`` (the ``--backend`` value) and the ``protocol`` it speaks (one line, for people);
- the request it builds: :meth:`~ServedBackend.request_url`, :meth:`~ServedBackend.headers`,
  :meth:`~ServedBackend.body`;
- how it turns a streamed response into timed events: :meth:`~ServedBackend.send` streams one
  request and returns a :class:`~streambench.endpoint.records.RequestRecord` whose
  ``chunk_times_s`` are the arrival times of the text chunks and ``chunk_tokens`` their token
  counts (TTFT, TPOT, ITL and E2E are derived from them the same way for every backend);
- what it records: :attr:`~ServedBackend.records` (the record fields it fills) and
  :meth:`~ServedBackend.settings` (what the results document says about it).

Built-in: ``openai`` (:mod:`.openai`). Others register through the entry-point group
``streambench.backends`` (:mod:`streambench.endpoint.backends`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import httpx


#: an :class:`~streambench.endpoint.spec.EndpointSpec` and a
#: :class:`~streambench.endpoint.records.RequestRecord` (not imported: the spec names its backend,
#: so importing them here, even for type checking only, would close an import circle)
Spec = Any
Record = Any


class ServedBackend(ABC):
    """One protocol of served models. Subclasses set :attr:`name` and :attr:`protocol` and
    implement the request and the stream; an instance is shared by every request of a run (and
    built again in each ``--workers`` process), so it holds no per-request state."""

    #: the ``--backend`` value (lower case, no spaces)
    name: ClassVar[str] = ""
    #: what it speaks, one line for people (e.g. "OpenAI-compatible HTTP + server-sent events")
    protocol: ClassVar[str] = ""
    #: whose clock the latencies are: always the client's for a served backend
    clock: ClassVar[str] = "client"
    #: the :class:`~streambench.endpoint.records.RequestRecord` fields :meth:`send` fills
    records: ClassVar[tuple[str, ...]] = (
        "ok",
        "error",
        "status",
        "ttft_s",
        "e2e_s",
        "chunk_times_s",
        "chunk_tokens",
        "output_tokens",
        "prompt_tokens",
        "token_count",
        "finish_reason",
    )

    @abstractmethod
    def request_url(self, spec: Spec) -> str:
        """The URL every request of ``spec`` goes to (an ``EndpointError`` for a bad one)."""

    @abstractmethod
    def headers(self, spec: Spec) -> dict[str, str]:
        """The request headers (with the key, when one is set; ``--header`` values last)."""

    @abstractmethod
    def body(
        self,
        spec: Spec,
        prompt: str | None,
        max_tokens: int,
        level: int,
        messages: list[dict[str, str]] | None = None,
        natural: bool = False,
    ) -> dict[str, Any]:
        """The JSON body of one request asking for ``max_tokens`` output tokens. ``level``: how
        many optional fields the server refused (0 everything; 1 without the fields that force
        the output length; 2 also without stream options), found by 1-token probes with
        ``--force-output auto``; ``messages``: a workload's chat messages; ``natural``: the
        output length is the model's own (never forced)."""

    @abstractmethod
    async def send(
        self,
        client: httpx.AsyncClient,
        url: str,
        body: dict[str, Any],
        headers: dict[str, str],
        timeout_s: float,
        index: int,
        phase_start: float,
        warmup: bool,
        prompt_tokens_local: int | None,
        secrets: Sequence[str],
    ) -> Record:
        """Stream one request and return its record, always (a failure is ``ok=False`` with its
        ``error``; only cancellation propagates). Every time is seconds since the request was
        handed to ``client`` (``sent_s`` since ``phase_start``, a ``perf_counter`` time); the
        whole request is bounded by ``timeout_s``; no ``secrets`` reach the record."""

    def settings(self) -> dict[str, Any]:
        """What the results document records about the backend (``settings.backend`` when it is
        not the default ``openai``: files written before backends existed still resume)."""
        return {"name": self.name, "protocol": self.protocol, "clock": self.clock}
