"""BEATs iteration-1 random-projection tokenizer: determinism, memory-safe distances, save/load, labelling."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from audiossl.tokenizers.beats.random_projection import (
    RandomProjectionConfig,
    RandomProjectionTokenizer,
    load_random_projection,
    save_random_projection,
)


def _wavs(seed: int = 0, n: int = 2, samples: int = 16000) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 16000
    tones = torch.stack([0.3 * torch.sin(2 * torch.pi * (200 + 150 * i) * t) for i in range(n)])
    return tones + 0.05 * torch.randn(n, samples, generator=g)


def test_same_seed_same_codes_different_seed_different_codes():
    wavs, lengths = _wavs(), torch.tensor([16000, 12000])
    a, fa = RandomProjectionTokenizer(RandomProjectionConfig(seed=3))(wavs, lengths)
    b, fb = RandomProjectionTokenizer(RandomProjectionConfig(seed=3))(wavs, lengths)
    c, _ = RandomProjectionTokenizer(RandomProjectionConfig(seed=4))(wavs, lengths)
    assert a.shape == (2, 6, 8) and a.dtype == torch.int64
    assert fa.tolist() == [6, 4] and torch.equal(fa, fb)
    assert torch.equal(a, b)
    assert (a != c).float().mean() > 0.5
    assert int(a.max()) < 1024 and int(a.min()) >= 0


def test_projection_is_xavier_normal_and_both_sides_are_l2_normalised():
    tok = RandomProjectionTokenizer(RandomProjectionConfig(dim=256))
    assert tok.cfg.normalize == "l2"  # BEATs §3.2 / BEST-RQ: argmin_i ||l2(v_i) - l2(W x)||
    std = float(tok.projection.std())
    assert abs(std - (2.0 / (256 + 256)) ** 0.5) < 0.003
    assert not list(tok.parameters())  # frozen: buffers only, nothing an optimiser could touch
    patches = torch.randn(5, 256) * 7 + 3
    x = tok.project(patches)
    torch.testing.assert_close(x.norm(dim=-1), torch.ones(5))
    torch.testing.assert_close(tok.codes().norm(dim=-1), torch.ones(1024))
    # nearest by cosine: the code with the largest cos(v_i, W x), whatever the codes' norms
    cos = torch.nn.functional.cosine_similarity((patches @ tok.projection.T)[:, None], tok.codebook[None], dim=-1)
    assert torch.equal(tok.encode_patches(patches[None, None])[0, 0], cos.argmax(-1))


def test_layernorm_option_and_old_saved_tokenizers_keep_their_labels(tmp_path):
    """``normalize="layernorm"`` is audiossl's earlier tokenizer; a directory saved before the option loads as it."""
    old = RandomProjectionTokenizer(RandomProjectionConfig(normalize="layernorm"))
    x = old.project(torch.randn(5, 256) * 7 + 3)
    assert torch.allclose(x.mean(-1), torch.zeros(5), atol=1e-5)
    assert torch.allclose(x.var(-1, unbiased=False), torch.ones(5), atol=1e-3)
    assert torch.equal(old.codes(), old.codebook)
    save_random_projection(old, tmp_path)
    meta = json.loads((tmp_path / "random_projection.json").read_text())
    del meta["config"]["normalize"]
    (tmp_path / "random_projection.json").write_text(json.dumps(meta))
    assert load_random_projection(tmp_path).cfg.normalize == "layernorm"
    with pytest.raises(ValueError, match="normalize"):
        RandomProjectionConfig(normalize="cosine")


def test_codes_are_nearest_by_brute_force_broadcast():
    tok = RandomProjectionTokenizer(RandomProjectionConfig(num_codes=64, dim=16, seed=1))
    patches = torch.randn(2, 3, 8, 256)
    codes = tok.encode_patches(patches)
    x = tok.project(patches)
    brute = ((x[..., None, :] - tok.codes()) ** 2).sum(-1).argmin(-1)  # the [B, L, K, D] broadcast, small here
    assert torch.equal(codes, brute)


