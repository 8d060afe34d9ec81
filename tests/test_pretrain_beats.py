"""BEATs pretraining on fairseq2's Trainer: golden 4-step loss trace, export → upstream, recipes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.golden import RTOL, golden_threads
from audiossl.audio.io import save_audio
from audiossl.data.frame_labels import LabelInfo, write_frame_labels
from audiossl.data.manifest import Manifest, Row, write_manifest

SR = 16000
NUM_CLASSES = 1024
# Recorded from this test's run (CPU, fp32, seed 0; see tests/golden.py); a change means training changed.
GOLDEN = [6.948865254720052, 6.939614295959473, 6.940698623657227, 6.825610478719075]  # predictor embed/head BERT-initialised


def _num_frames(n: int) -> int:
    from audiossl.models.patch_frontend import num_patch_frames

    return num_patch_frames(n)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    lens = [8000, 9000, 10240, 12000, 12800, 14000, 15360, 16000]
    rows, labels = [], []
    for i, n in enumerate(lens):
        t = np.arange(n) / SR
        w = 0.3 * np.sin(2 * np.pi * (300 + 90 * i) * t) + 0.05 * rng.standard_normal(n)
        save_audio(d / "wav" / f"clip{i}.wav", w.astype(np.float32), SR)
        rows.append(Row(f"wav/clip{i}.wav", n))
        labels.append(rng.integers(0, NUM_CLASSES, (_num_frames(n), 8)))
    write_manifest(Manifest(d, rows), d / "train.tsv")
    write_frame_labels(d / "train.rp", labels, LabelInfo(6.25, NUM_CLASSES, {"kind": "test-random"}, num_codebooks=8))
    return d


def _cfg(**over):
    from audiossl.pretrain.config import load_config

    base = [
        "model.family=beats", "model.size=tiny", "data.max_tokens=30720", "data.max_sample_size=10240",
        "data.min_sample_size=5120", "data.num_workers=0", "max_steps=4", "optim.warmup_steps=2", "optim.lr=1e-3",
        "checkpoint_every=2", "log_every=1", "tensorboard=false", "seed=0", "amp=fp32",
    ]
    return load_config(None, base + [f"{k}={v}" for k, v in over.items()])


def _train(corpus: Path, out: Path, **over):
    from fairseq2.device import Device
    from fairseq2.gang import create_fake_gangs

    from audiossl.pretrain.trainer import RunPaths, run_pretraining

    with golden_threads():
        return run_pretraining(_cfg(**over), RunPaths(corpus, "train", "rp", out), gangs=create_fake_gangs(Device("cpu")))


@pytest.fixture(scope="module")
def full_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    return out, _train(corpus, out)


@pytest.mark.golden
def test_four_step_loss_trace_is_pinned(full_run):
    out, result = full_run
    rows = [json.loads(line) for line in (out / "metrics" / "train.jsonl").read_text().splitlines()]
    losses = {r["Step"]: r["Loss"] for r in rows}
    assert sorted(losses) == [1, 2, 3, 4] and result.step_nr == 4
    trace = [losses[s] for s in (1, 2, 3, 4)]
    print("loss trace", trace)
    assert all(np.isfinite(trace))
    assert trace == pytest.approx(GOLDEN, rel=RTOL)
    assert trace[0] == pytest.approx(np.log(NUM_CLASSES), rel=0.1)  # ~uniform predictions at init
    assert "Feature Penalty" not in rows[0] and "Masked CE" in rows[0]
    v = result.last_metrics
    assert 0.0 <= v["masked_acc"] <= 1.0 and 0.5 < v["padding_eff"] <= 1.0 and v["mfu"] == "n/a"


def test_export_loads_as_upstream(full_run, corpus):
    from audiossl.upstream.load import load_upstream
    from audiossl.models.beats.family import load_pretrain_checkpoint

    out, result = full_run
    ckpt = result.checkpoint_dir
    meta = json.loads((ckpt / "config.json").read_text())
    assert meta["family"] == "beats" and meta["frame_rate"] == 6.25 and meta["extra"]["step"] == 4
    pre = load_pretrain_checkpoint(ckpt)
    # the exported weights are the trained ones (step-4 fairseq2 checkpoint), not a fresh init
    state = torch.load(out / "checkpoints/step_4/model/pp_00/tp_00/sdp_00.pt", weights_only=True)
    for k, v in pre.state_dict().items():
        assert torch.equal(v, state[k]), k
    up = load_upstream(str(ckpt))
    wav = torch.from_numpy(np.sin(np.arange(16000) / 7.0).astype(np.float32))[None]
    o = up(wav)
    assert up.frame_rate == 6.25 and len(o.hidden_states) == 3 and o.hidden_states[-1].shape == (1, 6, 96)


@pytest.mark.parametrize("name", ["tiny", "base"])
def test_recipes_load_and_show_their_command(name):
    from audiossl.pretrain.config import load_config

    path = Path(__file__).resolve().parents[1] / "recipes" / "beats" / f"{name}.yaml"
    head = path.read_text().split("\n\n")[0]
    assert "pretrain --config recipes/beats/" + name + ".yaml" in head.replace("\\\n", "").replace("  ", " ")
    cfg = load_config(path)
    assert cfg.model.family == "beats" and cfg.model.size == name
    assert cfg.data.max_sample_size % 2560 == 0 and cfg.data.max_sample_size <= cfg.data.max_tokens
    from audiossl.models.beats.family import CONFIGS

    model_cfg = CONFIGS[name](**cfg.model.overrides)
    assert model_cfg.num_classes == 1024 and model_cfg.num_codebooks == 8


def test_cli_refuses_single_codebook_labels(corpus, tmp_path, capsys):
    from audiossl.cli.main import main
    from audiossl.data.frame_labels import read_frame_labels

    rows, _ = read_frame_labels(corpus / "train.rp")
    d = tmp_path / "m"
    d.mkdir()
    (d / "train.tsv").write_text((corpus / "train.tsv").read_text())
    write_frame_labels(d / "train.km", [np.asarray(r)[:, 0] for r in rows], LabelInfo(6.25, NUM_CLASSES, {"kind": "test"}))
    rc = main(["pretrain", "--config", str(Path(__file__).resolve().parents[1] / "recipes/beats/tiny.yaml"),
               "--manifest-dir", str(d), "--labels", "km", "--out", str(tmp_path / "run")])
    out = "".join(capsys.readouterr())
    assert rc == 2 and "num_codebooks=1" in out and "predicts 8" in out
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_cli_export_to_beats_format(full_run, tmp_path, capsys):
    from audiossl.cli.main import main
    from audiossl.upstream.load import load_upstream

    out, result = full_run
    pt = tmp_path / "BEATs_ours.pt"
    assert main(["export", str(result.checkpoint_dir), "--to", "beats", str(pt)]) == 0
    assert str(pt) in capsys.readouterr().out
    sd = torch.load(pt, weights_only=True)["model"]
    assert "encoder.pos_conv.0.weight_g" in sd and "encoder.layers.1.self_attn.relative_attention_bias.weight" in sd
    wav = 0.1 * torch.randn(1, 12000)
    a, b = load_upstream(f"beats:{pt}")(wav), load_upstream(str(result.checkpoint_dir))(wav)
    for x, y in zip(a.hidden_states, b.hidden_states):
        assert torch.equal(x, y)
