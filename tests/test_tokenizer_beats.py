"""BEATs self-distilled tokenizer: teacher handling, alignment, a tiny run through the shared trainer,
`label beats`, the upstream view, and the CLI help."""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from audiossl.audio.io import save_audio
from audiossl.data.manifest import Manifest, Row, write_manifest
from audiossl.models.patch_frontend import num_patch_frames
from audiossl.tokenizers.beats.model import BeatsTokenizer, align_teacher, beats_tokenizer_tiny
from tests.golden import RTOL, golden_threads

SR = 16000
LENS = [8000, 9600, 11200, 12800, 14400, 16000, 12000, 10400]
# Recorded from this test's run (CPU, fp32, seed 0; see tests/golden.py); a change means training changed.
GOLDEN = [1.0496261914571126, 1.0495094060897827, 0.7573884328206381, 0.47975385189056396]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    from audiossl.models.checkpoint import save_checkpoint
    from audiossl.models.hubert.model import HubertModel, hubert_tiny

    torch.manual_seed(0)
    return save_checkpoint(HubertModel(hubert_tiny()), tmp_path_factory.mktemp("teacher"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    rows = []
    for i, n in enumerate(LENS):
        t = np.arange(n) / SR
        w = 0.3 * np.sin(2 * np.pi * (150 + 60 * i) * t * (1 + t)) + 0.05 * rng.standard_normal(n)
        save_audio(d / "wav" / f"utt{i}.wav", w.astype(np.float32), SR)
        rows.append(Row(f"wav/utt{i}.wav", n))
    write_manifest(Manifest(d, rows), d / "train.tsv")
    return d


def _model(teacher: Path | str = "", **kw) -> BeatsTokenizer:
    torch.manual_seed(0)
    return BeatsTokenizer(beats_tokenizer_tiny(teacher=str(teacher), **kw))


def test_teacher_is_frozen_and_outside_state_dict_and_parameters(teacher):
    model = _model(teacher)
    n_params, keys = len(list(model.parameters())), set(model.state_dict())
    wavs = torch.randn(2, 12800) * 0.1
    out = model(wavs, torch.tensor([12800, 9000]))
    assert len(list(model.parameters())) == n_params and set(model.state_dict()) == keys
    assert not any("teacher" in k for k in keys)
    up = model.teacher(wavs.device)
    assert all(not p.requires_grad for p in up.parameters()) and not up.training
    out.loss.backward()
    assert all(p.grad is None for p in up.parameters())
    assert out.codes.shape == (2, 4, 8) and out.lengths.tolist() == [4, num_patch_frames(9000)]
    assert model.encoder.frame_rate == 6.25 and model.encoder.num_frames(12800) == 4
    for name in ("cos_loss", "commit_loss", "codebook_usage", "perplexity"):
        assert out.extra_losses[name].shape == ()


def test_missing_teacher_and_wrong_teacher_dim_are_explained(teacher):
    with pytest.raises(ValueError, match="no teacher configured"):
        _model("")(torch.randn(1, 8000))
    with pytest.raises(ValueError, match="teacher_dim=128"):
        _model(teacher, teacher_dim=64)(torch.randn(1, 8000))
    # labelling never needs the teacher
    codes, frames = _model("").eval().tokenize(torch.randn(1, 8000))
    assert codes.shape == (1, 3, 8) and frames.tolist() == [num_patch_frames(8000)] == [3]


def test_align_teacher_mean_pools_frames_onto_patch_steps():
    # 50 Hz teacher whose frame j holds the value j: step t averages frames 8t .. 8t+7
    t_t = torch.arange(40, dtype=torch.float32)[None, :, None].repeat(2, 1, 3)
    out = align_teacher(t_t, torch.tensor([40, 20]), 50.0, 5, 6.25)
    assert torch.allclose(out[0, :, 0], torch.tensor([3.5, 11.5, 19.5, 27.5, 35.5]))
    assert torch.allclose(out[1, :2, 0], torch.tensor([3.5, 11.5]))
    assert out[1, 2, 0] == 17.5  # only frames 16..19 are valid for item 1: their mean
    assert out[1, 4, 0] == 19.0  # past the teacher's end: its last valid frame
    # slower teacher (2 Hz): empty steps take the nearest frame
    slow = torch.arange(4, dtype=torch.float32)[None, :, None]
    out = align_teacher(slow, torch.tensor([4]), 2.0, 12, 6.25)
    assert out[0, :, 0].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


@pytest.mark.skipif(importlib.util.find_spec("audiossl.models.beats.model") is None, reason="BEATs model not built yet")
def test_beats_teacher_gives_per_patch_targets(tmp_path):
    from audiossl.upstream.load import load_upstream
    from audiossl.models.beats.model import build_beats, beats_tiny
    from audiossl.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    ckpt = save_checkpoint(build_beats(beats_tiny()), tmp_path / "beats")
    up = load_upstream(str(ckpt))
    wavs, lengths = torch.randn(2, 12800) * 0.1, torch.tensor([12800, 8000])
    per_patch = up.model(wavs, lengths).hidden_states[-1]  # [B, T·8, D]
    pooled = up(wavs, lengths).hidden_states[-1]  # [B, T, D]
    auto = _model(ckpt, teacher_dim=up.hidden_dim).teacher_targets(wavs, lengths, 4)
    assert auto.shape == (2, 32, up.hidden_dim) and torch.allclose(auto, per_patch.float(), atol=1e-5)
    time = _model(ckpt, teacher_dim=up.hidden_dim, teacher_layout="time").teacher_targets(wavs, lengths, 4)
    band = time.view(2, 4, 8, -1)[:, :, 3]
    assert torch.allclose(band[0], pooled[0].float(), atol=1e-5)
    assert torch.allclose(band[1, :3], pooled[1, :3].float(), atol=1e-5)  # item 1 has 3 valid steps
    with pytest.raises(ValueError, match="needs a BEATs teacher"):
        _model("mfcc", teacher_dim=load_upstream("mfcc").hidden_dim, teacher_layout="patch").teacher_targets(wavs, lengths, 4)


def test_tokenize_is_padding_invariant():
    model = _model("").eval()
    wavs = torch.randn(2, 16000) * 0.1
    batch, frames = model.tokenize(wavs, torch.tensor([16000, 11000]))
    single, _ = model.tokenize(wavs[1:, :11000])
    assert torch.equal(batch[1, : frames[1]], single[0])


def test_on_metrics_warns_when_usage_collapses(caplog):
    from audiossl.tokenizers.beats import family as fam

    with caplog.at_level(logging.WARNING):
        fam.on_metrics({"codebook_usage": 0.5, "perplexity": 400.0})
        assert not caplog.records
        fam.on_metrics({"codebook_usage": 0.03, "perplexity": 4.0})
    assert "codebook usage collapsed: 3.0%" in caplog.text


def _train_args(corpus: Path, teacher: Path, out: Path, *extra: str) -> argparse.Namespace:
    from audiossl.cli import tokenizer_beats

    p = argparse.ArgumentParser()
    tokenizer_beats.add_train_arguments(p, "beats")
    over = [
        "data.max_tokens=40000", "data.max_sample_size=12800", "data.min_sample_size=5120", "data.num_workers=0",
        "max_steps=4", "optim.warmup_steps=2", "optim.lr=1e-3", "checkpoint_every=2", "log_every=1", "validate_every=null",
        "tensorboard=false", "seed=0", "amp=fp32", *extra,
    ]
    root = Path(__file__).resolve().parents[1]
    argv = ["--config", str(root / "recipes/beats/tokenizer_tiny.yaml"), "--teacher", str(teacher), "--manifest-dir", str(corpus), "--out", str(out)]
    a = p.parse_args(argv + over)
    a.action, a.kind = "train", "beats"
    return a


@pytest.fixture(scope="module")
def trained(corpus, teacher, tmp_path_factory) -> Path:
    from audiossl.cli.tokenizer_beats import run_train

    out = tmp_path_factory.mktemp("run")
    with golden_threads():
        assert run_train(_train_args(corpus, teacher, out)) == 0
    return out


@pytest.mark.golden
def test_tiny_run_through_the_shared_trainer(trained, teacher):
    lines = [json.loads(l) for l in (trained / "metrics" / "train.jsonl").read_text().splitlines()]
    assert [r["Step"] for r in lines] == [1, 2, 3, 4]
    for r in lines:
        assert {"Loss", "Cosine Loss", "Commitment Loss", "Codebook Usage", "Codebook Perplexity"} <= set(r)
        assert 0.0 < r["Codebook Usage"] <= 1.0 and r["Codebook Perplexity"] >= 1.0
    losses = [r["Loss"] for r in lines]
    assert all(np.isfinite(losses))
    assert np.allclose(losses, GOLDEN, rtol=RTOL, atol=0), losses  # 4-step golden trace
    meta = json.loads((trained / "checkpoint" / "config.json").read_text())
    assert meta["family"] == "beats_tokenizer" and meta["frame_rate"] == 6.25
    assert meta["config"]["teacher"] == str(teacher.resolve()) and meta["config"]["teacher_dim"] == 128
    from safetensors import safe_open

    with safe_open(str(trained / "checkpoint" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
        assert bool(f.get_tensor("quantizer.initialised"))
    assert "quantizer.codebook" in keys and not any(k.startswith(("teacher", "_teacher")) for k in keys)


def test_label_beats_writes_codes_that_differ_from_random_projection(trained, corpus, capsys):
    from audiossl.cli import tokenizer_beats
    from audiossl.data.frame_labels import read_frame_labels

    results = {}
    for kind, ext, extra in (("beats", "bt", [str(trained / "checkpoint")]), ("random-projection", "rp", [])):
        p = argparse.ArgumentParser()
        tokenizer_beats.add_label_arguments(p, kind)
        a = p.parse_args(extra + [str(corpus / "train.tsv"), "--ext", ext, "--batch-size", "3"])
        a.action, a.kind = "label", kind
        assert tokenizer_beats.run_label(a) == 0
        results[kind] = read_frame_labels(corpus / f"train.{ext}")
    assert "labelled 8 of 8 rows" in capsys.readouterr().out
    labels, info = results["beats"]
    assert info.frame_rate == 6.25 and info.num_codebooks == 8 and info.num_classes == 1024
    assert info.tokenizer["kind"] == "beats" and info.tokenizer["checkpoint"] == str((trained / "checkpoint").resolve())
    assert [l.shape for l in labels] == [(num_patch_frames(n), 8) for n in LENS]
    rp = results["random-projection"][0]
    same = np.mean(np.concatenate([(a == b).ravel() for a, b in zip(labels, rp)]))
    assert same < 0.2, f"iteration-2 codes equal the random-projection codes at {same:.0%} of patches"


def test_checkpoint_loads_as_an_upstream(trained):
    from audiossl.upstream.load import load_upstream

    up = load_upstream(str(trained / "checkpoint"))
    out = up(torch.randn(2, 16000) * 0.1, torch.tensor([16000, 8000]))
    assert up.frame_rate == 6.25 and up.num_layers == 3 and len(out.hidden_states) == 3
    assert out.hidden_states[-1].shape == (2, 6, 128) and out.lengths.tolist() == [6, 3]


def test_export_to_the_released_tokenizer_layout_round_trips(trained, tmp_path, capsys):
    """`audiossl export CKPT --to beats OUT.pt` writes unilm's Tokenizers layout; it reloads as
    ``beats_tokenizer:<file>`` with the same codebook state and the same codes."""
    from audiossl.cli import export
    from audiossl.tokenizers.beats.checkpoint import load_beats_tokenizer
    from audiossl.tokenizers.beats.family import load_pretrain_checkpoint

    p = argparse.ArgumentParser()
    export.add_arguments(p)
    out = tmp_path / "Tokenizer_ours.pt"
    assert export.run(p.parse_args([str(trained / "checkpoint"), "--to", "beats", str(out)])) == 0
    saved = torch.load(out, map_location="cpu", weights_only=True)
    assert {"quantize.embedding.weight", "quantize.embedding.initted", "quantize.cluster_size", "quantize_layer.0.weight",
            "patch_embedding.weight", "encoder.pos_conv.0.weight_g"} <= set(saved["model"])
    assert not any(k.startswith(("estimator", "quantizer.")) for k in saved["model"])
    ours, back = load_pretrain_checkpoint(trained / "checkpoint"), load_beats_tokenizer(out)
    for name, buf in ours.quantizer.state_dict().items():
        assert torch.equal(back.quantizer.state_dict()[name], buf), name
    wavs, lengths = torch.randn(3, 16000) * 0.1, torch.tensor([16000, 12000, 7000])
    a, fa = ours.tokenize(wavs, lengths)
    b, fb = back.tokenize(wavs, lengths)
    assert torch.equal(fa, fb) and torch.equal(a, b)


def test_train_refuses_a_recipe_of_another_family(corpus, teacher, tmp_path, capsys):
    from audiossl.cli.tokenizer_beats import run_train

    a = _train_args(corpus, teacher, tmp_path / "x")
    a.config = Path(__file__).resolve().parents[1] / "recipes/hubert/tiny.yaml"
    assert run_train(a) == 2
    assert "needs a beats_tokenizer recipe" in capsys.readouterr().err
    a = _train_args(corpus, tmp_path / "no_such_teacher", tmp_path / "y")
    assert run_train(a) == 2
    assert "--teacher" in capsys.readouterr().err


def test_help_of_every_beats_tokenizer_command():
    from audiossl.cli import tokenizer_beats

    for action, kind, must in (
        ("train", "beats", ["--teacher", "--manifest-dir", "--teacher-layout"]),
        ("label", "random-projection", ["--seed", "--num-codes", "--save", "--batch-size"]),
        ("label", "beats", ["checkpoint", "--ext", "--device"]),
    ):
        p = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        getattr(tokenizer_beats, f"add_{action}_arguments")(p, kind)
        text = p.format_help()
        for opt in must:
            assert opt in text, (action, kind, opt)
        for act in p._actions:
            assert act.help, f"{action} {kind}: {act.dest} has no help"


@pytest.mark.skipif(importlib.util.find_spec("audiossl.cli.tokenizer_rvq") is None, reason="tokenizer_rvq not built yet")
def test_help_through_the_audiossl_command(capsys):
    from audiossl.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["tokenizer", "train", "beats", "--help"])
    assert e.value.code == 0 and "--teacher" in capsys.readouterr().out


def test_stopped_and_resumed_run_continues_the_same_trace(trained, corpus, teacher, tmp_path):
    """Issue #9: the tokenizer trainer resumes exactly (codebook buffers, EMA state, RNG, data position)."""
    from audiossl.cli.tokenizer_beats import run_train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_train(_train_args(corpus, teacher, tmp_path, "stop_after_steps=2")) == 0
        assert not (tmp_path / "checkpoint").exists()
        assert run_train(_train_args(corpus, teacher, tmp_path)) == 0
    finally:
        torch.set_num_threads(threads)
    got = {r["Step"]: r["Loss"] for r in map(json.loads, (tmp_path / "metrics" / "train.jsonl").read_text().splitlines())}
    want = {r["Step"]: r["Loss"] for r in map(json.loads, (trained / "metrics" / "train.jsonl").read_text().splitlines())}
    assert sorted(got) == [1, 2, 3, 4]
    for step in want:
        assert got[step] == pytest.approx(want[step], rel=1e-6), step


def test_raw_patch_encoder_is_a_named_option(teacher):
    """Our earlier tokenizer encoder (LN'd raw patch + band embedding → HuBERT-style transformer → Linear)."""
    model = _model(teacher, encoder_type="raw_patch", codebook_update="laplace", dead_code_threshold=0.03)
    assert "encoder.band_emb" in model.state_dict() and "encoder.patch_embedding.weight" not in model.state_dict()
    out = model(torch.randn(2, 12800) * 0.1, torch.tensor([12800, 9000]))
    assert out.codes.shape == (2, 4, 8) and torch.isfinite(out.loss)
    with pytest.raises(ValueError, match="encoder_type"):
        beats_tokenizer_tiny(encoder_type="conv")


def test_configs_saved_before_the_unilm_defaults_keep_their_encoder():
    from audiossl.tokenizers.beats.model import BeatsTokenizerConfig

    old = {k: v for k, v in beats_tokenizer_tiny().to_dict().items() if k not in ("encoder_type", "codebook_update")}
    cfg = BeatsTokenizerConfig.from_dict(old)
    assert cfg.encoder_type == "raw_patch" and cfg.codebook_update == "laplace"
    assert BeatsTokenizerConfig.from_dict(beats_tokenizer_tiny().to_dict()) == beats_tokenizer_tiny()
