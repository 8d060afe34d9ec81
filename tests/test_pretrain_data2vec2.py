"""data2vec 2.0 pretraining on fairseq2's Trainer (audio alone, ``labels=None``): golden 4-step loss trace,
exact resume (teacher weights included), export to a checkpoint / upstream / HF, recipes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from audiossl.audio.io import save_audio
from audiossl.data.manifest import Manifest, Row, write_manifest
from tests.golden import RTOL, golden_threads

SR = 16000
# Recorded from this test's run (CPU, fp32, seed 0; see tests/golden.py); a change means training changed.
GOLDEN = [9.711675643920898, 9.334760665893555, 8.809489250183105, 8.405009269714355]


def make_corpus(d: Path) -> Path:
    """Eight chirps of 0.3–0.6 s with a ``train.tsv`` manifest (no labels) under ``d``."""
    rng = np.random.default_rng(0)
    rows = []
    for i, n in enumerate([4800, 5200, 6000, 6400, 7200, 8000, 8800, 9600]):
        t = np.arange(n) / SR
        w = 0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t * (1 + t)) + 0.05 * rng.standard_normal(n)
        save_audio(d / "wav" / f"utt{i}.wav", w.astype(np.float32), SR)
        rows.append(Row(f"wav/utt{i}.wav", n))
    write_manifest(Manifest(d, rows), d / "train.tsv")
    return d


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


BASE = [
    "model.family=data2vec2", "model.size=tiny", "data.max_tokens=14000", "data.max_sample_size=6400",
    "data.min_sample_size=3200", "data.num_workers=0", "max_steps=4", "optim.warmup_steps=2", "optim.lr=1e-3",
    "checkpoint_every=2", "log_every=1", "tensorboard=false", "seed=0", "amp=fp32",
    # a fast-moving teacher and LayerDrop, so resume has teacher state and drop draws to get right
    "model.ema_decay=0.9", "model.ema_end_decay=0.99", "model.ema_anneal_end_step=10", "model.encoder_layerdrop=0.3",
]


def _cfg(**over):
    from audiossl.pretrain.config import load_config

    return load_config(None, BASE + [f"{k}={v}" for k, v in over.items()])


def train(corpus: Path, out: Path, **over):
    from fairseq2.device import Device
    from fairseq2.gang import create_fake_gangs

    from audiossl.pretrain.trainer import RunPaths, run_pretraining

    with golden_threads():
        return run_pretraining(_cfg(**over), RunPaths(corpus, "train", None, out), gangs=create_fake_gangs(Device("cpu")))


def cli_args(corpus: Path, out: Path, steps: int) -> list[str]:
    """The `audiossl pretrain` command line of :func:`_train`'s config, with a checkpoint after every step."""
    import sys

    over = [a for a in BASE if not a.startswith(("max_steps=", "checkpoint_every="))]
    return [sys.executable, "-m", "audiossl.cli.main", "pretrain", "--manifest-dir", str(corpus), "--labels", "none",
            "--out", str(out), *over, f"max_steps={steps}", "checkpoint_every=1", "keep_last_checkpoints=null"]


def losses(out: Path) -> dict[int, float]:
    lines = (out / "metrics" / "train.jsonl").read_text().splitlines()
    return {r["Step"]: r["Loss"] for r in map(json.loads, lines)}


def step_state(out: Path, step: int) -> dict[str, torch.Tensor]:
    return torch.load(out / f"checkpoints/step_{step}/model/pp_00/tp_00/sdp_00.pt", weights_only=True)


@pytest.fixture(scope="module")
def full_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    return out, train(corpus, out)


@pytest.mark.golden
def test_four_step_loss_trace_is_pinned(full_run):
    out, result = full_run
    got = losses(out)
    assert sorted(got) == [1, 2, 3, 4] and result.step_nr == 4
    trace = [got[s] for s in (1, 2, 3, 4)]
    print("loss trace", trace)
    assert all(np.isfinite(trace))
    assert trace == pytest.approx(GOLDEN, rel=RTOL)
    v = result.last_metrics
    assert v["ema_decay"] == pytest.approx(0.9 + 0.09 * 3 / 10, rel=1e-6)  # the EMA step after update 3
    assert 0.3 < v["masked_frac"] < 0.5 and v["target_var"] > 0.1 and v["pred_var"] > 0
    assert "masked_acc" not in v and v["mfu"] == "n/a" and 0.5 < v["padding_eff"] <= 1.0


