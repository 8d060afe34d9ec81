"""Task specs, data resolution and the bad-input checks of the bench (all before any training).

``make_demo`` writes a tiny corpus in the ``audiossl synth`` layout (plus ESC-50 folds and MTT tags)
from tones and noise with soundfile; the harness tests reuse it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiossl.data.manifest import Manifest, Row, write_manifest
from audiossl.eval.tasks import METRICS, TASKS, BenchError, available, check_frame_rate, effective, get_task, resolve

SR = 16000
PHONES = {"a": 400.0, "b": 750.0, "c": 1200.0, "d": 1900.0}


def _tone(freq: float, n: int, rng, amp: float = 0.3, wave: str = "sine") -> np.ndarray:
    t = np.arange(n) / SR
    ph = 2 * math.pi * freq * t
    x = np.sin(ph) if wave == "sine" else np.sign(np.sin(ph)) * 0.5 if wave == "square" else ((freq * t) % 1.0) * 2 - 1
    return (amp * x + 0.01 * rng.standard_normal(n)).astype(np.float32)


def _write_split(task_dir: Path, split: str, clips: list[tuple[str, np.ndarray]], labels: dict[str, list[str]]) -> None:
    rows = []
    for rel, wav in clips:
        p = task_dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, wav, SR)
        rows.append(Row(rel, len(wav)))
    write_manifest(Manifest(task_dir, rows, labels), task_dir / f"{split}.tsv")


def _speech_utt(rng, spk: int, n_words: int = 2):
    """Tones per phone (80 ms) with 20 ms gaps; speaker = a low hum. Returns wav, phn, ltr, ali."""
    seg, gap = int(0.08 * SR), int(0.02 * SR)
    parts, phn, ltr, ali = [np.zeros(gap, np.float32)], [], [], []
    for _ in range(n_words):
        word = list(rng.choice(list(PHONES), size=int(rng.integers(1, 3))))
        for ph in word:
            parts += [_tone(PHONES[ph], seg, rng), np.zeros(gap, np.float32)]
            phn.append(ph)
        ltr += [c.upper() for c in word] + ["|"]
    wav = np.concatenate(parts)
    wav = wav + 0.05 * np.sin(2 * math.pi * (120.0 + 90.0 * spk) * np.arange(len(wav)) / SR).astype(np.float32)
    # frame-level alignment at 100 Hz: one symbol per 160 samples
    sym = ["sil"] * (gap // 160)
    for ph in phn:
        sym += [ph] * (seg // 160) + ["sil"] * (gap // 160)
    ali = sym + ["sil"] * (math.ceil(len(wav) / 160) - len(sym))
    return wav.astype(np.float32), " ".join(phn), " ".join(ltr), " ".join(ali)


def _classes(root: Path, name: str, classes: dict[str, callable], per_class: dict[str, int], rng, ext: str = "lbl", extra=None):
    d = root / name
    for split, n in per_class.items():
        clips, labs, ext_labs = [], [], []
        for c, gen in classes.items():
            for k in range(n):
                clips.append((f"wav/{split}_{c.replace(' ', '_')}_{k}.wav", gen(rng)))
                labs.append(c)
                ext_labs.append(extra(c) if extra else None)
        labels = {ext: labs}
        if extra:
            labels.update({e: [x[e] for x in ext_labs] for e in ext_labs[0]})
        _write_split(d, split, clips, labels)


def make_demo(root: Path, seed: int = 0) -> Path:
    """Tiny corpus in the demo layout (a few 0.25–0.6 s clips per class and split)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.json").write_text(json.dumps({"size": "test", "seed": seed}))
    n = int(0.3 * SR)
    splits = {"train": 4, "valid": 2, "test": 2}
    for split, per in splits.items():  # speech: 3 speakers
        clips, labs = [], {"phn": [], "ltr": [], "spk": [], "ali": []}
        for spk in range(3):
            for k in range(per):
                wav, phn, ltr, ali = _speech_utt(rng, spk)
                clips.append((f"wav/spk{spk}/{split}{k}.wav", wav))
                for key, v in zip(("phn", "ltr", "spk", "ali"), (phn, ltr, f"spk{spk}", ali)):
                    labs[key].append(v)
        _write_split(root / "speech", split, clips, labs)
    clips, spks = [], []  # ASV: 3 unseen speakers, 3 utterances each
    for spk in range(3, 6):
        for k in range(3):
            clips.append((f"wav/spk{spk}/u{k}.wav", _speech_utt(rng, spk)[0]))
            spks.append(f"spk{spk}")
    _write_split(root / "speakers_unseen", "test", clips, {"spk": spks})
    ids = [c[0][:-4] for c in clips]
    trials = [f"{int(spks[i] == spks[j])} {ids[i]} {ids[j]}" for i in range(len(ids)) for j in range(i + 1, len(ids))]
    (root / "speakers_unseen" / "trials.txt").write_text("\n".join(trials) + "\n")
    tones = {w: (lambda f: (lambda r: _tone(f, n, r)))(f) for w, f in [("yes", 500.0), ("no", 1500.0), ("_silence_", 0.0)]}
    _classes(root, "keywords", tones, splits, rng)
    emo = {e: (lambda m: (lambda r: _tone(600.0, n, r) * (0.5 + 0.5 * np.sin(2 * math.pi * m * np.arange(n) / SR)).astype(np.float32)))(m)
           for e, m in [("calm", 2.0), ("excited", 12.0)]}
    _classes(root, "prosody", emo, splits, rng)
    notes = {i: (lambda w: (lambda r: _tone(440.0 * 2 ** ((int(r.integers(0, 2)) * 7) / 12), n, r, wave=w)))(w)
             for i, w in [("string", "saw"), ("organ", "square"), ("flute", "sine")]}
    _classes(root, "music/notes", notes, splits, rng, extra=lambda c: {"pitch": "69"})
    keys = {k: (lambda f: (lambda r: _tone(f, n, r) + _tone(f * 1.5, n, r)))(f) for k, f in [("C major", 261.6), ("A minor", 440.0), ("G major", 392.0)]}
    _classes(root, "music/keys", keys, splits, rng)
    ev = {e: (lambda f: (lambda r: _tone(f, n, r) if f else 0.3 * r.standard_normal(n).astype(np.float32)))(f) for e, f in [("dog", 800.0), ("rain", 0.0)]}
    _classes(root, "esc50", ev, {f"fold{k}": 2 for k in range(1, 6)}, rng)
    tags = {t: (lambda f: (lambda r: _tone(f, n, r)))(f) for t, f in [("guitar,rock", 300.0), ("piano", 900.0), ("piano,rock", 2000.0)]}
    _classes(root, "mtt", tags, splits, rng, ext="tags")
    events = {t: (lambda f: (lambda r: _tone(f, n, r) + (0.3 * r.standard_normal(n).astype(np.float32) if "Rain" in t else 0)))(f)
              for t, f in [("Dog,Bark", 700.0), ("Rain", 1200.0), ("Dog,Rain", 400.0)]}
    _classes(root, "audioset", events, splits, rng, ext="tags")
    return root


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("demo"))


