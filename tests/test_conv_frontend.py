"""The waveform front end's hand-written pieces: the masked group norm's closed-form backward."""

import pytest
import torch
from torch import nn

from audiossl.models.conv_frontend import ConvFrontend, masked_group_norm


def _autograd_reference(x: torch.Tensor, valid: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """The same statistics written as plain tensor ops, differentiated by autograd."""
    xf = x.float()
    m = valid[:, None, :].to(torch.float32)
    count = m.sum(-1, keepdim=True).clamp(min=1.0)
    mean = (xf * m).sum(-1, keepdim=True) / count
    var = (((xf - mean) * m) ** 2).sum(-1, keepdim=True) / count
    y = (xf - mean) * torch.rsqrt(var + norm.eps)
    if norm.affine:
        y = y * norm.weight.float()[None, :, None] + norm.bias.float()[None, :, None]
    return y.to(x.dtype)


@pytest.mark.parametrize("affine", [True, False])
def test_masked_group_norm_matches_autograd_of_the_plain_expression(affine):
    torch.manual_seed(0)
    norm = nn.GroupNorm(6, 6, affine=affine)
    if affine:
        with torch.no_grad():
            norm.weight.normal_()
            norm.bias.normal_()
    x = torch.randn(3, 6, 40) * 3 + 2
    valid = torch.arange(40)[None] < torch.tensor([40, 23, 5])[:, None]
    dy = torch.randn(3, 6, 40) * valid[:, None, :]  # padded steps get no gradient: no valid frame reads them
    dy[0, :, -1] = 1.0  # ... but the formula must hold for any dy
    params = list(norm.parameters())

    xa = x.clone().requires_grad_()
    ya = masked_group_norm(xa, valid, norm)
    ga = torch.autograd.grad(ya, [xa, *params], dy)
    xb = x.clone().requires_grad_()
    yb = _autograd_reference(xb, valid, norm)
    gb = torch.autograd.grad(yb, [xb, *params], dy)

    torch.testing.assert_close(ya, yb, rtol=0, atol=0)
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_bf16_input_keeps_its_dtype_and_gets_a_bf16_gradient():
    norm = nn.GroupNorm(4, 4)
    x = torch.randn(2, 4, 16).to(torch.bfloat16).requires_grad_()
    valid = torch.arange(16)[None] < torch.tensor([16, 10])[:, None]
    y = masked_group_norm(x, valid, norm)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.bfloat16


@pytest.mark.parametrize("mode", ["group_norm", "layer_norm"])
def test_frontend_backward_matches_between_padded_and_full_items(mode):
    """A padded batch gives the valid frames of each item the gradient it gets alone."""
    torch.manual_seed(2)
    fe = ConvFrontend(((8, 10, 5), (8, 3, 2), (8, 2, 2)), mode=mode)
    wav = torch.randn(1, 4000)
    alone = wav.clone().requires_grad_()
    out_alone = fe(alone, torch.tensor([4000]))
    (out_alone ** 2).sum().backward()

    padded = torch.cat([wav, torch.zeros(1, 1000)], 1)
    batch = torch.cat([padded, torch.randn(1, 5000)]).requires_grad_()
    out = fe(batch, torch.tensor([4000, 5000]))
    frames = out_alone.shape[1]
    (out[0, :frames] ** 2).sum().backward()
    torch.testing.assert_close(out[0, :frames], out_alone[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batch.grad[0, :4000], alone.grad[0], rtol=1e-4, atol=1e-5)
    assert batch.grad[0, 4000:].abs().max() == 0
