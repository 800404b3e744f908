"""Units shared by every table and result: one definition, imported everywhere.

Ground floor: imports nothing.

>>> 3 * GiB // MiB
3072
"""

from __future__ import annotations

__all__ = ["GiB", "MiB"]

#: bytes in a gibibyte (2**30); the console says GiB, CSV columns and do_print lines "GB"
GiB = 1024**3
#: bytes in a mebibyte (2**20)
MiB = 1024**2
