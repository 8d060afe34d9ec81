"""EnCodec codes from a local transformers directory: [frames, 8] at 75 Hz, batched = one by one,
no hub access, clear errors for a wrong directory or bandwidth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiossl.tokenizers.encodec_codes import EncodecError, load_encodec


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from transformers import EncodecConfig, EncodecModel

    cfg = EncodecConfig(
        sampling_rate=24000, target_bandwidths=[1.5, 3.0, 6.0, 12.0], upsampling_ratios=[8, 5, 4, 2], num_filters=4,
        hidden_size=16, codebook_size=1024, codebook_dim=16, num_lstm_layers=1, normalize=False,
    )
    torch.manual_seed(0)
    model = EncodecModel(cfg)
    for layer in model.quantizer.layers:  # random init leaves the codebooks at zero: spread them out
        layer.codebook.embed.normal_(0, 0.1)
    d = tmp_path_factory.mktemp("encodec")
    model.save_pretrained(d)
    return d


def test_codes_shape_rate_and_range(model_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = load_encodec(model_dir, bandwidth=6.0)
    assert (enc.sample_rate, enc.frame_rate, enc.num_codebooks, enc.codebook_size) == (24000, 75.0, 8, 1024)
    torch.manual_seed(1)
    lengths = torch.tensor([24000, 16000, 12345])
    wavs = 0.1 * torch.randn(3, 24000) * (torch.arange(24000)[None] < lengths[:, None])
    codes = enc.encode(wavs, lengths)
    assert [c.shape for c in codes] == [(75, 8), (50, 8), (39, 8)]  # round(n * 75 / 24000)
    assert all(c.dtype == np.int64 and c.min() >= 0 and c.max() < 1024 for c in codes)
    assert len(np.unique(codes[0])) > 1
    alone = enc.encode(wavs[2:, :12345], lengths[2:])[0]
    assert np.array_equal(alone, codes[2])  # padding in a batch does not change the codes
    assert enc.encode(wavs[:1], lengths[:1], fit=False)[0].shape == (75, 8)


def test_bandwidth_sets_the_number_of_codebooks(model_dir):
    assert load_encodec(model_dir, bandwidth=3.0).num_codebooks == 4
    with pytest.raises(EncodecError, match=r"bandwidth 7 kbps is not offered"):
        load_encodec(model_dir, bandwidth=7.0)


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(EncodecError, match="no config.json.*never contacted"):
        load_encodec(tmp_path / "nope")


def test_cli_label_encodec_writes_codes_that_read_back(model_dir, tmp_path, capsys):
    from audiossl.audio.io import save_audio
    from audiossl.cli.main import main
    from audiossl.data.frame_labels import read_frame_labels
    from audiossl.data.manifest import Manifest, Row, write_manifest

    rng = np.random.default_rng(0)
    save_audio(tmp_path / "a.wav", (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    save_audio(tmp_path / "b.wav", (0.1 * rng.standard_normal(36000)).astype(np.float32), 24000)
    (tmp_path / "c.wav").write_bytes(b"")
    write_manifest(Manifest(tmp_path, [Row("a.wav", 16000), Row("b.wav", 36000), Row("c.wav", 1)]), tmp_path / "train.tsv")
    rc = main(["tokenizer", "label", "encodec", str(model_dir), str(tmp_path / "train.tsv")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "c.wav: empty" in out and "skipped 1 unreadable file(s)" in out
    codes, info = read_frame_labels(tmp_path / "train.encodec")
    assert (info.frame_rate, info.num_codebooks, info.num_classes, info.tokenizer["kind"]) == (75.0, 8, 1024, "encodec")
    assert [c.shape for c in codes] == [(75, 8), (113, 8), (0, 8)]  # 16 kHz → 24 kHz; 1.5 s → round(112.5)
