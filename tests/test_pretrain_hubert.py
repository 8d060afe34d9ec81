"""HuBERT pretraining on fairseq2's Trainer: golden 4-step loss trace, exact resume, export, CLI refusals."""

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
NUM_CLASSES = 20
# Recorded from this test's run (CPU, fp32, seed 0; see tests/golden.py); a change means training changed.
GOLDEN = [3.851148843765259, 3.8281097412109375, 3.5630555152893066, 3.3078739643096924]


def _num_frames(n: int) -> int:
    from audiossl.models.hubert.model import build_hubert, hubert_tiny

    return build_hubert(hubert_tiny(num_classes=NUM_CLASSES)).encoder.num_frames(n)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    lens = [4800, 5200, 6000, 6400, 7200, 8000, 8800, 9600]
    rows, labels = [], []
    for i, n in enumerate(lens):
        t = np.arange(n) / SR
        w = 0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.05 * rng.standard_normal(n)
        save_audio(d / "wav" / f"utt{i}.wav", w.astype(np.float32), SR)
        rows.append(Row(f"wav/utt{i}.wav", n))
        labels.append(rng.integers(0, NUM_CLASSES, _num_frames(n) * 2))  # 100 Hz labels
    write_manifest(Manifest(d, rows), d / "train.tsv")
    write_frame_labels(d / "train.km", labels, LabelInfo(100.0, NUM_CLASSES, {"kind": "test-kmeans"}))
    return d


def _cfg(**over):
    from audiossl.pretrain.config import load_config

    base = [
        "model.size=tiny", f"model.num_classes={NUM_CLASSES}", "data.max_tokens=14000", "data.max_sample_size=6400",
        "data.min_sample_size=3200", "data.num_workers=0", "max_steps=4", "optim.warmup_steps=2", "optim.lr=1e-3",
        "checkpoint_every=2", "log_every=1", "tensorboard=false", "seed=0", "amp=fp32",
    ]
    return load_config(None, base + [f"{k}={v}" for k, v in over.items()])


def _train(corpus: Path, out: Path, **over):
    from fairseq2.device import Device
    from fairseq2.gang import create_fake_gangs

    from audiossl.pretrain.trainer import RunPaths, run_pretraining

    with golden_threads():
        return run_pretraining(_cfg(**over), RunPaths(corpus, "train", "km", out), gangs=create_fake_gangs(Device("cpu")))


def _losses(out: Path) -> dict[int, float]:
    lines = (out / "metrics" / "train.jsonl").read_text().splitlines()
    return {r["Step"]: r["Loss"] for r in map(json.loads, lines)}


@pytest.fixture(scope="module")
def full_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    return out, _train(corpus, out)


@pytest.mark.golden
def test_four_step_loss_trace_is_pinned(full_run):
    out, result = full_run
    losses = _losses(out)
    assert sorted(losses) == [1, 2, 3, 4] and result.step_nr == 4
    trace = [losses[s] for s in (1, 2, 3, 4)]
    print("loss trace", trace)
    assert all(np.isfinite(trace))
    assert trace == pytest.approx(GOLDEN, rel=RTOL)
    v = result.last_metrics
    assert 0.0 <= v["masked_acc"] <= 1.0 and 0.5 < v["padding_eff"] <= 1.0
    assert v["audio_sec_per_sec"] > 0 and v["mfu"] == "n/a" and v["audio_sec"] > 0


def test_resume_after_stop_continues_identical_trace(corpus, full_run, tmp_path):
    first = _train(corpus, tmp_path, stop_after_steps=2)
    assert first.step_nr == 2 and first.checkpoint_dir is None
    assert (tmp_path / "checkpoints" / "step_2").is_dir() and not (tmp_path / "checkpoints" / "step_4").exists()
    second = _train(corpus, tmp_path)
    assert second.step_nr == 4 and second.checkpoint_dir is not None
    want = _losses(full_run[0])
    got = _losses(tmp_path)
    assert sorted(got) == [1, 2, 3, 4]
    for step in (1, 2, 3, 4):
        assert got[step] == pytest.approx(want[step], rel=1e-6), step


