"""Released ``.pt`` files read without running code from them (fairseq, BEATs, BEATs tokenizer).

:func:`safe_torch_load` opens the pickle with ``torch.load(weights_only=True)``, whose unpickler only
builds tensors, plain containers and the globals a caller allow-lists; anything else (e.g.
``os.system`` smuggled in through ``__reduce__``) is refused with the caller's error type, naming
the global. :func:`read_cfg_model` reads the ``{"cfg": dict, "model": state_dict}`` layout of unilm's
releases.
"""

from __future__ import annotations

import contextlib
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


def safe_torch_load(
    path: str | Path, error: type[Exception], what: str, *, allowed: str = "a tensor or plain container",
    advice: str = "", safe_globals: list | None = None,
) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with ``safe_globals`` allow-listed.

    Raises ``error``: no such file (``what`` names the kind of file), a pickle that references
    anything not allowed (named, then ``advice``), or an unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such {what} file")
    try:
        with torch.serialization.safe_globals(safe_globals) if safe_globals else contextlib.nullcontext():
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        m = re.search(r"GLOBAL (\S+)", str(e)) or re.search(r"(function|object|class) (\S+)", str(e))
        culprit = m.group(1) if m else str(e).splitlines()[0]
        raise error(
            f"{path}: refused to load: the pickle references {culprit}, which is not {allowed}. "
            f"Unpickling it could run arbitrary code. {advice}".rstrip()
        ) from None
    except (RuntimeError, EOFError, OSError) as e:
        raise error(f"{path}: not a readable torch checkpoint ({e})") from None


def read_cfg_model(path: str | Path, error: type[Exception], what: str, advice: str = "") -> tuple[dict, dict[str, Tensor]]:
    """``(cfg, state_dict)`` of a ``{"cfg": dict, "model": state_dict}`` file, via :func:`safe_torch_load`."""
    obj = safe_torch_load(path, error, what, advice=advice)
    if not isinstance(obj, dict) or not isinstance(obj.get("cfg"), dict) or not isinstance(obj.get("model"), dict):
        keys = sorted(obj)[:10] if isinstance(obj, dict) else type(obj).__name__
        raise error(f"{path}: expected a dict with 'cfg' (dict) and 'model' (state dict), got {keys}")
    return dict(obj["cfg"]), dict(obj["model"])
