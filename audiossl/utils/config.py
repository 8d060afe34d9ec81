"""Config dataclasses read back from their ``to_dict()`` (a checkpoint's ``config.json``, a run directory)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def from_dict_checked(cls: type[T], d: dict[str, Any], defaults: dict[str, Any] | None = None) -> T:
    """``cls(**{**defaults, **d})``, refusing fields ``cls`` does not have (``ValueError`` naming them
    and the known ones). ``defaults``: values for fields older dicts were saved without, when they
    differ from the dataclass defaults."""
    known = {f.name for f in fields(cls)}
    if unknown := sorted(set(d) - known):
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; known fields: {sorted(known)}")
    return cls(**{**(defaults or {}), **d})


class DictConfig:
    """Mixin for config dataclasses: ``from_dict``, the inverse of ``to_dict()``, via :func:`from_dict_checked`."""

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        return from_dict_checked(cls, d)