def test_export_loads_with_load_model(full_run, corpus, tmp_path, capsys):
    from safetensors.torch import load_file

    from audiossl.models.checkpoint import load_model
    from audiossl.pretrain.export import export_from_run

    out, result = full_run
    ckpt = result.checkpoint_dir
    assert ckpt == out / "checkpoint"
    enc = load_model(ckpt)
    assert enc.num_frames(16000) == 49 and enc.cfg.num_classes == NUM_CLASSES
    pre = load_model(ckpt, pretrain=True)
    assert json.loads((ckpt / "tokenizer.json").read_text()) == json.loads((corpus / "train.km.json").read_text())
    meta = json.loads((ckpt / "config.json").read_text())
    assert meta["extra"]["step"] == 4 and meta["extra"]["label_rate"] == 100.0
    # the exported weights are the trained ones (step-4 fairseq2 checkpoint), not a fresh init
    state = torch.load(out / "checkpoints/step_4/model/pp_00/tp_00/sdp_00.pt", weights_only=True)
    for k, v in pre.state_dict().items():
        assert torch.equal(v, state[k]), k
    again = export_from_run(out, "last", tmp_path / "exp")
    a, b = load_file(str(ckpt / "model.safetensors")), load_file(str(again / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the intermediate checkpoint differs (it is really step 2), and `best` needs validation scores
    mid = load_file(str(export_from_run(out, 2, tmp_path / "exp2") / "model.safetensors"))
    assert not all(torch.equal(a[k], mid[k]) for k in a)
    from audiossl.cli.main import main

    assert main(["pretrain", "--manifest-dir", str(corpus), "--out", str(out), "--export", "best"]) == 2
    assert "no validation scores" in capsys.readouterr().out


def test_cli_refuses_mismatched_labels(corpus, tmp_path, capsys):
    from audiossl.cli.main import main

    d = tmp_path / "m"
    d.mkdir()
    (d / "train.tsv").write_text((corpus / "train.tsv").read_text())
    lines = (corpus / "train.km").read_text().splitlines()
    lines[3] = " ".join(lines[3].split()[::2])  # 50 Hz labels on one row
    (d / "train.km").write_text("\n".join(lines) + "\n")
    (d / "train.km.json").write_text((corpus / "train.km.json").read_text())
    rc = main(["pretrain", "--manifest-dir", str(d), "--labels", "km", "--out", str(tmp_path / "run"), "model.size=tiny", f"model.num_classes={NUM_CLASSES}"])
    out = "".join(capsys.readouterr())
    assert rc == 2 and "refusing to start" in out
    n = _num_frames(6400)
    assert "train.km:4" in out and "'wav/utt3'" in out
    assert f"has {n} labels, expected {2 * n} ± 2 (6400 samples → {n} model frames at 50 Hz, labels at 100 Hz)" in out
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_cli_help_and_bad_override(tmp_path, capsys):
    from audiossl.cli.main import main

    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    assert "--manifest-dir" in capsys.readouterr().out
    rc = main(["pretrain", "--manifest-dir", str(tmp_path), "--out", str(tmp_path / "o"), "optim.lrr=1"])
    assert rc == 2 and "unknown key(s) ['lrr']" in "".join(capsys.readouterr())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_bf16_run_reports_mfu(corpus, tmp_path):
    from fairseq2.device import Device
    from fairseq2.gang import create_fake_gangs

    from audiossl.pretrain.trainer import RunPaths, run_pretraining

    cfg = _cfg(amp="auto", max_steps=2, checkpoint_every=2)
    result = run_pretraining(cfg, RunPaths(corpus, "train", "km", tmp_path), gangs=create_fake_gangs(Device("cuda", 0)))
    v = result.last_metrics
    assert result.step_nr == 2 and np.isfinite(v["loss"]) and isinstance(v["mfu"], float) and v["mfu"] > 0


def test_validation_scores_rank_checkpoints_for_best_export(corpus, tmp_path):
    from fairseq2.device import Device
    from fairseq2.gang import create_fake_gangs

    from audiossl.models.checkpoint import load_model
    from audiossl.pretrain.export import export_from_run
    from audiossl.pretrain.trainer import RunPaths, run_pretraining

    cfg = _cfg(max_steps=2, checkpoint_every=1, validate_every=1, keep_last_checkpoints="null")
    run_pretraining(cfg, RunPaths(corpus, "train", "km", tmp_path, valid_split="train"), gangs=create_fake_gangs(Device("cpu")))
    valid = [json.loads(line) for line in (tmp_path / "metrics" / "valid.jsonl").read_text().splitlines()]
    assert [r["Step"] for r in valid] == [1, 2] and all(0 <= r["Masked Accuracy"] <= 1 for r in valid)
    scores = {int(p.stem.split("_")[1]) for p in (tmp_path / "checkpoints" / "scores").glob("step_*.txt")}
    assert scores == {1, 2}
    best = min(valid, key=lambda r: r["Loss"])["Step"]
    exported = export_from_run(tmp_path, "best", tmp_path / "best")
    assert json.loads((exported / "config.json").read_text())["extra"]["step"] == best
    load_model(exported)


def test_base_recipe_takes_rate_and_classes_from_the_labels_and_refuses_a_pinned_other_rate(corpus, tmp_path):
    """recipes/hubert/base.yaml once pinned label_rate 50 and 500 classes, so iteration 1 of
    egs/librispeech/hubert (100 MFCC units at 100 Hz) was refused; the sidecar now decides."""
    from fairseq2.device import Device
    from fairseq2.gang import create_fake_gangs

    from audiossl.data.frame_labels import LabelError
    from audiossl.models.checkpoint import load_model
    from audiossl.pretrain.config import load_config
    from audiossl.pretrain.trainer import RunPaths, run_pretraining

    base = Path(__file__).resolve().parents[1] / "recipes/hubert/base.yaml"
    small = ["model.size=tiny", "data.max_tokens=14000", "data.max_sample_size=6400", "data.min_sample_size=3200",
             "data.num_workers=0", "max_steps=2", "checkpoint_every=2", "log_every=1", "validate_every=null", "tensorboard=false"]
    gangs = create_fake_gangs(Device("cpu"))
    cfg = load_config(base, small)
    result = run_pretraining(cfg, RunPaths(corpus, "train", "km", tmp_path / "ok"), gangs=gangs)
    assert result.step_nr == 2 and cfg.data.label_rate == 100.0
    assert load_model(tmp_path / "ok/checkpoint").cfg.num_classes == NUM_CLASSES  # base.yaml names no class count
    with pytest.raises(LabelError, match=r"train\.km\.json: labels are at 100 Hz but the run config expects label_rate=50 Hz"):
        run_pretraining(load_config(base, small + ["data.label_rate=50"]), RunPaths(corpus, "train", "km", tmp_path / "no"), gangs=gangs)


@pytest.mark.parametrize("name", ["tiny", "base", "large"])
def test_recipes_load_and_show_their_command(name):
    from audiossl.pretrain.config import load_config

    path = Path(__file__).resolve().parents[1] / "recipes" / "hubert" / f"{name}.yaml"
    head = path.read_text().split("\n\n")[0]
    assert "audiossl" in head and "pretrain --config recipes/hubert/" + name + ".yaml" in head.replace("\\\n", "").replace("  ", " ")
    cfg = load_config(path)
    assert cfg.model.size == name and cfg.optim.betas == (0.9, 0.98) and cfg.optim.eps == 1e-6
    assert cfg.data.max_sample_size <= cfg.data.max_tokens