def test_teacher_moves_and_lives_in_the_checkpoint(full_run):
    out, _ = full_run
    s2, s4 = step_state(out, 2), step_state(out, 4)
    assert s4["num_updates"].item() == 3 and s2["num_updates"].item() == 1
    key = "teacher.layers.0.ffn.fc1.weight"
    assert not torch.equal(s2[key], s4[key])
    # after update 3 the teacher is still between its start and the student
    assert not torch.equal(s4[key], s4["encoder.context.layers.0.ffn.fc1.weight"])


def test_resume_after_stop_gives_the_same_losses_and_teacher(corpus, full_run, tmp_path):
    first = train(corpus, tmp_path, stop_after_steps=2)
    assert first.step_nr == 2 and first.checkpoint_dir is None
    second = train(corpus, tmp_path)
    assert second.step_nr == 4 and second.checkpoint_dir is not None
    want, got = losses(full_run[0]), losses(tmp_path)
    assert sorted(got) == [1, 2, 3, 4]
    for step in (1, 2, 3, 4):
        assert got[step] == pytest.approx(want[step], rel=1e-6), step
    a, b = step_state(full_run[0], 4), step_state(tmp_path, 4)
    assert a.keys() == b.keys()
    for k in a:
        if k.startswith("teacher.") or k in ("num_updates", "ema_decay"):
            torch.testing.assert_close(b[k], a[k], rtol=1e-6, atol=1e-7, msg=k)


def test_export_is_the_student_and_loads_as_an_upstream(full_run, tmp_path):
    from audiossl.models.data2vec2.family import load_encoder, load_pretrain_checkpoint
    from audiossl.upstream.load import load_upstream

    out, result = full_run
    ckpt = result.checkpoint_dir
    meta = json.loads((ckpt / "config.json").read_text())
    assert meta["family"] == "data2vec2" and meta["extra"]["step"] == 4
    state = step_state(out, 4)
    pre = load_pretrain_checkpoint(ckpt)
    for k, v in pre.state_dict().items():
        assert torch.equal(v, state[k]), k
    enc = load_encoder(ckpt)
    for k, v in enc.state_dict().items():
        assert torch.equal(v, state["encoder." + k]), k  # the student, not the teacher
    up = load_upstream(str(ckpt))
    assert up.frame_rate == 50.0 and up.num_layers == 4 and up.normalize
    wavs = torch.randn(2, 8000) * 0.1
    with torch.no_grad():
        o = up(wavs, torch.tensor([8000, 5000]))
    assert len(o.hidden_states) == 4 and o.hidden_states[-1].shape == (2, 24, 128) and o.lengths.tolist() == [24, 15]


def test_cli_exports_hf_only_without_alibi(full_run, tmp_path, capsys):
    from audiossl.cli.main import main

    ckpt = full_run[1].checkpoint_dir
    assert main(["export", str(ckpt), "--to", "hf", str(tmp_path / "hf")]) == 2
    assert "ALiBi" in capsys.readouterr().out and not (tmp_path / "hf").exists()


@pytest.mark.parametrize("name", ["tiny", "base", "large"])
def test_recipes_load_and_show_their_command(name):
    from audiossl.models.families import get_family
    from audiossl.pretrain.config import load_config

    path = Path(__file__).resolve().parents[1] / "recipes" / "data2vec2" / f"{name}.yaml"
    head = path.read_text().split("\n\n")[0].replace("\\\n", "").replace("#", "")
    assert f"pretrain --config recipes/data2vec2/{name}.yaml" in " ".join(head.split()) and "--labels none" in head
    cfg = load_config(path)
    assert cfg.model.family == "data2vec2" and cfg.model.size == name and cfg.data.max_sample_size <= cfg.data.max_tokens
    get_family("data2vec2").CONFIGS[name](**cfg.model.overrides)


def test_fsdp_is_refused_before_building():
    from audiossl.pretrain.config import ConfigError
    from audiossl.pretrain.trainer import build_model

    with pytest.raises(ConfigError, match="data_parallelism='fsdp': model family data2vec2 supports ddp"):
        build_model(_cfg(data_parallelism="fsdp"))
    model, cfg = build_model(_cfg())
    assert cfg.family == "data2vec2" and model.encoder.frame_rate == 50.0


def test_cli_needs_no_labels_and_refuses_a_label_extension(corpus, tmp_path, capsys):
    from audiossl.cli.main import main

    args = ["pretrain", "--manifest-dir", str(corpus), "--out", str(tmp_path / "run"), *BASE, "max_steps=2", "checkpoint_every=2"]
    assert main(args[:3] + ["--labels", "km"] + args[3:]) == 2
    assert "trains on audio alone" in capsys.readouterr().err and not (tmp_path / "run" / "checkpoints").exists()
    assert main(args) == 0
    assert json.loads((tmp_path / "run/checkpoint/config.json").read_text())["extra"]["step"] == 2
