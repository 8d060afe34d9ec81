"""RVQ-VAE tokenizer: shapes and frame counts, training through the shared trainer on the demo
music (reconstruction improves, every code of every level in use), checkpoint round trip and
upstream, and the `tokenizer train/label rvq` CLI."""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from audiossl.tokenizers.rvq.vae import RVQVAEConfig, build_rvq_vae, rvq_base, rvq_tiny, train_flops_per_second

STEPS = 80
CODES = 16


def test_shapes_frame_rate_and_padding():
    torch.manual_seed(0)
    model = build_rvq_vae(rvq_tiny())
    assert model.encoder.frame_rate == 75.0 and model.cfg.hop == 320
    wavs = 0.1 * torch.randn(2, 7000)
    lengths = torch.tensor([7000, 5000])
    wavs[1, 5000:] = 0
    out = model(wavs, lengths)
    assert out.codes.shape == (2, model.encoder.num_frames(7000), 8) == (2, 22, 8)
    assert out.recon.shape == wavs.shape and float(out.recon[1, 5000:].detach().abs().max()) == 0.0
    assert set(out.extra_losses) == {"stft_loss", "wave_l1", "commitment", "codebook_usage", "codebook_perplexity"}
    assert all(v.dim() == 0 for v in out.extra_losses.values()) and out.loss.dim() == 0
    out.loss.backward()
    assert all(p.grad is not None for p in model.encoder.parameters())
    assert model.encoder.num_frames(1) == 1 and model.encoder.num_frames(320) == 1 and model.encoder.num_frames(321) == 2
    model.eval()
    assert model.encode(wavs).shape == (2, 22, 8) and model.decode(model.encode(wavs)).shape == (2, 22 * 320)


def test_config_round_trip_and_flops():
    cfg = rvq_tiny(codebook_size=32)
    assert RVQVAEConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert rvq_base().num_classes == 1024 and rvq_base().num_codebooks == 8
    assert train_flops_per_second(rvq_base()) > train_flops_per_second(rvq_tiny()) > 0
    with pytest.raises(ValueError, match="codebook_size"):
        rvq_tiny(codebook_size=1)


@contextlib.contextmanager
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # reproducible CPU kernels, and no oversubscription of the shared cores
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    from audiossl.data.synth.corpus import synthesize

    d = tmp_path_factory.mktemp("demo")
    synthesize(d, size="tiny", tasks=["music_notes"], progress=False)
    return d / "music" / "notes"


@pytest.fixture(scope="module")
def trained(demo, tmp_path_factory):
    from fairseq2.device import Device
    from fairseq2.gang import create_fake_gangs

    from audiossl.pretrain.config import load_config
    from audiossl.pretrain.trainer import RunPaths, run_pretraining

    cfg = load_config(Path(__file__).parents[1] / "recipes" / "mert" / "rvq_tiny.yaml", [
        f"max_steps={STEPS}", f"model.codebook_size={CODES}", "data.max_sample_size=6080", "data.max_tokens=48640",
        "log_every=10", f"checkpoint_every={STEPS}", f"validate_every={STEPS}", "tensorboard=false", "seed=0", "amp=fp32",
    ])
    out = tmp_path_factory.mktemp("run")
    with _one_thread():
        result = run_pretraining(cfg, RunPaths(demo, "train", None, out), gangs=create_fake_gangs(Device("cpu")))
    return out, result


def _codes_of(model, tsv: Path) -> np.ndarray:
    from audiossl.audio.io import load_audio
    from audiossl.data.manifest import read_manifest

    return np.concatenate([model.encode(load_audio(p, 24000)[0][None])[0].numpy() for p in read_manifest(tsv).paths()])


