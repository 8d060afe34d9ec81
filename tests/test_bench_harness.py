"""End to end: every bench task on a tiny corpus, the cache, resume, lr grid, reports, CLI, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from audiossl.eval.harness import BenchConfig, run_bench
from audiossl.eval.tasks import BenchError
from audiossl.upstream.base import Upstream, UpstreamOutput
from audiossl.upstream.load import load_upstream
from tests.test_eval_tasks import make_demo


class FakeUpstream(Upstream):
    """Three "layers" over raw Kaldi log-mel (no CMVN, so pooled features keep the spectrum):
    the first 40 bins, then two fixed random tanh projections. 100 frames/s like fbank."""

    def __init__(self, frame_rate_override: float | None = None) -> None:
        super().__init__()
        self.sample_rate, self.num_layers, self.hidden_dim, self.name = 16000, 3, 40, "fake3"
        self.frame_rate = frame_rate_override or 100.0
        g = torch.Generator().manual_seed(0)
        self.w1 = torch.randn(80, 40, generator=g) / 9
        self.w2 = torch.randn(40, 40, generator=g) / 6

    def _forward(self, wavs, lengths):
        import torchaudio.compliance.kaldi as kaldi

        lens = [max(0, 1 + (int(n) - 400) // 160) if n >= 400 else 0 for n in lengths.tolist()]
        x = torch.zeros(wavs.shape[0], max(lens), 80)
        for i, n in enumerate(lengths.tolist()):
            if lens[i]:
                x[i, : lens[i]] = kaldi.fbank(wavs[i, :n][None], num_mel_bins=80)[: lens[i]] / 10
        h1 = torch.tanh(x @ self.w1)
        return UpstreamOutput([x[..., :40], h1, torch.tanh(h1 @ self.w2)], torch.tensor(lens))


def loader(spec, device="cpu"):
    if spec == "fake":
        return FakeUpstream()
    if spec == "fake30hz":
        return FakeUpstream(frame_rate_override=30.0)
    return load_upstream(spec, device)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # tiny LSTMs spin for seconds when several test processes share 2 cores with >1 thread each
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("demo"))


ALL = ["pr", "asr", "pf", "ks", "er", "sid", "asv", "instrument", "pitch", "key", "tagging", "audioset", "esc50"]


@pytest.fixture(scope="module")
def bench(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    records = run_bench(["fake"], ALL, demo, out, BenchConfig(epochs=3, add_fbank=False), loader=loader)
    return out, records


def test_every_task_end_to_end(bench):
    out, records = bench
    assert [(r["upstream"], r["task"]) for r in records] == [("fake", t) for t in ALL]
    for r in records:
        assert r["metric"] in r["test"] and r["value"] == r["test"][r["metric"]]
        assert 0.0 <= r["value"] <= 100.0 or r["metric"] in ("per", "wer")
        assert len(r["curve"]) == 3 and (out / "runs" / r["upstream"] / r["task"] / "result.json").is_file()
        assert len(r["layer_weights"]) == 3 and abs(sum(r["layer_weights"]) - 1) < 1e-5
    by = {(r["upstream"], r["task"]): r for r in records}
    assert set(by["fake", "asv"]["test"]) >= {"eer", "min_dcf"} and set(by["fake", "tagging"]["test"]) == {"auc", "ap"}
    assert by["fake", "audioset"]["metric"] == "ap" and set(by["fake", "audioset"]["test"]) == {"auc", "ap"}
    # ASR: greedy and lexicon + word-LM beam search (3-gram estimated from the training transcripts)
    assert set(by["fake", "asr"]["test"]) == {"wer", "cer", "wer_lm", "cer_lm"}
    assert by["fake", "asr"]["lm"] == "lm/asr_train_3gram.arpa" and (out / "lm/asr_train_3gram.arpa").is_file()
    for r in records:  # every metric with per-item statistics carries a 95 % CI around its value
        assert set(r["ci"]) == set(r["test"]) - {"trials"} and (out / r["items"]).is_file()
        lo, hi = r["ci"][r["metric"]]
        assert lo <= hi
    assert len(by["fake", "esc50"]["folds"]) == 5
    # the layer weights were trained away from the zero-init uniform 1/3
    assert max(abs(w - 1 / 3) for w in by["fake", "ks"]["layer_weights"]) > 1e-4


def test_heads_learn_easy_tasks(demo, tmp_path):
    """Tones per keyword and per instrument are separable: the heads must beat chance (1/3) clearly."""
    cfg = BenchConfig(epochs=40, add_fbank=False)
    recs = {r["task"]: r for r in run_bench(["fake"], ["ks", "instrument"], demo, tmp_path, cfg, loader=loader)}
    assert recs["ks"]["value"] >= 80.0 and recs["instrument"]["value"] >= 60.0
    assert recs["ks"]["curve"][-1]["train_loss"] < recs["ks"]["curve"][0]["train_loss"]


def test_reports_written(bench):
    out, records = bench
    md = (out / "results.md").read_text()
    assert md.splitlines()[0].startswith("| upstream | pr (PER ↓) | asr (WER ↓)") and "overall ↑" in md
    assert "| fake |" in md
    res = json.loads((out / "results.json").read_text())
    assert set(res["overall"]) == {"fake"} and len(res["records"]) == len(records)
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + len(records) and csv_lines[0].startswith("upstream,task,metric,value,score")
    assert "asr+LM (WER ↓)" in md.splitlines()[0] and "[" in md.splitlines()[2]
    assert "ci_low" in csv_lines[0] and "overall_ci" in res and "significance" in res
    assert (out / "results_bars.png").stat().st_size > 1000 and (out / "layer_weights_fake.png").stat().st_size > 1000
    for t in ALL:
        assert (out / "plots" / f"layer_weights_{t}.png").stat().st_size > 1000
        assert (out / "plots" / f"curve_{t}.png").stat().st_size > 1000
    from safetensors.torch import load_file

    sd = load_file(str(out / "runs" / "fake" / "ks" / "head.safetensors"))
    assert "featurizer.weights" in sd and sd["featurizer.weights"].shape == (3,)
    assert (out / "runs" / "fake" / "esc50" / "head_fold3.safetensors").is_file()


def test_resume_skips_done_pairs(bench, demo, monkeypatch):
    out, records = bench
    import audiossl.eval.harness as harness  # the name the harness calls

    def boom(*a, **k):
        raise AssertionError("a finished pair was trained again")

    monkeypatch.setattr(harness, "train_and_evaluate", boom)
    again = run_bench(["fake"], ["ks", "pr"], demo, out, BenchConfig(epochs=3, add_fbank=False), loader=loader)
    old = {r["task"]: r["value"] for r in records}
    assert [(r["task"], r["value"]) for r in again] == [("ks", old["ks"]), ("pr", old["pr"])]
    monkeypatch.undo()
    # the FBANK baseline row is added by default; finished pairs are still skipped
    again = run_bench(["fake"], ["ks"], demo, out, BenchConfig(epochs=3), loader=loader)
    assert [(r["upstream"], r["task"]) for r in again] == [("fake", "ks"), ("fbank", "ks")]
    assert again[0]["value"] == old["ks"] and "| fbank |" in (out / "results.md").read_text()


def test_no_report_runs_the_pairs_and_a_later_call_tabulates_them(demo, tmp_path, monkeypatch):
    out = tmp_path / "out"
    (r,) = run_bench(["fake"], ["ks"], demo, out, BenchConfig(epochs=2, add_fbank=False, report=False), loader=loader)
    assert (out / "runs" / "fake" / "ks" / "result.json").is_file()
    assert not (out / "results.md").exists() and not (out / "results.json").exists()
    import audiossl.eval.harness as harness

    monkeypatch.setattr(harness, "train_and_evaluate", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    (again,) = run_bench(["fake"], ["ks"], demo, out, BenchConfig(epochs=2, add_fbank=False), loader=loader)
    assert again["value"] == r["value"] and "| fake |" in (out / "results.md").read_text()


def test_reuse_copies_pairs_with_equal_settings_only(bench, demo, tmp_path, monkeypatch):
    out, records = bench
    import audiossl.eval.harness as harness

    def boom(*a, **k):
        raise AssertionError("a pair with equal settings was trained again")

    monkeypatch.setattr(harness, "train_and_evaluate", boom)
    mine = tmp_path / "mine"
    again = run_bench(["fake"], ["ks", "pr"], demo, mine, BenchConfig(epochs=3, add_fbank=False, reuse=(str(out),)),
                      loader=loader)
    old = {r["task"]: r for r in records}
    assert [r["value"] for r in again] == [old["ks"]["value"], old["pr"]["value"]]
    for task in ("ks", "pr"):  # the copy is self-contained: result, head, per-item statistics
        names = {p.name for p in (mine / "runs" / "fake" / task).iterdir()}
        assert {"result.json", "head.safetensors", "items.npz"} <= names
    assert "| fake |" in (mine / "results.md").read_text()
    monkeypatch.undo()

    # another setting (here the epochs: the spec differs) is trained, not copied
    called = []
    real = harness.train_and_evaluate
    monkeypatch.setattr(harness, "train_and_evaluate", lambda *a, **k: called.append(1) or real(*a, **k))
    run_bench(["fake"], ["ks"], demo, tmp_path / "other", BenchConfig(epochs=2, add_fbank=False, reuse=(str(out),)),
              loader=loader)
    assert called
    # a record without settings (written before they existed) is never reused
    src = json.loads((out / "runs" / "fake" / "ks" / "result.json").read_text())
    legacy = tmp_path / "legacy" / "runs" / "fake" / "ks"
    legacy.mkdir(parents=True)
    (legacy / "result.json").write_text(json.dumps({k: v for k, v in src.items() if k != "settings"}))
    called.clear()
    run_bench(["fake"], ["ks"], demo, tmp_path / "third", BenchConfig(epochs=3, add_fbank=False,
                                                                       reuse=(str(tmp_path / "legacy"),)), loader=loader)
    assert called


def test_amp_bf16_trains_the_heads_under_autocast(demo, tmp_path, monkeypatch):
    from audiossl.eval import runner

    seen = []
    real = runner.train_epoch

    def spy(fwd, obj, opt, batches, features, targets, cfg, desc=""):
        seen.append(cfg.amp)
        return real(fwd, obj, opt, batches, features, targets, cfg, desc)

    monkeypatch.setattr(runner, "train_epoch", spy)
    (r,) = run_bench(["fake"], ["ks"], demo, tmp_path, BenchConfig(epochs=2, add_fbank=False, amp="bf16"), loader=loader)
    assert seen == ["bf16", "bf16"] and r["amp"] == "bf16" and r["settings"]["amp"] == "bf16"
    assert 0 <= r["value"] <= 100
    assert runner.resolve_amp("fp32", "cpu") == "fp32" and runner.resolve_amp("bf16", "cpu") == "bf16"
    from audiossl.utils.cpu import has_native_bf16

    assert runner.resolve_amp("auto", "cpu") == ("bf16" if has_native_bf16() else "fp32")
    with pytest.raises(ValueError, match="amp must be"):
        runner.resolve_amp("fp16", "cpu")


def test_cache_reused_and_keyed_by_manifest(demo, tmp_path, monkeypatch):
    import shutil
    import time

    import audiossl.upstream.engine as engine  # where the cache's forward pass reads audio
    from audiossl.eval.cache import CacheConfig, build_cache, layer_stack

    shutil.copytree(demo / "keywords", tmp_path / "keywords")
    tsv = tmp_path / "keywords" / "train.tsv"
    up = FakeUpstream()
    store = build_cache(up, "fake", tsv, tmp_path / "c", CacheConfig())
    assert len(store) == 12 and store.dim == 3 * 40 and layer_stack(store, 0).shape[1:] == (3, 40)
    assert store.meta["dtype"] == "float16" and store.frame_rate == 100.0
    pooled = build_cache(up, "fake", tsv, tmp_path / "c", CacheConfig(pooled=True))
    assert pooled[0].shape == (1, 120) and pooled.path != store.path
    frames = torch.from_numpy(layer_stack(store, 0).astype("float32"))
    assert torch.allclose(torch.tensor(pooled[0].reshape(3, 40)), frames.mean(0), atol=2e-3)

    def boom(*a, **k):
        raise AssertionError("the upstream ran again on a cached split")

    monkeypatch.setattr(engine, "load_audio", boom)
    assert build_cache(up, "fake", tsv, tmp_path / "c", CacheConfig()).path == store.path
    time.sleep(0.01)
    tsv.write_text(tsv.read_text())  # touched manifest → new key → recomputed
    with pytest.raises(AssertionError, match="ran again"):
        build_cache(up, "fake", tsv, tmp_path / "c", CacheConfig())


def test_lr_grid_and_fixed_layer(demo, tmp_path):
    cfg = BenchConfig(epochs=2, lr_grid=(1e-4, 1e-2), layer=2, add_fbank=False)
    (r,) = run_bench(["fake"], ["ks"], demo, tmp_path, cfg, loader=loader)
    assert set(r["lr_grid"]) == {"0.0001", "0.01"} and r["lr"] in (1e-4, 1e-2)
    best = max(r["lr_grid"], key=r["lr_grid"].get)
    assert r["lr"] == float(best) and r["layer"] == 2 and r["layer_weights"] == [0.0, 0.0, 1.0]
    meta = json.loads(next((tmp_path / "cache" / "fake").glob("keywords_train_*/meta.json")).read_text())
    assert meta["extra"]["layers"] == [2] and meta["dim"] == 40  # only the picked layer is cached
    assert "lr chosen" not in (tmp_path / "results.md").read_text() and "ks=" in (tmp_path / "results.md").read_text()


def test_unloadable_lm_fails_before_training(demo, tmp_path, monkeypatch):
    import audiossl.eval.harness as harness

    monkeypatch.setattr(harness, "train_and_evaluate", lambda *a, **k: pytest.fail("trained despite a bad LM"))
    bad = tmp_path / "4gram.arpa"
    bad.write_text("not an arpa file\n")
    with pytest.raises(BenchError, match="4gram.arpa"):
        run_bench(["fake"], ["asr"], demo, tmp_path / "o", BenchConfig(epochs=1, add_fbank=False, lm=str(bad)), loader=loader)


def test_frame_rate_mismatch_fails_before_training(demo, tmp_path):
    with pytest.raises(BenchError, match="at 100 Hz but upstream fake30hz gives 30 frames/s"):
        run_bench(["fake30hz"], ["ks", "pf"], demo, tmp_path, BenchConfig(epochs=1), loader=loader)
    assert not (tmp_path / "cache").exists()


def test_bad_audio_is_skipped_and_counted(demo, tmp_path):
    import shutil

    d = tmp_path / "data" / "keywords"
    shutil.copytree(demo / "keywords", d)
    for split in ("train", "valid", "test"):  # point the copied manifests at the copied audio
        lines = (d / f"{split}.tsv").read_text().splitlines()
        (d / f"{split}.tsv").write_text("\n".join([str(d)] + lines[1:]) + "\n")
    bad = sorted((tmp_path / "data" / "keywords" / "wav").glob("train_yes_*.wav"))[0]
    bad.write_bytes(b"not a wav file at all")
    (r,) = run_bench(["fbank"], ["ks"], tmp_path / "data", tmp_path / "out", BenchConfig(epochs=1), loader=loader)
    assert r["skipped_files"] == 1
    meta = json.loads(next((tmp_path / "out" / "cache" / "fbank").glob("keywords_train_*/meta.json")).read_text())
    assert meta["extra"]["skipped"] == [{"path": str(bad), "reason": "unreadable"}] and meta["num_utts"] == 11


def test_cli(demo, tmp_path, capsys):
    from audiossl.cli.main import main

    rc = main(["bench", "fbank", "--tasks", "ks,er", "--data", str(demo), "--out", str(tmp_path), "--epochs", "1"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| fbank |" in text and "0 bad audio files skipped" in text
    rc = main(["bench", "fbank", "--tasks", "genre", "--data", str(demo), "--out", str(tmp_path)])
    assert rc == 2 and "no train manifest" in capsys.readouterr().out


def test_voxceleb_layout_asv_holds_out_dev(demo, tmp_path):
    """Prepared VoxCeleb1 names (asv_train/asv_test/asv_trials.txt), no dev split → a held-out slice."""
    import shutil

    vox = tmp_path / "data" / "voxceleb1"
    vox.mkdir(parents=True)
    for src, dst in (("speech/train", "asv_train"), ("speakers_unseen/test", "asv_test")):
        for ext in ("tsv", "spk"):
            shutil.copy(demo / f"{src}.{ext}", vox / f"{dst}.{ext}")
    shutil.copy(demo / "speakers_unseen" / "trials.txt", vox / "asv_trials.txt")
    (r,) = run_bench(["fake"], ["asv"], tmp_path / "data", tmp_path / "out", BenchConfig(epochs=2, add_fbank=False), loader=loader)
    assert r["test"]["trials"] == 36.0 and 0.0 <= r["test"]["eer"] <= 100.0 and r["test"]["min_dcf"] >= 0.0


def test_cli_with_a_real_hubert_checkpoint(demo, tmp_path, capsys):
    """A 50 Hz model checkpoint through load_upstream: 100 Hz .ali labels are subsampled by 2."""
    hubert = pytest.importorskip("audiossl.models.hubert.model")
    from audiossl.cli.main import main
    from audiossl.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    ckpt = save_checkpoint(hubert.build_hubert(hubert.hubert_tiny()), tmp_path / "ckpt")
    rc = main(["bench", str(ckpt), "--tasks", "pf,ks", "--data", str(demo), "--out", str(tmp_path / "o"),
               "--epochs", "1", "--no-fbank"])
    assert rc == 0
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert [(r["task"], r["frame_rate"]) for r in res["records"]] == [("pf", 50.0), ("ks", 50.0)]
    assert len(res["records"][0]["layer_weights"]) == 3  # tiny HuBERT: layer 0 + 2 transformer layers


def test_default_task_list_leaves_out_tasks_with_missing_labels(demo, tmp_path, caplog):
    import shutil

    d = tmp_path / "data"
    shutil.copytree(demo / "prosody", d / "prosody")
    shutil.copytree(demo / "keywords", d / "keywords")
    (d / "keywords" / "valid.lbl").unlink()
    recs = run_bench(["fake"], None, d, tmp_path / "out", BenchConfig(epochs=1, add_fbank=False), loader=loader)
    assert [r["task"] for r in recs] == ["er"]
    assert "leaving out task ks" in caplog.text and "valid.lbl" in caplog.text
    with pytest.raises(BenchError, match=r"valid\.lbl: label file not found"):  # asked for explicitly → error
        run_bench(["fake"], ["ks"], d, tmp_path / "out2", BenchConfig(epochs=1), loader=loader)
