"""Secrets never reach an output: masking API keys, URL passwords and credential-named values.

Everything here is pure text processing (no I/O): :func:`scrub_text` for free text (error lines,
server replies), :func:`scrub_json` for decoded JSON (``--extra-body``), :func:`public_url` for a
URL shown or stored, :func:`scrub_argv` for a command line kept in a results file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

#: credential-like names: query parameters, ``key: value`` / ``"key": "value"`` pairs in text,
#: JSON fields of --extra-body, options on the command line
_CRED_CORE = (
    r"api[-_]?key|apikey|access[-_]?token|refresh[-_]?token|auth[-_]?token|id[-_]?token|"
    r"bearer[-_]?token|client[-_]?secret|secret[-_]?key|private[-_]?key|token|secret|password|"
    r"passwd|pwd|authorization|credentials?"
)
_CRED_WORDS = r"(?:x[-_])?(?:" + _CRED_CORE + ")"
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/?#@\[\]]*@")
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9\-._~+/=:]+")
# a query parameter whose name ends in a credential word (?api_key=, &subscription-key=, ?sig=)
_QUERY_CRED = re.compile(
    r"(?i)([?&;][^=&#\s]*?(?:" + _CRED_CORE + r"|key|sig|signature|auth|code|session|sessionid)=)"
    r"[^&#\s\"']*"
)
# password: value / "api_key": "value" / token=value (a quoted value up to its closing quote)
_KV_CRED = re.compile(
    r"(?i)([\"']?\b" + _CRED_WORDS + r"\b[\"']?\s*[:=]\s*)"
    r"((?:bearer|basic)\s+[^\s\"',;&}\]]+|\"[^\"]*\"?|'[^']*'?|[^\s\"',;&}\]]+)"
)


def scrub_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every secret replaced by ``***``: the given ``secrets`` (4 characters or
    longer; also percent-decoded), the ``user:password@`` of any URL, credential-named
    query-string values (``?api_key=``, ``&token=``, ``?sig=``...), ``Bearer``/``Basic`` tokens
    and ``password: value``-like pairs.

    >>> scrub_text("see http://bob:hunter2@h/v1?api_key=abc&x=1, Authorization: Bearer sk-1")
    'see http://***@h/v1?api_key=***&x=1, Authorization: ***'
    """
    text = str(text)
    known = {s for s in secrets if s and len(s) >= 4}
    known |= {unquote(s) for s in known}
    for secret in sorted(known, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _USERINFO.sub(r"\1***@", text)
    text = _AUTH_SCHEME.sub(r"\1\2***", text)
    text = _QUERY_CRED.sub(r"\1***", text)
    return _KV_CRED.sub(_mask_value, text)


def _mask_value(m: re.Match[str]) -> str:
    value = m.group(2)
    quote = value[0] if value[:1] in ("'", '"') else ""
    return m.group(1) + (quote + "***" + quote if quote else "***")


def _is_secret_name(name: str) -> bool:
    """A JSON field or option name that holds a credential (``api_key``, ``X-Api-Key``,
    ``password``...); ``*-env`` names (an environment variable's *name*) and ``*tokens`` (counts)
    are not."""
    name = name.strip().lower()
    if name.endswith(("-env", "_env")):
        return False
    words = _CRED_WORDS + "|key"
    return re.fullmatch(r"(?:[a-z0-9]+[-_])*(?:" + words + r")(?:[-_][a-z0-9]+)*", name) is not None


def scrub_json(obj: Any, secrets: Iterable[str | None] = ()) -> Any:
    """``obj`` (decoded JSON) with credential-named fields' values and secrets in strings masked."""
    secrets = tuple(secrets)
    if isinstance(obj, dict):
        return {
            k: "***" if _is_secret_name(str(k)) else scrub_json(v, secrets) for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [scrub_json(v, secrets) for v in obj]
    if isinstance(obj, str):
        return scrub_text(obj, secrets)
    return obj


def public_url(url: str) -> str:
    """``url`` without user:password and with every query value replaced by ``***`` (the
    fragment dropped): safe to print and to store."""
    try:
        parts = urlsplit(str(url).strip())
        host = parts.netloc.rsplit("@", 1)[-1]
        query = "&".join(
            (p.split("=", 1)[0] + "=***") if "=" in p else p
            for p in re.split(r"[&;]", parts.query)
            if p
        )
        out = urlunsplit((parts.scheme, host, parts.path, query, ""))
    except ValueError:
        out = str(url)
    return scrub_text(out)


def scrub_argv(argv: Sequence[str], secrets: Iterable[str | None] = ()) -> list[str]:
    """``argv`` without secrets (results never hold them): the value of every credential-named
    option (``--api-key X``, ``--api-key=X``, ``--token X``...; not ``--api-key-env``, whose value
    is a variable's name) becomes ``***``, and every argument goes through :func:`scrub_text`
    (URL user info, query-string credentials, ``secrets`` wherever they appear).

    >>> scrub_argv(["endpoint", "http://u:pw@h/v1", "--api-key", "sk-1", "--api-key-env", "K"])
    ['endpoint', 'http://***@h/v1', '--api-key', '***', '--api-key-env', 'K']

    ``--header 'Name: value'`` (also ``--header=...`` and argparse's abbreviations, ``--head``)
    keeps the header's name only: ``--header 'Name: ***'``.
    """
    secrets = tuple(secrets)
    out: list[str] = []
    hide = header = False
    for raw in argv:
        arg = str(raw)
        if hide or header:
            out.append(_mask_header(arg) if header else "***")
            hide = header = False
            continue
        name, eq, _value = arg.partition("=")
        if is_header_option(name):  # a header's value, whatever its length, is never kept
            if eq:
                out.append(f"{name}={_mask_header(_value)}")
            else:
                out.append(arg)
                header = True
            continue
        if arg.startswith("-") and _is_secret_name(name.lstrip("-")):
            if eq:
                out.append(f"{name}=***")
            else:
                out.append(arg)
                hide = True
            continue
        out.append(scrub_text(arg, secrets))
    return out


def is_header_option(name: str) -> bool:
    """``--header`` or an abbreviation argparse accepts for it (``--hea``, ``--head`` ...)."""
    return len(name) >= 5 and "--header".startswith(name)


def _mask_header(text: str) -> str:
    """``"Name: value"`` -> ``"Name: ***"`` (only a plain header name is kept); ``"***"`` when
    it is not of that form."""
    name, sep, _value = text.partition(":")
    if sep and re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name.strip()):
        return f"{name.strip()}: ***"
    return "***"
