"""Exit statuses every verb shares, so a script can trust ``$?``.

0: the verb produced what it was asked for (some inputs may have been skipped, with reasons).
1: it produced nothing: no input was found, or every input was skipped (reasons printed first).
2: bad arguments or unreadable inputs (manifest, checkpoint, config) — nothing was attempted.
"""

from __future__ import annotations

import sys

OK, NOTHING_PRODUCED, USAGE_ERROR = 0, 1, 2


def produced_or_fail(verb: str, produced: int, total: int, what: str = "inputs") -> int:
    """``OK`` when ``produced > 0``; otherwise print why to stderr and return ``NOTHING_PRODUCED``.

    ``total``: how many ``what`` there were to process (0 → "none found", else "all skipped").
    Call it after the per-item skip reasons have been printed.
    """
    if produced > 0:
        return OK
    why = f"no {what} found" if total == 0 else f"all {total} {what} were skipped (reasons above)"
    print(f"audiossl {verb}: nothing produced: {why}", file=sys.stderr)
    return NOTHING_PRODUCED
