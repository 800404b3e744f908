"""The command line, one module per subcommand: :mod:`.run` (``streambench run``, and the parser
of every command), :mod:`.results` (``plot``, ``compare``, ``report``), :mod:`.system`
(``system check``); ``streambench endpoint`` parses in :mod:`streambench.endpoint.cli`."""

from .run import build_parser, main

__all__ = ["build_parser", "main"]
