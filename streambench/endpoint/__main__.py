"""``python -m streambench.endpoint URL --model NAME [options]``: see :func:`.cli.main`."""

from .cli import main

raise SystemExit(main())
