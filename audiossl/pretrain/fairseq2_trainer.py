"""Import ``fairseq2.trainer`` without running ``fairseq2.recipe``'s package ``__init__`` (3.5 s per process).

fairseq2 0.8's ``trainer`` module imports two small ``fairseq2.recipe`` submodules (``error``, ``model``).
Importing any submodule runs the package's ``__init__`` first, which imports every recipe, the
Hugging Face model bridge and so transformers → scikit-learn, and which also needs ``fairseq2.trainer``
itself (a circular import when the trainer is imported first). Measured on a 2-core CPU:
``import audiossl.pretrain.trainer`` 7.0 s with the package ``__init__``, 3.5 s without; every
``audiossl pretrain`` / ``tokenizer train`` process pays it (nine per ``make demo``).

So the trainer is imported while ``sys.modules["fairseq2.recipe"]`` holds the package *unexecuted*
(same spec and ``__path__``, so its submodules load normally); the placeholder is removed right after,
and a later ``import fairseq2.recipe`` runs the real ``__init__`` (it then finds ``fairseq2.trainer``
loaded, so no cycle). Any failure falls back to the plain order: full package, then the trainer.
Import this module before any other ``fairseq2`` import that could reach ``fairseq2.trainer``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys


def _import_trainer() -> None:
    if "fairseq2.trainer" in sys.modules:
        return
    if "fairseq2.recipe" not in sys.modules:
        spec = importlib.util.find_spec("fairseq2.recipe")
        if spec is not None and spec.submodule_search_locations is not None:
            sys.modules["fairseq2.recipe"] = importlib.util.module_from_spec(spec)
            try:
                importlib.import_module("fairseq2.trainer")
                return
            except ImportError:
                pass  # another fairseq2 layout: the plain order below
            finally:
                del sys.modules["fairseq2.recipe"]
    importlib.import_module("fairseq2.recipe")
    importlib.import_module("fairseq2.trainer")


_import_trainer()
