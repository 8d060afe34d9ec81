"""The fields every waveform encoder shares (conv front end + positional conv + transformer stack).

:class:`ConvEncoderConfig` is the base of ``HubertConfig`` (and through it ``WavlmConfig``),
``MertConfig`` and ``Data2Vec2Config``: each family adds its own fields and overrides a default where
its paper's code differs (MERT: 24 kHz; data2vec 2.0: ``layer_norm`` front end, 19-frame pos-conv
blocks). The base is flat inheritance, not a nested section, so a checkpoint's ``config.json`` keeps
one flat dict and every saved checkpoint still loads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from audiossl.utils.config import DictConfig

DEFAULT_CONV = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2
"""wav2vec 2.0's seven conv layers: ×320 (50 Hz at 16 kHz, 75 Hz at 24 kHz)."""


@dataclass
class ConvEncoderConfig(DictConfig):
    """Shared encoder fields; each docstring names the fairseq ``HubertConfig`` option it mirrors."""

    sample_rate: int = 16000
    """Audio rate the model expects (fairseq task ``sample_rate``)."""
    conv_layers: tuple[tuple[int, int, int], ...] = DEFAULT_CONV
    """``(channels, kernel, stride)`` per conv layer (``conv_feature_layers``)."""
    extractor_mode: str = "group_norm"
    """``group_norm`` (Base) or ``layer_norm`` (Large/XL, data2vec) (``extractor_mode``)."""
    conv_bias: bool = False
    """Bias in the conv layers (``conv_bias``)."""
    embed_dim: int = 768
    """Transformer width (``encoder_embed_dim``)."""
    num_layers: int = 12
    """Transformer layers (``encoder_layers``)."""
    num_heads: int = 12
    """Attention heads (``encoder_attention_heads``)."""
    ffn_dim: int = 3072
    """FFN inner width (``encoder_ffn_embed_dim``)."""
    pos_conv_kernel: int = 128
    """Positional conv kernel in frames (``conv_pos``)."""
    pos_conv_groups: int = 16
    """Positional conv groups (``conv_pos_groups``)."""
    dropout: float = 0.1
    """Residual / block dropout (``dropout``)."""
    attention_dropout: float = 0.1
    """Dropout on attention weights (``attention_dropout``)."""
    activation_dropout: float = 0.0
    """Dropout after the FFN activation (``activation_dropout``)."""
    encoder_layerdrop: float = 0.05
    """Probability of skipping a layer in training (``encoder_layerdrop``)."""

    def __post_init__(self) -> None:
        self.conv_layers = tuple(tuple(int(v) for v in layer) for layer in self.conv_layers)
        if any(len(layer) != 3 for layer in self.conv_layers):
            raise ValueError(f"conv_layers must be (channels, kernel, stride) triples, got {self.conv_layers}")
        if self.extractor_mode not in ("group_norm", "layer_norm"):
            raise ValueError(f"extractor_mode must be 'group_norm' or 'layer_norm', got {self.extractor_mode!r}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.embed_dim % self.pos_conv_groups:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by pos_conv_groups {self.pos_conv_groups}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["conv_layers"] = [list(layer) for layer in self.conv_layers]
        return d
