"""MFCC / fbank / CQT functions, the manifest → FeatureStore dump, and the `features` CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from torchaudio.compliance import kaldi

from audiossl.audio.features import FeatureError, cqt, fbank, get_feature, mfcc
from audiossl.data.feature_store import FeatureStore
from audiossl.data.manifest import Manifest, Row, write_manifest
from audiossl.features import dump as dump_mod
from audiossl.features.dump import dump_features

SR = 16000


def _tone(n: int, sr: int = SR, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / sr
    return (0.3 * torch.sin(2 * math.pi * 220 * t) + 0.05 * torch.randn(n, generator=g)).float()


# --- library functions -------------------------------------------------------------------------


def test_mfcc_matches_fairseq_recipe():
    x = _tone(12345)
    ref = kaldi.mfcc(waveform=x.view(1, -1), sample_frequency=SR, use_energy=False).transpose(0, 1)
    d = torchaudio.functional.compute_deltas(ref)
    dd = torchaudio.functional.compute_deltas(d)
    ref = torch.cat([ref, d, dd], dim=0).transpose(0, 1)
    out = mfcc(x, SR)
    assert out.shape == (1 + (12345 - 400) // 160, 39)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    # the deltas are real deltas, not copies of the static part
    assert not torch.allclose(out[:, 13:26], out[:, :13])


@pytest.mark.parametrize("bins", [80, 128])
def test_fbank_matches_kaldi(bins):
    x = _tone(8000, seed=1)
    ref = kaldi.fbank(x[None], sample_frequency=SR, num_mel_bins=bins)
    out = fbank(x, SR, num_mel_bins=bins)
    assert out.shape == (1 + (8000 - 400) // 160, bins)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


@pytest.mark.parametrize("n", [400, 401, 559, 560, 16000, 16161])
def test_kaldi_frame_counts(n):
    x = _tone(n)
    expected = 1 + (n - 400) // 160
    assert mfcc(x).shape == (expected, 39)
    assert fbank(x).shape == (expected, 80)
    for name in ("mfcc", "fbank"):
        assert get_feature(name).num_frames(n) == expected


def test_kaldi_frames_follow_sample_rate():
    # 25 ms / 10 ms at 8 kHz = 200 / 80 samples; still 100 Hz
    x = _tone(8000, sr=8000)
    assert mfcc(x, 8000).shape == (1 + (8000 - 200) // 80, 39)
    assert get_feature("mfcc", 8000).frame_rate == 100.0


@pytest.mark.parametrize("fn,need", [(mfcc, 400), (fbank, 400)])
def test_too_short_is_a_clear_error(fn, need):
    for n in (0, 1, need - 1):
        with pytest.raises(FeatureError, match=rf"needs at least {need} samples .*25 ms window.*got {n}"):
            fn(torch.zeros(n))


def test_cqt_shape_frame_rate_and_db():
    sr, hop = 24000, 320
    x = _tone(sr, sr=sr)  # 1 s
    out = cqt(x, sr, hop_length=hop)
    assert out.shape == (1 + sr // hop, 84)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    spec = get_feature("cqt", sr, hop_length=hop)
    assert spec.frame_rate == 75.0 and spec.dim == 84 and spec.num_frames(sr) == out.shape[0]
    # 220 Hz is A3: bin 12*log2(220/32.70) ≈ 33 is the loudest in the middle of the file
    assert int(out[30:45].mean(0).argmax()) == round(12 * math.log2(220 / 32.70))
    # 16 kHz with hop 160 → 100 Hz; a different bin count
    out16 = cqt(_tone(SR), SR, hop_length=160, n_bins=72)
    assert out16.shape == (101, 72)
    assert get_feature("cqt", SR, hop_length=160, n_bins=72).frame_rate == 100.0


def test_cqt_too_short_and_bad_params():
    spec = get_feature("cqt", 24000)
    assert 0.4 * 24000 < spec.min_samples < 0.7 * 24000  # longest filter at 32.7 Hz, ~0.53 s
    with pytest.raises(FeatureError, match=rf"cqt needs at least {spec.min_samples} samples"):
        cqt(torch.zeros(spec.min_samples - 1), 24000)
    assert cqt(_tone(spec.min_samples, sr=24000), 24000).shape[1] == 84
    with pytest.raises(ValueError, match="above Nyquist"):
        cqt(_tone(16000), 8000)


def test_registry_rejects_unknown():
    with pytest.raises(ValueError, match="choose one of mfcc, fbank, cqt"):
        get_feature("spectrogram")
    with pytest.raises(ValueError, match="does not take hop_length"):
        get_feature("mfcc", hop_length=10)
    assert get_feature("fbank", num_mel_bins=128).dim == 128


# --- dump over a manifest ----------------------------------------------------------------------

LENGTHS = {"a": 16000, "b": 4321, "c": 24000, "d": 1000, "e": 8000}


def _corpus(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """Good wavs plus a corrupt, an empty, a NaN and a too-short file; returns (tsv, good lengths)."""
    wav_dir = tmp_path / "wav"
    wav_dir.mkdir()
    rows = []
    for k, (name, n) in enumerate(LENGTHS.items()):
        sf.write(wav_dir / f"{name}.wav", _tone(n, seed=k).numpy(), SR)
        rows.append(Row(f"{name}.wav", n))
    (wav_dir / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    (wav_dir / "empty.wav").write_bytes(b"")
    nan = _tone(4000).numpy()
    nan[100] = np.nan
    sf.write(wav_dir / "nan.wav", nan, SR, subtype="FLOAT")
    sf.write(wav_dir / "short.wav", _tone(300).numpy(), SR)
    rows.insert(1, Row("corrupt.wav", 100))
    rows.insert(3, Row("empty.wav", 0))
    rows.insert(5, Row("nan.wav", 4000))
    rows.append(Row("short.wav", 300))
    tsv = write_manifest(Manifest(wav_dir, rows), tmp_path / "train.tsv")
    return tsv, LENGTHS


def test_dump_skips_bad_files_and_stores_the_rest(tmp_path, caplog):
    tsv, good = _corpus(tmp_path)
    out = tmp_path / "mfcc"
    with caplog.at_level("WARNING"):
        summary = dump_features("mfcc", tsv, out, workers=2, progress=False, shard_bytes=30 * 39 * 4)
    reasons = {Path(s.path).name: s.reason for s in summary.skipped}
    assert reasons == {"corrupt.wav": "unreadable", "empty.wav": "empty", "nan.wav": "non_finite", "short.wav": "too_short"}
    assert summary.computed == len(good) and summary.reused == 0 and summary.num_rows == len(good) + 4
    assert "4 skipped" in summary.summary() and "too_short=1" in summary.summary()
    assert "nan.wav" in caplog.text and "non_finite" in caplog.text

    store = FeatureStore(out)
    assert store.ids == list(good)  # manifest order
    assert store.meta["num_shards"] > 1
    for k, (name, n) in enumerate(good.items()):
        assert store[name].shape == (1 + (n - 400) // 160, 39)
        # same values as the library function on the same (16-bit quantised) file
        wav, _ = sf.read(tmp_path / "wav" / f"{name}.wav", dtype="float32")
        np.testing.assert_allclose(store[name], mfcc(torch.from_numpy(wav)).numpy(), rtol=1e-6, atol=1e-5)
    extra = store.meta["extra"]
    assert extra["source_manifest"] == str(tsv.resolve())
    assert extra["sample_rate"] == SR and extra["feature"]["kind"] == "mfcc" and extra["num_skipped"] == 4
    assert store.frame_rate == 100.0 and store.dim == 39


def test_dump_is_the_same_for_any_worker_count(tmp_path):
    tsv, _ = _corpus(tmp_path)
    a = dump_features("fbank", tsv, tmp_path / "w1", workers=1, progress=False, num_mel_bins=40)
    b = dump_features("fbank", tsv, tmp_path / "w2", workers=2, progress=False, num_mel_bins=40)
    sa, sb = FeatureStore(a.out), FeatureStore(b.out)
    assert sa.ids == sb.ids and sa.dim == 40
    for u in sa.ids:
        np.testing.assert_array_equal(sa[u], sb[u])


def test_resume_recomputes_nothing_in_finished_shards(tmp_path, monkeypatch):
    tsv, good = _corpus(tmp_path)
    out = tmp_path / "feats"
    # ~1 utterance per shard, so an interruption leaves several finished shards
    shard_bytes = 60 * 39 * 4
    first = dump_features("mfcc", tsv, out, workers=1, progress=False, shard_bytes=shard_bytes)
    before = FeatureStore(out)
    ref = {u: np.array(before[u]) for u in before.ids}

    # simulate a crash: the final index/meta were never written and the last shard was lost
    (out / "index.tsv").unlink()
    (out / "meta.json").unlink()
    last = max(int(p.name[6:11]) for p in out.glob("shard_*.npy"))
    lost = {line.split("\t")[0] for line in (out / f"shard_{last:05d}.index.tsv").read_text().splitlines()}
    (out / f"shard_{last:05d}.npy").unlink()
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("shard_*.npy")}

    loaded: list[str] = []
    real_load = dump_mod.load_audio
    monkeypatch.setattr(dump_mod, "load_audio", lambda p, *a, **k: (loaded.append(Path(p).stem), real_load(p, *a, **k))[1])
    second = dump_features("mfcc", tsv, out, workers=1, progress=False, shard_bytes=shard_bytes)

    bad = {"corrupt", "empty", "nan", "short"}
    assert set(loaded) == lost | bad  # bad files are retried (and skipped again), nothing else
    assert second.reused == len(good) - len(lost) and second.computed == len(lost)
    assert len(second.skipped) == len(first.skipped) == 4
    for name, t in mtimes.items():
        assert (out / name).stat().st_mtime_ns == t
    after = FeatureStore(out)
    assert after.ids == list(good)
    for u in after.ids:
        np.testing.assert_array_equal(after[u], ref[u])

    # with the store complete, a rerun loads nothing but the bad files
    loaded.clear()
    third = dump_features("mfcc", tsv, out, workers=1, progress=False, shard_bytes=shard_bytes)
    assert set(loaded) == bad and third.computed == 0 and third.reused == len(good)


def test_dump_uses_kaldi_ids(tmp_path):
    tsv, good = _corpus(tmp_path)
    ids = [f"spk1-utt{i}" for i in range(len(good) + 4)]
    (tmp_path / "train.ids").write_text("".join(u + "\n" for u in ids))
    dump_features("mfcc", tsv, tmp_path / "k", workers=1, progress=False)
    store = FeatureStore(tmp_path / "k")
    assert store.ids == ["spk1-utt0", "spk1-utt2", "spk1-utt4", "spk1-utt6", "spk1-utt7"]
    assert store["spk1-utt0"].shape == (1 + (good["a"] - 400) // 160, 39)


def test_resume_with_other_params_is_refused(tmp_path):
    tsv, _ = _corpus(tmp_path)
    out = tmp_path / "fb"
    dump_features("fbank", tsv, out, workers=1, progress=False, num_mel_bins=80)
    with pytest.raises(ValueError, match="--no-resume"):
        dump_features("fbank", tsv, out, workers=1, progress=False, num_mel_bins=80, sample_rate=8000)
    s = dump_features("fbank", tsv, out, workers=1, progress=False, num_mel_bins=80, sample_rate=8000, resume=False)
    assert s.reused == 0 and FeatureStore(out).meta["extra"]["sample_rate"] == 8000


def test_dump_refuses_when_disk_is_too_small(tmp_path, monkeypatch):
    tsv, _ = _corpus(tmp_path)
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**6, 10**6 - 100, 100))
    with pytest.raises(OSError, match="not enough disk space for mfcc features"):
        dump_features("mfcc", tsv, tmp_path / "x", workers=1, progress=False)
    assert not list((tmp_path / "x").glob("shard_*"))


def test_estimate_uses_file_rate():
    spec = get_feature("fbank", 16000, num_mel_bins=80)
    # 10 s at 8 kHz = 1000 frames of 80 float32 after resampling to 16 kHz
    assert dump_mod.estimate_bytes(spec, 80000, 8000) == 1000 * 80 * 4


# --- CLI ---------------------------------------------------------------------------------------


def test_cli_cqt_and_help(tmp_path, capsys):
    from audiossl.cli.main import main

    tsv, good = _corpus(tmp_path)
    rc = main(["features", "cqt", str(tsv), str(tmp_path / "cqt"), "--workers", "1", "--no-progress",
               "--sample-rate", "16000", "--hop-length", "160", "--n-bins", "60"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "skipped: " in out and "nan.wav: non_finite" in out
    store = FeatureStore(tmp_path / "cqt")
    assert store.frame_rate == 100.0 and store.dim == 60
    # 1000, 4321 and 8000 samples are shorter than the longest CQT filter (8481 samples) at 16 kHz
    assert "e.wav: too_short: cqt needs at least 8481 samples" in out
    assert store.ids == ["a", "c"] and store["a"].shape == (1 + 16000 // 160, 60)

    with pytest.raises(SystemExit):
        main(["features", "--help"])
    help_text = capsys.readouterr().out
    for opt in ("--workers", "--sample-rate", "--num-mel-bins", "--no-resume", "--shard-mb", "--ckpt", "--layer"):
        assert opt in help_text
    assert "layer features of a trained checkpoint" in help_text


def test_cli_errors(tmp_path, caplog):
    from audiossl.cli.main import main

    tsv, _ = _corpus(tmp_path)
    assert main(["features", "model", str(tsv), str(tmp_path / "o")]) == 2
    assert "needs --ckpt CKPT_DIR and --layer N" in caplog.text
    assert main(["features", "mfcc", str(tmp_path / "missing.tsv"), str(tmp_path / "o")]) == 1
    assert "manifest not found" in caplog.text
    assert main(["features", "model", str(tsv), str(tmp_path / "o"), "--ckpt", str(tmp_path), "--layer", "1"]) == 1
    assert "not an audiossl checkpoint directory" in caplog.text


# --- layer features of a checkpoint ------------------------------------------------------------


@pytest.fixture
def tiny_ckpt(tmp_path):
    from audiossl.models.checkpoint import save_checkpoint
    from audiossl.models.hubert.model import HubertModel, hubert_tiny

    torch.manual_seed(0)
    # the model path keeps torch's threads; on a shared 2-core machine one thread is ~10x faster
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield save_checkpoint(HubertModel(hubert_tiny()), tmp_path / "ckpt")
    torch.set_num_threads(threads)


def test_model_layer_features(tmp_path, tiny_ckpt):
    from audiossl.models.checkpoint import load_model

    tsv, good = _corpus(tmp_path)
    s = dump_features("model", tsv, tmp_path / "l1", ckpt=tiny_ckpt, layer=1, device="cpu", progress=False)
    assert {Path(x.path).name: x.reason for x in s.skipped} == {
        "corrupt.wav": "unreadable", "empty.wav": "empty", "nan.wav": "non_finite", "short.wav": "too_short"}
    store = FeatureStore(tmp_path / "l1")
    model = load_model(tiny_ckpt).eval()
    assert store.dim == 128 and store.frame_rate == model.frame_rate == 50.0
    assert store.meta["extra"]["feature"]["layer"] == 1 and store.ids == list(good)
    for name, n in good.items():
        wav, _ = sf.read(tmp_path / "wav" / f"{name}.wav", dtype="float32")
        with torch.no_grad():
            ref = model(torch.from_numpy(wav)[None]).hidden_states[1][0]
        assert store[name].shape == (model.num_frames(n), 128)
        np.testing.assert_allclose(store[name], ref.numpy(), rtol=1e-4, atol=1e-4)

    # another layer into the same store is refused; layer 0 (before the transformer) elsewhere works
    with pytest.raises(ValueError, match="--no-resume"):
        dump_features("model", tsv, tmp_path / "l1", ckpt=tiny_ckpt, layer=2, progress=False)
    s0 = dump_features("model", tsv, tmp_path / "l0", ckpt=tiny_ckpt, layer=0, progress=False)
    assert s0.computed == len(good)
    assert not np.allclose(FeatureStore(tmp_path / "l0")["a"], store["a"])


def test_model_layer_out_of_range(tmp_path, tiny_ckpt):
    tsv, _ = _corpus(tmp_path)
    with pytest.raises(ValueError, match=r"layer 3 is out of range: .* has 2 transformer layers \(use 0..2"):
        dump_features("model", tsv, tmp_path / "x", ckpt=tiny_ckpt, layer=3, progress=False)
    with pytest.raises(ValueError, match="expects 16000 Hz audio"):
        dump_features("model", tsv, tmp_path / "x", ckpt=tiny_ckpt, layer=1, sample_rate=8000, progress=False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_model_layer_features_on_gpu_match_cpu(tmp_path, tiny_ckpt):
    tsv, good = _corpus(tmp_path)
    gpu = dump_features("model", tsv, tmp_path / "gpu", ckpt=tiny_ckpt, layer=2, device="cuda", progress=False)
    cpu = dump_features("model", tsv, tmp_path / "cpu", ckpt=tiny_ckpt, layer=2, device="cpu", progress=False)
    assert gpu.computed == cpu.computed == len(good)
    sg, sc = FeatureStore(tmp_path / "gpu"), FeatureStore(tmp_path / "cpu")
    for u in sc.ids:
        np.testing.assert_allclose(sg[u], sc[u], rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("family", ["beats", "mert", "wavlm"])
def test_features_model_cli_for_beats_mert_and_wavlm(tmp_path, family):
    """``audiossl features model MANIFEST OUT --ckpt <BEATs, MERT or WavLM checkpoint> --layer N``: the store
    holds layer N of the family's upstream at its own sample and frame rate."""
    from audiossl.cli.main import main
    from audiossl.audio.io import load_audio
    from audiossl.models.checkpoint import save_checkpoint
    from audiossl.upstream.load import load_upstream

    torch.manual_seed(0)
    if family == "beats":
        from audiossl.models.beats.model import beats_tiny, build_beats

        model = build_beats(beats_tiny(encoder_layers=2))
    elif family == "wavlm":
        from audiossl.models.wavlm.model import build_wavlm, wavlm_tiny

        model = build_wavlm(wavlm_tiny(num_classes=16))
    else:
        from audiossl.models.mert.model import build_mert, mert_tiny

        model = build_mert(mert_tiny(num_layers=2, num_classes=16, cqt_bins=96, cqt_bins_per_octave=24))
    ckpt = save_checkpoint(model.eval(), tmp_path / "ckpt", extra={"step": 1})
    tsv, good = _corpus(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["features", "model", str(tsv), str(tmp_path / "o"), "--ckpt", str(ckpt), "--layer", "1",
                     "--workers", "1", "--device", "cpu", "--no-progress"]) == 0
    finally:
        torch.set_num_threads(threads)
    up = load_upstream(str(ckpt))
    store = FeatureStore(tmp_path / "o")
    assert store.dim == up.hidden_dim and store.frame_rate == up.frame_rate
    assert {"a", "c"} <= set(store.ids) <= set(good) | {"short"}  # 300 samples: one MERT frame at 24 kHz
    for name in store.ids:
        wav, _ = load_audio(tmp_path / "wav" / f"{name}.wav", up.sample_rate)
        ref = up(wav[None], max_layer=1).hidden_states[1][0]
        assert store[name].shape == (up.num_frames(wav.shape[0]), up.hidden_dim)
        np.testing.assert_allclose(store[name], ref.numpy(), rtol=1e-4, atol=1e-4)