class _SizeWatch(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_distances_never_build_the_broadcast():
    cfg = RandomProjectionConfig(num_codes=1024, dim=256, chunk_size=64)
    tok = RandomProjectionTokenizer(cfg)
    patches = torch.randn(4, 10, 8, 256)  # B·L = 320 patches
    with _SizeWatch() as watch:
        tok.encode_patches(patches)
    broadcast = 4 * 10 * 8 * cfg.num_codes * cfg.dim
    assert watch.largest < broadcast // 100
    assert watch.largest <= max(cfg.chunk_size * cfg.num_codes, patches.numel(), cfg.num_codes * cfg.dim)


def test_save_load_roundtrip_and_tamper_detection(tmp_path):
    tok = RandomProjectionTokenizer(RandomProjectionConfig(seed=7, num_codes=32, dim=8))
    save_random_projection(tok, tmp_path / "rp")
    meta = json.loads((tmp_path / "rp" / "random_projection.json").read_text())
    assert meta["config"]["seed"] == 7 and meta["config"]["dim"] == 8 and meta["sha256"] == tok.fingerprint()
    back = load_random_projection(tmp_path / "rp")
    assert torch.equal(back.codebook, tok.codebook) and torch.equal(back.projection, tok.projection)
    meta["config"]["seed"] = 8  # tensors from seed 7, metadata claims another tokenizer
    meta["sha256"] = "0" * 64
    (tmp_path / "rp" / "random_projection.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="sha256"):
        load_random_projection(tmp_path / "rp")
    with pytest.raises(FileNotFoundError, match="random_projection.json"):
        load_random_projection(tmp_path / "nothing")


def _label_args(manifest, **kw):
    from audiossl.cli import tokenizer_beats

    p = argparse.ArgumentParser()
    tokenizer_beats.add_label_arguments(p, "random-projection")
    a = p.parse_args([str(manifest)] + [x for k, v in kw.items() for x in (f"--{k.replace('_', '-')}", str(v))])
    a.action, a.kind = "label", "random-projection"
    return a


def test_label_cli_writes_codes_skips_bad_audio(tmp_path, capsys):
    from audiossl.audio.io import save_audio
    from audiossl.cli.tokenizer_beats import run_label
    from audiossl.data.frame_labels import read_frame_labels
    from audiossl.data.manifest import Manifest, Row, write_manifest

    wavs = _wavs(n=3, samples=12000)
    rows = []
    for i, n in enumerate([12000, 7000, 9000]):
        save_audio(tmp_path / f"u{i}.wav", wavs[i, :n].numpy(), 16000)
        rows.append(Row(f"u{i}.wav", n))
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really a wav file")
    rows.insert(1, Row("broken.wav", 8000))
    write_manifest(Manifest(tmp_path, rows), tmp_path / "train.tsv")
    assert run_label(_label_args(tmp_path / "train.tsv", seed=5, batch_size=2, save=tmp_path / "tok")) == 0
    out = capsys.readouterr().out
    assert "labelled 3 of 4 rows" in out and "skipped 1 (unreadable: 1)" in out
    labels, info = read_frame_labels(tmp_path / "train.rp")
    assert info.frame_rate == 6.25 and info.num_classes == 1024 and info.num_codebooks == 8
    assert info.tokenizer["kind"] == "random-projection" and info.tokenizer["seed"] == 5
    assert [l.shape for l in labels] == [(4, 8), (0, 8), (2, 8), (3, 8)]
    # codes equal a direct batch-of-one call: batching and padding do not change them
    tok = load_random_projection(tmp_path / "tok")
    direct, _ = tok(wavs[2:3, :9000])
    assert np.array_equal(labels[3], direct[0].numpy())
    # --tokenizer reproduces the same file
    assert run_label(_label_args(tmp_path / "train.tsv", tokenizer=tmp_path / "tok", out=tmp_path / "again.rp")) == 0
    assert (tmp_path / "again.rp").read_text() == (tmp_path / "train.rp").read_text()
