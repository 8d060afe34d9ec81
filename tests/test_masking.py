"""Span masking: expected fraction, padding never masked, spans whole, seeded, vectorised on device."""

import pytest
import torch

from audiossl.models.masking import compute_span_mask, expected_mask_fraction


def _runs(row):
    """Lengths of maximal True runs in a 1-D bool tensor."""
    runs, n = [], 0
    for v in row.tolist() + [False]:
        if v:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    return runs


def test_fraction_matches_expectation():
    gen = torch.Generator().manual_seed(0)
    lengths = torch.full((256,), 500)
    mask = compute_span_mask(lengths, 500, 0.8, 10, generator=gen)
    frac = mask.float().mean().item()
    # p=0.8, L=10: 1 - 0.92^10 = 0.566 (starts sampled without replacement cover a bit more)
    assert abs(expected_mask_fraction(0.8, 10) - 0.5656) < 1e-3
    assert abs(frac - expected_mask_fraction(0.8, 10)) < 0.03


def test_padding_never_masked_and_spans_whole():
    gen = torch.Generator().manual_seed(1)
    lengths = torch.tensor([300, 120, 37, 10, 7, 0, 300, 55])
    mask = compute_span_mask(lengths, 300, 0.8, 10, generator=gen)
    frames = torch.arange(300)[None]
    assert not (mask & (frames >= lengths[:, None])).any()
    for row, n in zip(mask, lengths.tolist()):
        if n >= 10:
            runs = _runs(row)
            assert runs and min(runs) >= 10  # spans never cut short by the padding
            assert sum(runs) >= 10  # min_masks=2 spans, possibly overlapping
    assert not mask[5].any()  # empty item
    assert mask[4, :7].all()  # shorter than one span: the single span covers it


def test_deterministic_with_generator():
    lengths = torch.tensor([400, 250, 90])
    a = compute_span_mask(lengths, 400, 0.8, 10, generator=torch.Generator().manual_seed(7))
    b = compute_span_mask(lengths, 400, 0.8, 10, generator=torch.Generator().manual_seed(7))
    c = compute_span_mask(lengths, 400, 0.8, 10, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_span_count_follows_length():
    gen = torch.Generator().manual_seed(2)
    lengths = torch.tensor([1000] * 64 + [100] * 64)
    mask = compute_span_mask(lengths, 1000, 0.8, 10, generator=gen)
    long_frac = mask[:64].float().sum(1).mean() / 1000
    short_frac = mask[64:].float().sum(1).mean() / 100
    assert abs(long_frac - short_frac) < 0.08  # the fraction, not the count, is per item


def test_edge_cases():
    lengths = torch.tensor([50, 20])
    assert not compute_span_mask(lengths, 50, 0.0, 10).any()
    assert compute_span_mask(lengths, 0, 0.8, 10).shape == (2, 0)
    one = compute_span_mask(lengths, 50, 0.8, 1, min_masks=0, generator=torch.Generator().manual_seed(3))
    assert one.sum(1).tolist() == [40, 16]  # L=1: floor(0.8 n + u) distinct frames, no overlap possible
    with pytest.raises(ValueError, match="mask_length"):
        compute_span_mask(lengths, 50, 0.8, 0)
    with pytest.raises(ValueError, match="mask_prob"):
        compute_span_mask(lengths, 50, 1.5, 10)


def test_runs_on_device_of_lengths():
    lengths = torch.tensor([100, 80], device="meta")
    assert compute_span_mask(lengths, 100, 0.8, 10).device.type == "meta"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_generator():
    lengths = torch.tensor([500, 300], device="cuda")
    a = compute_span_mask(lengths, 500, 0.8, 10, generator=torch.Generator("cuda").manual_seed(0))
    b = compute_span_mask(lengths, 500, 0.8, 10, generator=torch.Generator("cuda").manual_seed(0))
    assert a.is_cuda and torch.equal(a, b)
    assert not a[1, 300:].any()