def test_training_improves_reconstruction_and_uses_every_code(trained, demo):
    from audiossl.tokenizers.rvq.family import load_pretrain_checkpoint

    out, result = trained
    assert result.step_nr == STEPS and result.checkpoint_dir == out / "checkpoint"
    lines = [json.loads(l) for l in (out / "metrics" / "train.jsonl").read_text().splitlines()]
    stft = [l["STFT Loss"] for l in lines]
    assert len(stft) == STEPS // 10 and stft[-1] < 0.9 * stft[0], stft
    assert all("Codebook Usage" in l and "Commitment" in l for l in lines)
    model = load_pretrain_checkpoint(result.checkpoint_dir)
    codes = _codes_of(model, demo / "train.tsv")
    used = [len(np.unique(codes[:, i])) / CODES for i in range(8)]
    assert min(used) >= 0.75, used  # dead-code restart keeps every level's codebook in use


def test_checkpoint_round_trip_and_upstream(trained):
    from audiossl.upstream.load import load_upstream
    from audiossl.models.checkpoint import CheckpointError
    from audiossl.tokenizers.rvq.family import load_pretrain_checkpoint

    ckpt = trained[0] / "checkpoint"
    a, b = load_pretrain_checkpoint(ckpt), load_pretrain_checkpoint(ckpt)
    wav = 0.1 * torch.randn(1, 9000)
    assert torch.equal(a.encode(wav), b.encode(wav))
    assert all(lvl._initialized for lvl in a.quantizer.levels)
    up = load_upstream(str(ckpt))
    o = up(wav)
    assert up.frame_rate == 75.0 and len(o.hidden_states) == 2 and o.hidden_states[0].shape == (1, 29, 32)
    with pytest.raises(CheckpointError, match="family is 'rvq'"):
        from audiossl.models.checkpoint import read_meta

        read_meta(ckpt, family="hubert")


def _parser(action: str, kind: str) -> argparse.ArgumentParser:
    from audiossl.cli import tokenizer_rvq

    p = argparse.ArgumentParser(prog=f"tokenizer {action} {kind}")
    getattr(tokenizer_rvq, f"add_{action}_arguments")(p, kind)
    p.set_defaults(action=action, kind=kind)
    return p


def test_cli_help_lists_every_option_with_help(capsys):
    for action, kind in [("train", "rvq"), ("label", "rvq"), ("label", "encodec")]:
        p = _parser(action, kind)
        assert all(a.help for a in p._actions)
        with pytest.raises(SystemExit):
            p.parse_args(["--help"])
    text = capsys.readouterr().out
    assert "--student-frame-rate" in text and "model_dir" in text and "checkpoint" in text


def test_cli_label_writes_checked_codes_and_reports_bad_audio(trained, demo, tmp_path, capsys):
    from audiossl.cli.tokenizer_rvq import run_label
    from audiossl.data.frame_labels import read_frame_labels
    from audiossl.data.manifest import Manifest, read_manifest, write_manifest

    m = read_manifest(demo / "valid.tsv")
    from audiossl.audio.io import save_audio

    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"not audio at all")
    at16k = tmp_path / "tone16k.wav"
    save_audio(at16k, 0.3 * np.sin(np.arange(16000) * 0.05).astype(np.float32), 16000)
    tsv = tmp_path / "valid.tsv"
    Row = type(m.rows[0])
    write_manifest(Manifest(demo, m.rows + [Row(str(at16k), 16000), Row(str(bad), 100)]), tsv)
    args = _parser("label", "rvq").parse_args([str(trained[0] / "checkpoint"), str(tsv), "--batch-size", "3", "--chunk-seconds", "1"])
    assert run_label(args) == 0
    printed = capsys.readouterr().out
    assert f"{bad}: unreadable" in printed and "skipped 1 unreadable file(s)" in printed
    codes, info = read_frame_labels(tmp_path / "valid.rvq")
    assert (info.frame_rate, info.num_codebooks, info.num_classes, info.tokenizer["kind"]) == (75.0, 8, CODES, "rvq")
    assert len(codes) == len(m) + 2 and codes[-1].shape == (0, 8)
    assert codes[0].shape == (int(m.rows[0].num_samples / 320 + 0.5), 8)  # the demo music is at 24 kHz
    assert codes[-2].shape == (75, 8)  # 1 s at 16 kHz, resampled to 24 kHz: 75 frames
    # a 50 Hz student refuses these codes before anything is computed
    args = _parser("label", "rvq").parse_args([str(trained[0] / "checkpoint"), str(tsv), "--out", str(tmp_path / "x.rvq"), "--student-frame-rate", "50"])
    assert run_label(args) == 2
    assert "75 Hz but the student runs at 50 Hz" in capsys.readouterr().out and not (tmp_path / "x.rvq").exists()


