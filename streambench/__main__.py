"""``python -m streambench``: the ``streambench`` command line (see :mod:`streambench.cli`)."""

from streambench.cli import main

raise SystemExit(main())
