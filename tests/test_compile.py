"""torch.compile sees the whole HuBERT step as one graph: zero graph breaks (CPU trace)."""

import pytest
import torch

from audiossl.models.hubert.model import build_hubert, hubert_tiny


@pytest.mark.parametrize("padded", [False, True])
def test_pretrain_forward_has_no_graph_breaks(padded):
    torch._dynamo.reset()
    model = build_hubert(hubert_tiny(num_classes=50)).train()
    wavs = torch.randn(2, 16000)
    lengths = torch.tensor([16000, 12000]) if padded else None
    targets = torch.randint(0, 50, (2, 49))
    explained = torch._dynamo.explain(model)(wavs, lengths, targets)
    assert explained.graph_break_count == 0, [str(r.reason) for r in explained.break_reasons]
    assert explained.graph_count == 1


def test_encoder_inference_has_no_graph_breaks():
    torch._dynamo.reset()
    encoder = build_hubert(hubert_tiny()).encoder.eval()
    with torch.no_grad():
        explained = torch._dynamo.explain(encoder)(torch.randn(3, 8000), torch.tensor([8000, 6000, 4000]))
    assert explained.graph_break_count == 0, [str(r.reason) for r in explained.break_reasons]
