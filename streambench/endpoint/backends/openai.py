"""The built-in served backend: OpenAI-compatible servers (vLLM, SGLang, TGI, llama.cpp,
transformers serve ...) streaming ``/completions`` or ``/chat/completions`` as server-sent events
(:mod:`streambench.endpoint.client`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .base import ServedBackend

if TYPE_CHECKING:
    import httpx

    from ..records import RequestRecord
    from ..spec import EndpointSpec


class OpenAIBackend(ServedBackend):
    """``--backend openai`` (the default): ``POST`` a JSON body with ``"stream": true`` to the
    base URL's ``/completions`` (``/chat/completions`` with ``--chat``) and read the SSE stream;
    tokens per chunk from the ``usage`` the server reports, else the tokenizer, else one per
    chunk (:func:`streambench.endpoint.tokens.count_chunk_tokens`)."""

    name = "openai"
    protocol = "OpenAI-compatible HTTP, /completions or /chat/completions, server-sent events"

    def request_url(self, spec: EndpointSpec) -> str:
        from ..spec import request_url

        return request_url(spec.url, spec.chat)

    def headers(self, spec: EndpointSpec) -> dict[str, str]:
        headers = {
            "Accept": "text/event-stream",
            "Accept-Encoding": "identity",  # compressed replies are refused: bounded reads
            "Cache-Control": "no-store",
        }
        key = spec._resolved_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        headers.update(spec.transport.headers)  # --header may replace the ones above
        return headers

    def body(
        self,
        spec: EndpointSpec,
        prompt: str | None,
        max_tokens: int,
        level: int,
        messages: list[dict[str, str]] | None = None,
        natural: bool = False,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": spec.model, "stream": True, "max_tokens": max_tokens}
        if spec.chat:
            body["messages"] = messages or [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        if spec.temperature is not None:
            body["temperature"] = spec.temperature
        force = not natural and (spec.force == "on" or (spec.force == "auto" and level == 0))
        if force:
            body["ignore_eos"] = True
            body["min_tokens"] = max_tokens
        if spec.force == "on" or level < 2:
            opts: dict[str, Any] = {"include_usage": True}
            # exact tokens per chunk, and tokens without text timed (vLLM, SGLang): asked with
            # the forcing fields, or with natural lengths before a 1-token probe was refused
            if force or (spec.force != "off" and level == 0):
                opts["continuous_usage_stats"] = True
            body["stream_options"] = opts
        body.update(spec.extra_body)
        return body

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
    ) -> RequestRecord:
        from ..client import send_request

        return await send_request(
            client,
            url,
            body,
            headers,
            timeout_s,
            index,
            phase_start,
            warmup,
            prompt_tokens_local,
            secrets,
        )
