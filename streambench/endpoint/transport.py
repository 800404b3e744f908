"""Request headers given on the command line (``--header``) and client TLS options.

Header values are secrets: they are sent, and masked in every output (results, argv, errors);
only the header names are written. No import of :mod:`.spec` here (the spec imports this module).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError

MAX_HEADERS = 64
#: headers the client sets itself (or HTTP framing): not to be given with --header
RESERVED_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "host", "connection", "content-type"}
)
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class TransportError(UsageError):
    """A bad ``--header``, ``--ca-bundle`` or ``--insecure`` (exit 2, one line, no value shown)."""


@dataclass(frozen=True)
class Transport:
    """Extra request ``headers`` (name, value) pairs, and TLS: ``insecure`` (no certificate
    check) or ``ca_bundle`` (a PEM file of trusted certificates)."""

    headers: tuple[tuple[str, str], ...] = ()
    insecure: bool = False
    ca_bundle: str | None = None

    def validate(self) -> Transport:
        if len(self.headers) > MAX_HEADERS:
            raise TransportError(f"--header: {len(self.headers)} given; at most {MAX_HEADERS}")
        for name, value in self.headers:
            _check_header(name, value)
        if self.insecure and self.ca_bundle:
            raise TransportError("--insecure and --ca-bundle exclude each other: give one")
        if self.ca_bundle is not None and not (
            os.path.isfile(self.ca_bundle) and os.access(self.ca_bundle, os.R_OK)
        ):
            raise TransportError(f"--ca-bundle {self.ca_bundle}: not a readable file")
        return self

    def secrets(self) -> tuple[str, ...]:
        """Every header value (masked wherever it could appear)."""
        return tuple(v for _, v in self.headers if v)

    def verify(self) -> Any:
        """httpx's ``verify``: ``False`` (insecure), an SSL context of the bundle, or ``True``."""
        if self.insecure:
            return False
        if self.ca_bundle:
            import ssl

            return ssl.create_default_context(cafile=self.ca_bundle)
        return True

    def to_dict(self) -> dict[str, Any]:
        """Names only: never a header value."""
        return {
            "header_names": [n for n, _ in self.headers],
            "insecure": self.insecure,
            "ca_bundle": self.ca_bundle,
        }


def _check_header(name: str, value: str) -> None:
    if not isinstance(name, str) or not _TOKEN.match(name):
        raise TransportError(f"--header {name!r}: not a valid header name")
    if name.lower() in RESERVED_HEADERS:
        raise TransportError(f"--header {name}: set by the client itself; not allowed")
    if not isinstance(value, str) or any(
        (ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value
    ):
        raise TransportError(f"--header {name}: the value holds control characters")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise TransportError(f"--header {name}: the value is not Latin-1 text") from None


def parse_header(text: str) -> tuple[str, str]:
    """``"Name: value"`` -> ``("Name", "value")``; the error names the header, never the value."""
    name, sep, value = str(text).partition(":")
    name = name.strip()
    if not sep or not name:
        shown = name if _TOKEN.match(name or "-") else "?"
        raise TransportError(f"--header {shown}: write 'Name: value'")
    value = value.strip()
    _check_header(name, value)
    return name, value


def header_values_in_argv(argv: list[str]) -> list[str]:
    """The values given to ``--header`` on a command line (to mask them in error lines)."""
    from .scrub import is_header_option  # (scrub imports nothing of the endpoint)

    found: list[str] = []
    for i, raw in enumerate(argv):
        text = None
        name, eq, after = raw.partition("=")
        if is_header_option(raw) and i + 1 < len(argv):
            text = argv[i + 1]
        elif eq and is_header_option(name):
            text = after
        if text is not None:
            value = text.partition(":")[2].strip()
            if value:
                found.append(value)
    return found
