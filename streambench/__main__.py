"""``python -m streambench``: the ``streambench`` command line (see :mod:`streambench.cli.run`)."""

from streambench.cli.run import main

raise SystemExit(main())