def test_cli_train_refuses_another_family_and_runs_a_short_rvq_run(demo, tmp_path, capsys):
    from audiossl.cli.main import main

    root = Path(__file__).parents[1]
    args = ["tokenizer", "train", "rvq", "--manifest-dir", str(demo), "--out", str(tmp_path / "x")]
    assert main(args + ["--config", str(root / "recipes" / "hubert" / "tiny.yaml")]) == 2
    assert "model.family is 'hubert'" in "".join(capsys.readouterr())
    args = ["tokenizer", "train", "rvq", "--config", str(root / "recipes" / "mert" / "rvq_tiny.yaml"), "--manifest-dir", str(demo),
            "--out", str(tmp_path / "run"), "--max-steps", "2", "log_every=1", "checkpoint_every=2", "tensorboard=false",
            "data.max_sample_size=3200", "data.min_sample_size=3200", "data.max_tokens=12800"]
    assert main(args) == 0
    assert "final model:" in capsys.readouterr().out and (tmp_path / "run" / "checkpoint" / "model.safetensors").is_file()


def test_on_metrics_warns_when_codebook_usage_collapses(caplog):
    from audiossl.tokenizers.rvq import family as rvq_family

    assert rvq_family.METRICS == ("loss",) and "codebook_usage" in rvq_family.EXTRA_METRICS
    with caplog.at_level("WARNING", logger="audiossl.tokenizers.rvq.family"):
        rvq_family.on_metrics({"codebook_usage": 0.97})
        assert not caplog.records
        rvq_family.on_metrics({"codebook_usage": 0.2})
    assert "codebook usage 20.0%" in caplog.text


def test_bf16_autocast_forward_is_finite():
    torch.manual_seed(0)
    model = build_rvq_vae(rvq_tiny())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(0.1 * torch.randn(2, 3200))
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.codes.dtype == torch.int64
    assert all(lvl.codebook.dtype == torch.float32 for lvl in model.quantizer.levels)


def test_resume_continues_the_identical_loss_trace(demo, tmp_path):
    """Codebooks, EMA counts and the 'initialised' flag are model state: a resumed run matches a straight one."""
    from fairseq2.device import Device
    from fairseq2.gang import create_fake_gangs

    from audiossl.pretrain.config import load_config
    from audiossl.pretrain.trainer import RunPaths, run_pretraining

    def run(out: Path, *extra: str) -> list[float]:
        cfg = load_config(Path(__file__).parents[1] / "recipes" / "mert" / "rvq_tiny.yaml", [
            "max_steps=4", "log_every=1", "checkpoint_every=2", "tensorboard=false", "seed=0", "amp=fp32",
            "data.max_sample_size=3200", "data.min_sample_size=3200", "data.max_tokens=12800", *extra,
        ])
        with _one_thread():
            run_pretraining(cfg, RunPaths(demo, "train", None, out), gangs=create_fake_gangs(Device("cpu")))
        return [json.loads(l)["Loss"] for l in (out / "metrics" / "train.jsonl").read_text().splitlines()]

    straight = run(tmp_path / "a")
    run(tmp_path / "b", "stop_after_steps=2")
    resumed = run(tmp_path / "b")
    assert len(straight) == 4 and resumed == pytest.approx(straight, rel=1e-5)
