"""LayerDrop draws follow the run's seed and step (exact resume, the same drops on every rank)."""

import pytest
import torch

from audiossl.models.beats.model import BeatsModel, beats_tiny
from audiossl.models.hubert.model import HubertModel, hubert_tiny
from audiossl.models.transformer import seed_layerdrop
from audiossl.models.wavlm.model import WavlmModel, wavlm_tiny

NO_DROP = dict(dropout=0.0, attention_dropout=0.0, dropout_input=0.0)


def _hubert():
    torch.manual_seed(0)
    return HubertModel(hubert_tiny(num_layers=8, encoder_layerdrop=0.5, **NO_DROP)).train()


def _beats():
    torch.manual_seed(0)
    return BeatsModel(beats_tiny(encoder_layers=8, encoder_layerdrop=0.5, **NO_DROP)).train()


def _wavlm():
    torch.manual_seed(0)
    return WavlmModel(wavlm_tiny(num_layers=8, encoder_layerdrop=0.5, **NO_DROP)).train()


def _ran(model, x) -> tuple[bool, ...]:
    """Which layers of the model's stack ran in one forward (a dropped layer passes its input through)."""
    with torch.no_grad():
        hs = model.encoder(x)
    return tuple(not torch.equal(a, b) for a, b in zip(hs[:-1], hs[1:]))


def _input(model) -> torch.Tensor:
    return torch.randn(1, 10, model.encoder.layers[0].final_layer_norm.normalized_shape[0])


def _pattern(model, seed: int, steps=(1, 2, 3), global_seed: int = 0) -> list[tuple[bool, ...]]:
    torch.manual_seed(global_seed)  # what differs between data-parallel ranks (fairseq2: seed + rank)
    x = _input(model)
    out = []
    for step in steps:
        seed_layerdrop(model, seed, step)
        out += [_ran(model, x), _ran(model, x)]  # two micro-batches in one step
    return out


@pytest.mark.parametrize("build", [_hubert, _beats, _wavlm], ids=["hubert", "beats", "wavlm"])
def test_drops_follow_the_seed_and_step_only(build):
    model = build()
    first = _pattern(model, seed=0)
    flat = [r for p in first for r in p]
    assert any(flat) and not all(flat)  # layers really drop, and not all of them
    assert len(set(first)) > 1  # successive forwards draw afresh
    assert _pattern(model, seed=0) == first
    assert _pattern(build(), seed=0, global_seed=123) == first  # another rank, a fresh (resumed) model
    assert _pattern(model, seed=1) != first
    assert _pattern(model, seed=0, steps=(4, 5, 6)) != first
    assert _pattern(model, seed=0, steps=(2, 3))[:2] == first[2:4]  # resuming at step 2 redraws step 2


def _unseeded(global_seed: int) -> list[tuple[bool, ...]]:
    model = _hubert()
    torch.manual_seed(global_seed)
    return [_ran(model, _input(model)) for _ in range(4)]


def test_unseeded_stacks_follow_torch_manual_seed():
    assert _unseeded(0) == _unseeded(0) != _unseeded(7)
