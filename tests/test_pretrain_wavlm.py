"""WavLM pretraining on fairseq2's Trainer (the one trainer): golden 4-step loss trace with utterance
mixing on, exact resume, export → upstream / transformers / unilm file, recipes."""

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
# Recorded from this test's run (CPU, fp32, seed 0, mix_prob 0.5; see tests/golden.py); a change means training changed.
GOLDEN = [4.9322052001953125, 4.950648784637451, 4.396535873413086, 3.5091676712036133]


def _num_frames(n: int) -> int:
    from audiossl.models.wavlm.model import build_wavlm, wavlm_tiny

    return build_wavlm(wavlm_tiny(num_classes=NUM_CLASSES)).encoder.num_frames(n)


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
        labels.append(rng.integers(0, NUM_CLASSES, _num_frames(n)))  # 50 Hz labels
    write_manifest(Manifest(d, rows), d / "train.tsv")
    write_frame_labels(d / "train.km", labels, LabelInfo(50.0, NUM_CLASSES, {"kind": "test-kmeans"}))
    return d


def _cfg(**over):
    from audiossl.pretrain.config import load_config

    base = [
        "model.family=wavlm", "model.size=tiny", f"model.num_classes={NUM_CLASSES}", "model.mix_prob=0.5",
        "data.max_tokens=14000", "data.max_sample_size=6400", "data.min_sample_size=3200", "data.num_workers=0",
        "max_steps=4", "optim.warmup_steps=2", "optim.lr=1e-3", "checkpoint_every=2", "log_every=1", "tensorboard=false",
        "seed=0", "amp=fp32",
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
    assert 0.0 <= v["masked_acc"] <= 1.0 and 0.5 < v["padding_eff"] <= 1.0 and v["mfu"] == "n/a"


def test_mixing_is_part_of_the_trace(corpus, full_run, tmp_path):
    """The same run without utterance mixing trains on other inputs from step 1 on."""
    plain = _train(corpus, tmp_path, **{"model.mix_prob": 0.0, "max_steps": 2})
    assert plain.step_nr == 2
    assert abs(_losses(tmp_path)[1] - _losses(full_run[0])[1]) > 1e-3


def test_resume_after_stop_continues_identical_trace(corpus, full_run, tmp_path):
    first = _train(corpus, tmp_path, stop_after_steps=2)
    assert first.step_nr == 2 and first.checkpoint_dir is None
    second = _train(corpus, tmp_path)
    assert second.step_nr == 4 and second.checkpoint_dir is not None
    want, got = _losses(full_run[0]), _losses(tmp_path)
    assert sorted(got) == [1, 2, 3, 4]
    for step in (1, 2, 3, 4):
        assert got[step] == pytest.approx(want[step], rel=1e-6), step


def test_export_loads_as_upstream_and_converts(full_run, tmp_path):
    import transformers

    from audiossl.models.wavlm.fairseq import export_fairseq, load_fairseq_wavlm
    from audiossl.models.wavlm.family import load_encoder, load_pretrain_checkpoint
    from audiossl.models.wavlm.hf import export_hf
    from audiossl.upstream.load import load_upstream

    out, result = full_run
    ckpt = result.checkpoint_dir
    meta = json.loads((ckpt / "config.json").read_text())
    assert meta["family"] == "wavlm" and meta["frame_rate"] == 50.0 and meta["extra"]["step"] == 4
    assert meta["config"]["mix_prob"] == 0.5
    pre = load_pretrain_checkpoint(ckpt)
    # the exported weights are the trained ones (step-4 fairseq2 checkpoint), not a fresh init
    state = torch.load(out / "checkpoints/step_4/model/pp_00/tp_00/sdp_00.pt", weights_only=True)
    for k, v in pre.state_dict().items():
        assert torch.equal(v, state[k]), k
    up = load_upstream(str(ckpt))
    wav = torch.from_numpy(np.sin(np.arange(16000) / 7.0).astype(np.float32))[None]
    o = up(wav)
    assert up.frame_rate == 50.0 and len(o.hidden_states) == 3 and o.hidden_states[-1].shape == (1, 49, 128)
    enc = load_encoder(ckpt)
    hf = transformers.WavLMModel.from_pretrained(export_hf(pre, tmp_path / "hf")).eval()
    unilm, _ = load_fairseq_wavlm(export_fairseq(pre, tmp_path / "WavLM-Tiny.pt"))
    with torch.no_grad():
        ours = enc.layer_states(wav, None)[0]
        theirs = hf(wav, output_hidden_states=True).hidden_states
        again = unilm.layer_states(wav, None)[0]
    for a, b, c in zip(ours, theirs, again):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
        assert torch.equal(a, c)


def test_cli_export_to_hf_and_unilm(full_run, tmp_path, capsys):
    import transformers

    from audiossl.cli.main import main
    from audiossl.upstream.load import load_upstream

    ckpt = full_run[1].checkpoint_dir
    assert main(["export", str(ckpt), "--to", "hf", str(tmp_path / "hf")]) == 0
    assert main(["export", str(ckpt), "--to", "fairseq", str(tmp_path / "WavLM-Tiny.pt")]) == 0
    assert main(["export", str(ckpt), "--to", "mert", str(tmp_path / "m")]) == 2
    assert "holds a 'wavlm' model; --to mert exports 'mert' models" in capsys.readouterr().out
    wav = torch.randn(2, 12000)
    ours = load_upstream(str(ckpt))(wav).hidden_states
    with torch.no_grad():
        hf = transformers.WavLMModel.from_pretrained(tmp_path / "hf").eval()(wav, output_hidden_states=True).hidden_states
    unilm = load_upstream(f"fairseq:{tmp_path / 'WavLM-Tiny.pt'}")(wav).hidden_states
    for a, b, c in zip(ours, hf, unilm):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
        torch.testing.assert_close(a, c, atol=0, rtol=0)


@pytest.mark.parametrize("name", ["tiny", "base", "base_plus", "large"])
def test_recipes_load_and_show_their_command(name):
    from audiossl.models.wavlm.family import CONFIGS
    from audiossl.pretrain.config import load_config

    path = Path(__file__).resolve().parents[1] / "recipes" / "wavlm" / f"{name}.yaml"
    head = path.read_text().split("\n\n")[0]
    assert "pretrain --config recipes/wavlm/" + name + ".yaml" in head.replace("\\\n", "").replace("  ", " ")
    cfg = load_config(path)
    assert cfg.model.family == "wavlm" and cfg.model.size == name and cfg.optim.betas == (0.9, 0.98)
    assert cfg.data.max_sample_size <= cfg.data.max_tokens
    model_cfg = CONFIGS[name](**cfg.model.overrides)
    assert model_cfg.mix_prob == 0.2 and model_cfg.mix_max_ratio == 0.5 and model_cfg.num_buckets == 320
