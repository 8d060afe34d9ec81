"""File-system names of bench outputs."""

from __future__ import annotations

import re


def slug(name: str) -> str:
    """An upstream spec as a directory name (``fairseq:/a/b.pt`` → ``fairseq_a_b.pt``; at most 80 characters)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:80] or "upstream"