def test_registry_specs_are_complete():
    for name, spec in TASKS.items():
        assert spec.name == name and spec.metric in METRICS
        # every task has a test split; only QbE trains nothing (dev picks its layer)
        assert spec.folds or (spec.train and spec.test) or (spec.objective == "qbe" and spec.dev and spec.test)
    assert get_task("asr").head.hidden == 1024 and get_task("asr").head.kind == "bilstm"
    assert get_task("pr").head.kind == "linear" and get_task("sid").head.kind == "pool_linear"
    assert get_task("key").head.kind == "pool_mlp" and get_task("asv").head.kind == "xvector"
    with pytest.raises(BenchError, match="unknown task 'nope'"):
        get_task("nope")


def test_demo_resolution_and_demo_defaults(demo):
    assert set(available(demo)) >= {"pr", "asr", "pf", "ks", "er", "sid", "asv", "instrument", "pitch", "key", "esc50", "tagging", "audioset"}
    assert "genre" not in available(demo) and "ic" not in available(demo)
    td = resolve(get_task("pr"), demo)
    assert td.splits["train"] == demo / "speech" / "train.tsv" and td.splits["dev"] == demo / "speech" / "valid.tsv"
    asv = resolve(get_task("asv"), demo)
    assert asv.trials == demo / "speakers_unseen" / "trials.txt" and asv.splits["test"].parent.name == "speakers_unseen"
    assert effective(get_task("asr"), demo).head.hidden == 128  # demo-size BiLSTM
    assert effective(get_task("asr"), demo).lr == 1e-3 and get_task("asr").lr == 1e-4  # 1e-4 never left the CTC blank plateau on the demo
    assert effective(get_task("asr"), demo, epochs=2).epochs == 2
    esc = resolve(get_task("esc50"), demo)
    folds = esc.folds()
    assert len(folds) == 5 and folds[0] == ("fold1", ["fold3", "fold4", "fold5"], "fold2", "fold1")
    assert all(test not in train and dev not in train for _, train, dev, test in folds)


def test_resolve_corpus_dir_directly(demo):
    """--data pointing at one prepared corpus (bare split names) works too."""
    td = resolve(get_task("ks"), demo / "keywords")
    assert td.splits["test"] == demo / "keywords" / "test.tsv"


def test_missing_label_file_is_named(demo, tmp_path):
    import shutil

    d = tmp_path / "d"
    shutil.copytree(demo / "speech", d / "speech")
    (d / "speech" / "valid.phn").unlink()
    with pytest.raises(BenchError, match=r"valid\.phn.*label file not found"):
        resolve(get_task("pr"), d)


def test_missing_split_and_empty_split(demo, tmp_path):
    import shutil

    d = tmp_path / "d"
    shutil.copytree(demo / "keywords", d / "keywords")
    (d / "keywords" / "test.tsv").unlink()
    with pytest.raises(BenchError, match=r"no test manifest.*keywords/test\.tsv"):
        resolve(get_task("ks"), d)
    (d / "keywords" / "test.tsv").write_text(str(d / "keywords") + "\n")
    (d / "keywords" / "test.lbl").write_text("")
    with pytest.raises(BenchError, match=r"test split .*test\.tsv is empty"):
        resolve(get_task("ks"), d)


def test_bad_trials(demo, tmp_path):
    import shutil

    d = tmp_path / "d"
    for sub in ("speech", "speakers_unseen"):
        shutil.copytree(demo / sub, d / sub)
    (d / "speakers_unseen" / "trials.txt").write_text("1 wav/spk3/u0 wav/spk9/zz\n")
    with pytest.raises(BenchError, match=r"trials\.txt:1: utterance 'wav/spk9/zz' is not in the test manifest"):
        resolve(get_task("asv"), d)


def test_frame_rate_check(demo):
    td = resolve(get_task("pf"), demo)
    assert td.label_rate == 100.0
    assert check_frame_rate(td, 100.0, "fbank") == 1
    assert check_frame_rate(td, 50.0, "hubert") == 2  # 100 Hz labels subsampled for a 50 Hz model
    with pytest.raises(BenchError, match=r"train\.ali are at 100 Hz but upstream odd gives 30 frames/s"):
        check_frame_rate(td, 30.0, "odd")
    assert check_frame_rate(resolve(get_task("pr"), demo), 30.0, "odd") == 1  # CTC tasks have no frame labels
