"""The validator reports every bad file with its reason and lets the run go on."""

import numpy as np
import pytest
import soundfile as sf
import torch

from audiossl.audio.io import AudioError, load_audio, save_audio
from audiossl.audio.validate import ValidationConfig, check_file, validate_files


def _tone(seconds=0.5, sr=16000, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.fixture
def bad_tree(tmp_path):
    files = {}
    sf.write(tmp_path / "good.wav", _tone(), 16000)
    files["good"] = tmp_path / "good.wav"
    (tmp_path / "empty.wav").write_bytes(b"")
    files["empty"] = tmp_path / "empty.wav"
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 10)
    files["corrupt"] = tmp_path / "corrupt.wav"
    (tmp_path / "notaudio.wav").write_text("this is a text file renamed to .wav\n" * 20)
    files["notaudio"] = tmp_path / "notaudio.wav"
    sf.write(tmp_path / "full.wav", _tone(1.0), 16000)
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "truncated.wav").write_bytes(data[: len(data) // 3])
    files["truncated"] = tmp_path / "truncated.wav"
    sf.write(tmp_path / "stereo.wav", _tone(channels=2), 16000)
    files["stereo"] = tmp_path / "stereo.wav"
    sf.write(tmp_path / "rate8k.wav", _tone(sr=8000), 8000)
    files["rate8k"] = tmp_path / "rate8k.wav"
    x = _tone()
    x[100] = np.nan
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    files["nan"] = tmp_path / "nan.wav"
    sf.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    files["silent"] = tmp_path / "silent.wav"
    sf.write(tmp_path / "short.wav", _tone(0.01), 16000)
    files["short"] = tmp_path / "short.wav"
    files["missing"] = tmp_path / "missing.wav"
    return files


def test_every_bad_file_reported_and_run_completes(bad_tree):
    cfg = ValidationConfig(expected_sample_rate=16000, min_duration=0.1)
    report = validate_files(bad_tree.values(), cfg)
    reasons = {}
    for p in report.problems:
        reasons.setdefault(p.path, set()).add(p.reason)
    r = {k: reasons.get(str(v), set()) for k, v in bad_tree.items()}
    assert r["good"] == set()
    assert r["empty"] == {"empty"}
    assert r["corrupt"] == {"unreadable"}
    assert r["notaudio"] == {"unreadable"}
    assert r["truncated"] == {"truncated"}
    assert r["stereo"] == {"channels"}
    assert r["rate8k"] == {"sample_rate"}
    assert r["nan"] == {"non_finite"}
    assert r["silent"] == {"silent"}
    assert r["short"] == {"too_short"}
    assert r["missing"] == {"missing"}
    # Warnings keep the file; fatal problems skip it.
    good = set(report.good)
    for k in ("good", "stereo", "rate8k", "silent"):
        assert str(bad_tree[k]) in good
    for k in ("empty", "corrupt", "notaudio", "truncated", "nan", "short", "missing"):
        assert str(bad_tree[k]) in report.skipped
    s = report.summary()
    assert "skipped" in s and "non_finite=1" in s


def test_truncated_file_is_reported(bad_tree):
    # libsndfile reads a WAV whose data chunk is cut short up to the cut, and the header then
    # claims more frames than decode: the validator must not call that file good silently.
    probs = check_file(bad_tree["truncated"])
    assert [p.reason for p in probs] == ["truncated"]
    cut = bad_tree["good"].with_name("cut.flac")
    sf.write(cut, _tone(1.0), 16000)
    cut.write_bytes(cut.read_bytes()[: len(cut.read_bytes()) // 2])
    assert check_file(cut)[0].reason in {"unreadable", "truncated"}


def test_parallel_validation_matches_serial(bad_tree):
    paths = list(bad_tree.values()) * 10
    a = validate_files(paths, num_workers=1, log_problems=False)
    b = validate_files(paths, num_workers=2, log_problems=False)
    assert a.good == b.good
    assert sorted(map(str, a.problems)) == sorted(map(str, b.problems))


def test_load_audio_mono_resample_and_errors(bad_tree, tmp_path):
    wav, sr = load_audio(bad_tree["stereo"])
    assert wav.ndim == 1 and sr == 16000 and wav.dtype == torch.float32
    wav, sr = load_audio(bad_tree["rate8k"], 16000)
    assert sr == 16000 and abs(wav.numel() - 8000) <= 2  # 0.5 s at 16 kHz
    for name, reason in [("empty", "empty"), ("corrupt", "unreadable"), ("nan", "non_finite"), ("missing", "missing")]:
        with pytest.raises(AudioError) as e:
            load_audio(bad_tree[name])
        assert e.value.reason == reason and str(bad_tree[name]) in str(e.value)


def test_save_audio_roundtrip(tmp_path):
    x = torch.from_numpy(_tone())
    save_audio(tmp_path / "a.flac", x, 16000)
    y, sr = load_audio(tmp_path / "a.flac")
    assert sr == 16000 and torch.allclose(x, y, atol=1e-4)
    assert not list(tmp_path.glob(".*.tmp"))
