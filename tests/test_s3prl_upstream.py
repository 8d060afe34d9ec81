"""``s3prl:<name>:<ckpt>``: our HuBERT exported to fairseq format and loaded through s3prl's
``hubert_local`` gives the same hidden states, frame rate and lengths as our own loader, padded
batch included (max abs difference <= 1e-4)."""

from __future__ import annotations

import pytest
import torch

from audiossl.upstream.encoder import EncoderUpstream

from audiossl.upstream.load import load_upstream
from audiossl.models.hubert.fairseq import export_fairseq
from audiossl.interop.s3prl_upstream import S3prlUpstreamError
from audiossl.models.hubert.model import build_hubert, hubert_tiny

pytest.importorskip("s3prl")
CONV = ((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2
TOL = 1e-4


def _tiny(mode: str, pre_ln: bool):
    torch.manual_seed(0)
    cfg = hubert_tiny(conv_layers=CONV, embed_dim=48, num_layers=2, num_heads=2, ffn_dim=64, pos_conv_kernel=16,
                      pos_conv_groups=4, final_dim=16, num_classes=10, extractor_mode=mode, layer_norm_first=pre_ln,
                      conv_bias=pre_ln)
    model = build_hubert(cfg).eval()
    with torch.no_grad():  # non-trivial LayerNorm affine and biases
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("mode,pre_ln", [("group_norm", False), ("layer_norm", True)])
def test_s3prl_hubert_local_matches_our_loader(tmp_path, mode, pre_ln):
    path = export_fairseq(_tiny(mode, pre_ln), tmp_path / "hubert.pt")
    theirs = load_upstream(f"s3prl:hubert_local:{path}")
    ours = load_upstream(f"fairseq:{path}")
    assert isinstance(ours, EncoderUpstream)
    assert (theirs.num_layers, theirs.hidden_dim, theirs.frame_rate) == (ours.num_layers, ours.hidden_dim, ours.frame_rate) == (3, 48, 50.0)
    # in s3prl a padded batch changes an item's frames (GroupNorm over the padded length; fairseq's
    # frame padding mask counts len // 320 valid frames, one more than the conv yields): the probe
    # must notice, so the wrapper runs padded batches item by item
    assert not theirs.padding_invariant
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([16000, 11000, 7000])
    wavs = torch.randn(3, 16000, generator=g) * (torch.arange(16000)[None] < lengths[:, None])
    a, b = theirs(wavs, lengths), ours(wavs, lengths)
    assert torch.equal(a.lengths, b.lengths) and a.lengths.tolist() == [ours.num_frames(int(n)) for n in lengths]
    for i, n in enumerate(b.lengths.tolist()):
        for x, y in zip(a.hidden_states, b.hidden_states):
            assert float((x[i, :n] - y[i, :n]).abs().max()) <= TOL
    # and each item alone equals its row of the padded batch
    single = theirs(wavs[2:, :7000])
    for x, y in zip(single.hidden_states, a.hidden_states):
        assert float((x[0] - y[2, : x.shape[1]]).abs().max()) <= TOL


def test_extract_runs_on_an_s3prl_upstream(tmp_path):
    import numpy as np
    import soundfile as sf

    from audiossl.cli.main import main

    path = export_fairseq(_tiny("layer_norm", True), tmp_path / "hubert.pt")
    sf.write(tmp_path / "a.wav", (0.1 * np.random.default_rng(0).standard_normal(9000)).astype(np.float32), 16000)
    assert main(["extract", f"s3prl:hubert_local:{path}", str(tmp_path / "a.wav"), str(tmp_path / "out"), "--layers", "2"]) == 0
    arr = np.load(tmp_path / "out" / "a.npy")
    want = load_upstream(f"fairseq:{path}")(torch.from_numpy(sf.read(tmp_path / "a.wav", dtype="float32")[0])[None]).hidden_states[2][0]
    assert arr.shape == tuple(want.shape) and np.abs(arr - want.numpy()).max() <= TOL


def test_s3prl_spec_errors_name_the_fix(tmp_path):
    with pytest.raises(S3prlUpstreamError, match="not an s3prl upstream.*hubert_local"):
        load_upstream("s3prl:no_such_model")
    with pytest.raises(S3prlUpstreamError, match="downloads its checkpoint.*hubert_local"):
        load_upstream("s3prl:hubert_url:https://example.com/x.pt")
    with pytest.raises(S3prlUpstreamError, match="no such checkpoint file"):
        load_upstream(f"s3prl:hubert_local:{tmp_path / 'missing.pt'}")
