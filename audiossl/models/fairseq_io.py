"""fairseq checkpoints (HuBERT, wav2vec 2.0, WavLM, data2vec-audio): read without fairseq and without running pickled code.

**Reading** (:func:`read_fairseq_checkpoint`). A fairseq ``.pt`` is a pickle. It is opened with
``torch.load(weights_only=True)``, whose unpickler only builds tensors, containers and the globals
allow-listed here:

- ``argparse.Namespace`` (legacy ``args``): a plain attribute bag, built by ``__dict__.update``.
- numpy scalars / dtypes (``extra_state`` metrics): numpy's own constructors, no user code.
- ``omegaconf`` containers and nodes (``cfg`` in some checkpoints), the type references in their
  metadata (``typing.Any``, ``builtins.dict`` ...), ``collections.defaultdict`` and
  ``fairseq.data.dictionary.Dictionary`` (``task_state``): NOT the real objects. Each name maps to
  an inert :class:`_Record` that only stores the pickled state, which is then turned into plain
  dicts / lists. So neither fairseq nor omegaconf is imported and no ``__setstate__`` of theirs runs.

Anything else (e.g. ``os.system`` smuggled in through ``__reduce__``) is refused with
:class:`FairseqCheckpointError` naming the global.

The HuBERT mapping and export are :mod:`audiossl.models.hubert.fairseq`; wav2vec 2.0 / WavLM /
data2vec-audio go through :mod:`audiossl.interop.fairseq_w2v`.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

from audiossl.models.torch_file import safe_torch_load

FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")


class FairseqCheckpointError(ValueError):
    """A fairseq checkpoint that cannot (or must not) be loaded."""


class _Record:
    """Inert stand-in for a pickled object: remembers its class name and state, runs nothing."""

    qualname = "?"

    def __init__(self, *args) -> None:
        self.args = args
        self.state = None
        self.items: dict = {}

    def __setstate__(self, state) -> None:
        self.state = state

    def __setitem__(self, key, value) -> None:  # SETITEMS on a pickled mapping (defaultdict)
        self.items[key] = value


def _record_type(qualname: str) -> type:
    return type("Record_" + qualname.replace(".", "_"), (_Record,), {"qualname": qualname})


_RECORD_NAMES = [
    "omegaconf.dictconfig.DictConfig",
    "omegaconf.listconfig.ListConfig",
    "omegaconf.base.ContainerMetadata",
    "omegaconf.base.Metadata",
    "omegaconf.nodes.AnyNode",
    "omegaconf.nodes.StringNode",
    "omegaconf.nodes.IntegerNode",
    "omegaconf.nodes.FloatNode",
    "omegaconf.nodes.BooleanNode",
    "omegaconf.nodes.EnumNode",
    "omegaconf.nodes.BytesNode",
    "omegaconf.nodes.PathNode",
    "fairseq.data.dictionary.Dictionary",
    "typing.Any",
    "collections.defaultdict",
    # type references inside omegaconf metadata (object_type / key_type / element_type)
    "builtins.dict",
    "builtins.list",
    "builtins.int",
    "builtins.str",
    "builtins.float",
    "builtins.bool",
    "builtins.object",
]


def _safe_globals() -> list:
    import numpy as np  # lazy: keeps torch/numpy out of startup (`prepare`, `validate`, `--help` start fast)

    allowed: list = [argparse.Namespace]
    allowed += [(_record_type(n), n) for n in _RECORD_NAMES]
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2  # lazy: the module moved in numpy 2 (try/except picks the one that exists)
    except ImportError:
        from numpy.core.multiarray import scalar  # lazy: the module moved in numpy 2 (try/except picks the one that exists)
    allowed += [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), np.dtype]
    allowed += [type(np.dtype(t)) for t in ("f8", "f4", "i8", "i4", "b1")]
    return allowed


def _plain(obj):
    """Records / Namespaces → plain dicts and lists (recursively)."""
    if isinstance(obj, _Record):
        st = obj.state if isinstance(obj.state, dict) else {}
        if obj.qualname.startswith("omegaconf.") and "_content" in st:
            content = st["_content"]
            if isinstance(content, dict):
                return {k: _plain(v) for k, v in content.items()}
            if isinstance(content, list):
                return [_plain(v) for v in content]
            return None  # missing / interpolation / None container
        if obj.qualname.startswith("omegaconf.nodes."):
            return _plain(st.get("_val"))
        if obj.qualname == "fairseq.data.dictionary.Dictionary":
            return {"symbols": list(st.get("symbols", [])), "indices": dict(st.get("indices", {}))}
        if obj.qualname == "collections.defaultdict":
            return {k: _plain(v) for k, v in obj.items.items()}
        return {k: _plain(v) for k, v in st.items()}
    if isinstance(obj, argparse.Namespace):
        return {k: _plain(v) for k, v in vars(obj).items()}
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj


def read_fairseq_checkpoint(path: str | Path) -> dict:
    """Load a fairseq (or s3prl-converted) checkpoint as plain python + tensors, never running code.

    Returns ``{"model_cfg": dict, "task_cfg": dict, "model": state_dict, "dictionaries": [[symbol, ...]]}``.
    Raises :class:`FairseqCheckpointError` for unsafe pickles, unknown layouts, or missing files.
    """
    state = safe_torch_load(
        path, FairseqCheckpointError, "fairseq checkpoint", safe_globals=_safe_globals(),
        allowed="on the allow-list of safe types (tensors, containers, argparse.Namespace, omegaconf configs, "
                "fairseq Dictionary, numpy scalars)",
        advice="If you trust the file, re-save its 'cfg' and 'model' as plain dicts/tensors in an isolated "
               "environment that has fairseq.",
    )
    if not isinstance(state, dict):
        raise FairseqCheckpointError(f"{path}: expected a dict at the top level, got {type(state).__name__}")
    if "model_weight" in state:  # s3prl-converted layout
        model_cfg, task_cfg = _plain(state["model_cfg"]), _plain(state["task_cfg"])
        weights, dicts = state["model_weight"], _plain(state.get("dictionaries_symbols", []))
    elif "model" in state:
        if state.get("cfg") is not None:
            cfg = _plain(state["cfg"])
            if "model" not in cfg and "encoder_layers" in cfg:  # microsoft/unilm WavLM: a flat model config
                model_cfg, task_cfg = dict(cfg), {"normalize": bool(cfg.get("normalize", False))}
            else:
                model_cfg, task_cfg = dict(cfg.get("model") or {}), dict(cfg.get("task") or {})
        elif state.get("args") is not None:
            model_cfg = task_cfg = _plain(state["args"])
        else:
            raise FairseqCheckpointError(f"{path}: has neither 'cfg' nor 'args'; cannot tell the model config")
        weights = state["model"]
        dicts = [d["symbols"] for d in _plain((state.get("task_state") or {}).get("dictionaries") or []) if d]
    else:
        raise FairseqCheckpointError(
            f"{path}: unknown layout (top-level keys {sorted(state)[:10]}); expected fairseq 'model' + 'cfg'/'args'"
        )
    return {"model_cfg": model_cfg, "task_cfg": task_cfg, "model": dict(weights), "dictionaries": dicts}


def eval_conv_layers(text: str) -> tuple:
    """fairseq ``conv_feature_layers`` string, e.g. ``"[(512,10,5)] + [(512,3,2)] * 4"``, evaluated
    with a tiny AST walker (lists, tuples, ints, + and *) instead of ``eval``."""

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            return [ev(e) for e in node.elts]
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            a, b = ev(node.left), ev(node.right)
            return a + b if isinstance(node.op, ast.Add) else a * b
        raise FairseqCheckpointError(f"conv_feature_layers {text!r}: unsupported expression")

    return tuple(tuple(int(v) for v in layer) for layer in ev(ast.parse(text, mode="eval")))
