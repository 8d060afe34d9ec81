"""The family registry: model families the pretraining run, the export and ``load_upstream`` can build.

A family is a module (imported only when used) that defines:

``CONFIGS: dict[str, Callable[..., Config]]``
    size name → config builder taking field overrides (``hubert_tiny(num_classes=100)``).
``config_from_dict(d: dict) -> Config``
    the inverse of ``Config.to_dict()`` (a run directory and ``config.json`` store the dict).
``build_pretrain_model(cfg) -> nn.Module`` (config classes carry ``family: ClassVar[str]``)
    the model the trainer optimises. It has ``.cfg`` (with ``sample_rate``, ``num_classes``),
    ``.encoder`` (with ``frame_rate``, ``num_frames(num_samples)``) and
    ``forward(wavs [B, S], lengths [B] | None, targets [B, T] or [B, T, C]) -> output`` where the
    output has scalar tensors ``loss``, ``loss_masked``, ``correct_masked``, ``num_masked`` and,
    optionally, ``feature_pen`` and ``extra_losses: dict[str, Tensor]`` (logged by name).
``train_flops_per_second(cfg, crop_samples: int) -> float``
    analytic training FLOPs per second of audio (feeds MFU).
``load_pretrain_checkpoint(ckpt_dir) -> nn.Module``
    reading our ``model.safetensors`` + ``config.json`` checkpoints back.
``load_encoder(ckpt_dir) -> Encoder`` (model families)
    the checkpoint's encoder, implementing :class:`audiossl.models.encoder.Encoder`;
    :func:`audiossl.upstream.load.load_upstream` wraps it generically.
``build_upstream(ckpt_dir, meta) -> Upstream`` (tokenizer families instead of ``load_encoder``)
    an upstream with the tokenizer's own output layout.

Optional: ``NUM_CODEBOOKS_FIELD`` (config attribute with codes per frame, default 1),
``EXTRA_METRICS: dict[str, str]`` (metric name → display name for ``extra_losses``),
``METRICS`` (which of ``loss``, ``loss_masked``, ``feature_pen``, ``masked_acc`` the output
carries; default all four), ``on_metrics(values: dict) -> None`` (called with each published set
of metric values, e.g. to warn when codebook usage collapses), ``LABELS_AT_FRAME_RATE`` (True:
labels must come at the model's frame rate even when the recipe leaves ``data.label_rate`` unset),
``AUDIO_ONLY`` (True: trained without labels; ``audiossl pretrain`` then defaults to ``--labels none``
and refuses a label extension), ``AUTO_BF16`` (False: ``amp=auto`` trains the family in fp32; the RVQ-VAE),
``DATA_PARALLELISM`` (the ``data_parallelism`` modes the family supports; default all),
``before_train_step(step_nr)`` on any submodule of the pretraining model (called by the trainer before
each optimizer step, e.g. data2vec 2.0's EMA teacher update).
"""

from __future__ import annotations

import importlib
from types import ModuleType

FAMILY_MODULES: dict[str, str] = {
    "hubert": "audiossl.models.hubert.family",
    "beats": "audiossl.models.beats.family",
    "mert": "audiossl.models.mert.family",
    "wavlm": "audiossl.models.wavlm.family",
    "data2vec2": "audiossl.models.data2vec2.family",  # trained on audio alone (labels=None)
    # tokenizers trained on audio alone (``audiossl tokenizer train``; labels=None)
    "beats_tokenizer": "audiossl.tokenizers.beats.family",
    "rvq": "audiossl.tokenizers.rvq.family",
}


class FamilyError(ValueError):
    """An unknown or not-yet-built model family."""


def get_family(name: str) -> ModuleType:
    if name not in FAMILY_MODULES:
        raise FamilyError(f"model family {name!r}: choose one of {sorted(FAMILY_MODULES)}")
    try:
        return importlib.import_module(FAMILY_MODULES[name])
    except ModuleNotFoundError as e:
        if e.name == FAMILY_MODULES[name]:
            raise FamilyError(f"model family {name!r} is not built in this version of audiossl") from None
        raise


def num_codebooks(family: ModuleType, cfg) -> int:
    field = getattr(family, "NUM_CODEBOOKS_FIELD", None)
    return int(getattr(cfg, field)) if field else 1
