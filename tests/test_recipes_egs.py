"""The corpus recipes (egs/librispeech/{hubert,wavlm,data2vec2}, egs/audioset/beats, egs/esc50/beats, egs/music/mert):
syntax, --help, option checks, and tiny end-to-end runs (4 steps per training stage) on trees in
each corpus's real layout, whose reruns are no-ops."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["egs/librispeech/hubert/run.sh", "egs/librispeech/wavlm/run.sh", "egs/librispeech/data2vec2/run.sh", "egs/audioset/beats/run.sh", "egs/esc50/beats/run.sh", "egs/music/mert/run.sh"]
ENV = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")


def _bash(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("script", SCRIPTS)
def test_syntax_and_help(script):
    assert _bash("-n", script).returncode == 0
    r = _bash(script, "--help")
    assert r.returncode == 0, r.stderr
    assert "stage 0" in r.stdout and "stage 1" in r.stdout and ".done.stage" in r.stdout
    assert not r.stdout.startswith("!")  # the header, not the shebang


@pytest.mark.parametrize("script, needs", [
    ("egs/librispeech/hubert/run.sh", "--librispeech /path/to/LibriSpeech is required"),
    ("egs/librispeech/wavlm/run.sh", "--librispeech /path/to/LibriSpeech is required"),
    ("egs/librispeech/data2vec2/run.sh", "--librispeech /path/to/LibriSpeech is required"),
    ("egs/audioset/beats/run.sh", "--clips DIR --train_csv CSV --valid_csv CSV are required"),
    ("egs/esc50/beats/run.sh", "--esc50 DIR (with audio/ and meta/esc50.csv) is required"),
    ("egs/music/mert/run.sh", "--music DIR is required"),
])
def test_required_options_and_unknown_option(script, needs, tmp_path):
    r = _bash(script, "--exp", str(tmp_path / "e"))
    assert r.returncode != 0 and needs in r.stderr
    r = _bash(script, "--no_such_option", "1")
    assert r.returncode != 0 and "unknown option --no_such_option" in r.stderr


def test_bad_recipe_and_size_refused(tmp_path):
    r = _bash("egs/audioset/beats/run.sh", "--clips", ".", "--train_csv", "a", "--valid_csv", "b", "--size", "huge",
              "--exp", str(tmp_path / "a"))
    assert r.returncode != 0 and "--size huge" in r.stderr
    r = _bash("egs/music/mert/run.sh", "--size", "1b", "--exp", str(tmp_path / "m"))
    assert r.returncode != 0 and "recipes/mert/1b.yaml not found" in r.stderr
    r = _bash("egs/librispeech/hubert/run.sh", "--size", "xl", "--exp", str(tmp_path / "l"))
    assert r.returncode != 0 and "--size xl / --config" in r.stderr and "recipe not found" in r.stderr
    r = _bash("egs/librispeech/hubert/run.sh", "--size", "tiny", "positional")
    assert r.returncode != 0 and "unexpected argument 'positional'" in r.stderr
    r = _bash("egs/librispeech/wavlm/run.sh", "--size", "xl", "--exp", str(tmp_path / "w"))
    assert r.returncode != 0 and "recipes/wavlm/xl.yaml: recipe not found" in r.stderr


def test_split_by_hash_is_deterministic_and_never_empty(tmp_path):
    from audiossl.data.manifest import Manifest, Row, read_manifest, write_manifest

    rows = [Row(f"d/{i:03d}.wav", 16000) for i in range(200)]
    write_manifest(Manifest(tmp_path, rows), tmp_path / "all.tsv")
    script = str(ROOT / "egs/music/local/split_by_hash.py")
    outs = []
    for name in ("a", "b"):
        r = subprocess.run([sys.executable, script, str(tmp_path / "all.tsv"), str(tmp_path / name), "--valid-percent", "10"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        outs.append([[x.relpath for x in read_manifest(tmp_path / name / f"{s}.tsv").rows] for s in ("train", "valid")])
    assert outs[0] == outs[1]
    train, valid = outs[0]
    assert sorted(train + valid) == [r.relpath for r in rows] and 5 <= len(valid) <= 40
    # Adding files never moves an existing file between splits.
    write_manifest(Manifest(tmp_path, rows + [Row("e/new.wav", 16000)]), tmp_path / "all2.tsv")
    subprocess.run([sys.executable, script, str(tmp_path / "all2.tsv"), str(tmp_path / "c"), "--valid-percent", "10"], check=True)
    assert set(valid) <= {x.relpath for x in read_manifest(tmp_path / "c" / "valid.tsv").rows}
    # Two files: one each, whatever their hashes.
    write_manifest(Manifest(tmp_path, rows[:2]), tmp_path / "two.tsv")
    subprocess.run([sys.executable, script, str(tmp_path / "two.tsv"), str(tmp_path / "t"), "--valid-percent", "1"], check=True)
    assert [len(read_manifest(tmp_path / "t" / f"{s}.tsv").rows) for s in ("train", "valid")] == [1, 1]


def _stage_markers(exp: Path) -> set[str]:
    return {p.name for p in exp.glob(".done.stage*")}


def _assert_checkpoint(path: Path) -> None:
    assert (path / "model.safetensors").is_file() and (path / "config.json").is_file(), path


def _fake_audioset(root: Path) -> dict[str, Path]:
    """A train and an eval segments CSV (with rows whose clips are missing) + 12 short clips under
    the names AudioSet downloaders use, and one corrupt clip."""
    clips = root / "clips"
    clips.mkdir(parents=True)
    rng = np.random.default_rng(0)
    header = "# Segments csv created Sun Mar  5 10:54:31 2017\n# YTID, start_seconds, end_seconds, positive_labels\n"
    rows = {"train": [], "valid": []}
    for i in range(12):
        ytid = f"clip{i:02d}_abcd"[:11].ljust(11, "x")
        split = "valid" if i % 4 == 0 else "train"
        rows[split].append(f'{ytid}, {i}.000, {i + 10}.000, "/m/{i % 3}"\n')
        name = (f"{ytid}.wav", f"Y{ytid}.wav", f"{ytid}_{i}.000_{i + 10}.000.flac")[i % 3]
        t = np.arange(16000 * 2) / 16000
        audio = 0.2 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.01 * rng.standard_normal(t.size)
        sf.write(clips / name, audio.astype(np.float32), 16000)
    rows["train"].append('gone0000000, 0.000, 10.000, "/m/0"\n')
    rows["train"].append('broken00000, 0.000, 10.000, "/m/1"\n')
    (clips / "broken00000.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
    csvs = {}
    for split, lines in rows.items():
        csvs[split] = root / f"{split}_segments.csv"
        csvs[split].write_text(header + "".join(lines))
    return {"clips": clips, **csvs}


def _assert_rerun_is_noop(args: list[str], stages: int, watched: list[Path]) -> None:
    """Running the same command again skips every stage and rewrites nothing."""
    before = [p.stat().st_mtime_ns for p in watched]
    again = _bash(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("already done") == stages
    assert [p.stat().st_mtime_ns for p in watched] == before


@pytest.fixture(scope="module")
def librispeech(tmp_path_factory) -> Path:
    """LibriSpeech's layout from eSpeak-synthesised speech: two training splits (24 + 6 utterances) and dev-clean (6)."""
    from tests.fake_corpora import librispeech_from_synth, synth_speech

    tmp = tmp_path_factory.mktemp("librispeech")
    splits = {"train": "train-clean-100", "test": "train-other-500", "valid": "dev-clean"}
    return librispeech_from_synth(synth_speech(tmp / "synth"), tmp, splits)


@pytest.mark.slow
def test_librispeech_hubert_tiny_end_to_end_and_rerun_is_noop(librispeech, tmp_path):
    exp = tmp_path / "exp"
    args = ["egs/librispeech/hubert/run.sh", "--librispeech", str(librispeech), "--size", "tiny", "--exp", str(exp),
            "--train_splits", "train-clean-100 train-other-500", "--nj", "1", "--k1", "8", "--k2", "6", "--percent", "1.0",
            "--steps1", "4", "--steps2", "4", "log_every=2", "checkpoint_every=4"]
    r = _bash(*args)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert _stage_markers(exp) == {f".done.stage{n}" for n in range(7)}
    n_rows = [len((exp / "data" / f"{s}.tsv").read_text().splitlines()) - 1 for s in ("train", "valid")]
    assert n_rows == [24 + 6, 6] and (exp / "data/train.wrd").read_text().split("\n")[0].isupper()
    # The label rate and class count travel with the labels: MFCC units at 100 Hz, layer units at 50 Hz.
    for it, rate, k in (("it1", 100.0, 8), ("it2", 50.0, 6)):
        meta = json.loads((exp / it / "data/train.km.json").read_text())
        assert (meta["frame_rate"], meta["num_classes"]) == (rate, k)
        run = json.loads((exp / it / "exp/run_config.json").read_text())
        assert run["model"]["num_classes"] == k and run["run"]["data"]["label_rate"] == rate
        assert run["run"]["log_every"] == 2  # key=value words reach the trainer
        _assert_checkpoint(exp / it / "exp/checkpoint")
    _assert_rerun_is_noop(args, 7, [exp / "it2/exp/checkpoint/model.safetensors", exp / "it2/data/train.km", exp / "data/train.tsv"])


@pytest.mark.slow
def test_librispeech_wavlm_tiny_end_to_end(librispeech, tmp_path):
    """The HuBERT recipe's stages with recipes/wavlm/tiny.yaml: both iterations train WavLM, and stage 4
    reads the iteration-1 WavLM checkpoint through the generic upstream path (`audiossl features model`)."""
    exp = tmp_path / "exp"
    args = ["egs/librispeech/wavlm/run.sh", "--librispeech", str(librispeech), "--size", "tiny", "--exp", str(exp),
            "--train_splits", "train-clean-100", "--nj", "1", "--k1", "6", "--k2", "5", "--percent", "1.0",
            "--steps1", "2", "--steps2", "2", "log_every=1", "checkpoint_every=2", "validate_every=null"]
    r = _bash(*args)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert _stage_markers(exp) == {f".done.stage{n}" for n in range(7)}
    assert "wavlm (tiny) iteration 1" in r.stderr and "wavlm (tiny) iteration 2" in r.stderr
    feats = json.loads((exp / "feats/it1_L1/train/meta.json").read_text())["extra"]["feature"]
    assert (feats["kind"], feats["layer"], feats["dim"], feats["frame_rate"]) == ("model", 1, 128, 50.0)
    assert Path(feats["ckpt"]).resolve() == (exp / "it1/exp/checkpoint").resolve()
    for it, rate, k in (("it1", 100.0, 6), ("it2", 50.0, 5)):
        meta = json.loads((exp / it / "exp/checkpoint/config.json").read_text())
        assert meta["family"] == "wavlm" and meta["config"]["num_classes"] == k and meta["config"]["mix_prob"] == 0.2
        assert json.loads((exp / it / "data/train.km.json").read_text())["frame_rate"] == rate
    _assert_rerun_is_noop(args, 7, [exp / "it2/exp/checkpoint/model.safetensors", exp / "it2/data/train.km"])
def test_librispeech_data2vec2_tiny_end_to_end_and_rerun_is_noop(librispeech, tmp_path):
    exp = tmp_path / "exp"
    args = ["egs/librispeech/data2vec2/run.sh", "--librispeech", str(librispeech), "--size", "tiny", "--exp", str(exp),
            "--train_splits", "train-clean-100 train-other-500", "--nj", "1", "--steps", "4", "log_every=2", "checkpoint_every=4"]
    r = _bash(*args)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert _stage_markers(exp) == {".done.stage0", ".done.stage1"}
    n_rows = [len((exp / "data" / f"{s}.tsv").read_text().splitlines()) - 1 for s in ("train", "valid")]
    assert n_rows == [24 + 6, 6]
    run = json.loads((exp / "exp/run_config.json").read_text())
    assert run["run"]["model"]["family"] == "data2vec2" and run["label_path"] is None and run["run"]["log_every"] == 2
    _assert_checkpoint(exp / "exp/checkpoint")
    assert json.loads((exp / "exp/checkpoint/config.json").read_text())["extra"]["step"] == 4
    _assert_rerun_is_noop(args, 2, [exp / "exp/checkpoint/model.safetensors", exp / "data/train.tsv"])


@pytest.fixture(scope="module")
def audioset_run(tmp_path_factory) -> tuple[list[str], Path, subprocess.CompletedProcess]:
    tmp_path = tmp_path_factory.mktemp("audioset")
    tree = _fake_audioset(tmp_path / "audioset")
    exp = tmp_path / "exp"
    args = ["egs/audioset/beats/run.sh", "--clips", str(tree["clips"]), "--train_csv", str(tree["train"]),
            "--valid_csv", str(tree["valid"]), "--size", "tiny", "--exp", str(exp), "--nj", "1",
            "--steps1", "4", "--steps2", "4", "--steps3", "4", "--tok_steps", "4"]
    return args, exp, _bash(*args)


@pytest.mark.slow
def test_audioset_beats_tiny_end_to_end_and_rerun_is_noop(audioset_run):
    args, exp, r = audioset_run
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert _stage_markers(exp) == {f".done.stage{n}" for n in range(9)}
    data = exp / "data"
    assert len((data / "train.tsv").read_text().splitlines()) == 1 + 9  # root line + the 9 good train clips
    assert (data / "missing_train.txt").read_text().startswith("gone0000000")
    assert "broken00000.wav" in (data / "skipped.txt").read_text()
    for ext in ("rp", "tok1", "tok2"):
        assert (data / f"train.{ext}").is_file() and (data / f"valid.{ext}.json").is_file()
    for ckpt in ("it1/exp/checkpoint", "it2/exp/checkpoint", "it3/exp/checkpoint", "tok1/checkpoint", "tok2/checkpoint"):
        _assert_checkpoint(exp / ckpt)
    _assert_rerun_is_noop(args, 9, [exp / "it3/exp/checkpoint/model.safetensors", data / "train.tok2", data / "train.tsv"])


@pytest.mark.slow
def test_esc50_beats_end_to_end_and_rerun_is_noop(audioset_run, tmp_path):
    """ESC-50 5-fold bench of the AudioSet recipe's iteration-3 checkpoint (real ESC-50 layout, 1 head epoch)."""
    from tests.fake_corpora import make_esc50

    ckpt = audioset_run[1] / "it3/exp/checkpoint"
    if not (ckpt / "model.safetensors").is_file():
        pytest.fail("the AudioSet recipe did not produce its iteration-3 checkpoint (see the AudioSet test)")
    esc = make_esc50(tmp_path / "esc50")["root"]
    exp = tmp_path / "esc_exp"
    args = ["egs/esc50/beats/run.sh", "--esc50", str(esc), "--upstream", str(ckpt), "--exp", str(exp), "--epochs", "1", "--nj", "1"]
    r = _bash(*args)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert _stage_markers(exp) == {".done.stage0", ".done.stage1"}
    assert all((exp / "data/esc50" / f"fold{k}.lbl").is_file() for k in range(1, 6))
    assert "1-900-A-0.wav" in (exp / "data/esc50/skipped.txt").read_text()
    table = (exp / "bench/results.md").read_text()
    assert "esc50" in table and "fbank" in table and str(ckpt) in table
    _assert_rerun_is_noop(args, 2, [exp / "bench/results.md", exp / "data/esc50/fold1.tsv"])


@pytest.mark.slow
def test_music_mert_tiny_end_to_end_and_rerun_is_noop(tmp_path):
    corpus = tmp_path / "corpus"
    subprocess.run([sys.executable, "-m", "audiossl.cli.main", "synth", str(corpus), "--size", "tiny", "--workers", "1"],
                   check=True, capture_output=True, env=ENV, timeout=300)
    music = corpus / "music" / "notes" / "wav"
    exp = tmp_path / "exp"
    args = ["egs/music/mert/run.sh", "--music", str(music), "--size", "tiny", "--exp", str(exp), "--nj", "1",
            "--steps", "4", "--rvq_steps", "4", "--stop_stage", "3"]
    r = _bash(*args)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert _stage_markers(exp) == {f".done.stage{n}" for n in range(4)}
    data = exp / "data"
    n_files = sum(1 for p in music.rglob("*.wav"))
    n_rows = [len((data / f"{s}.tsv").read_text().splitlines()) - 1 for s in ("train", "valid")]
    assert sum(n_rows) == n_files and min(n_rows) >= 1
    assert (data / "train.codes").is_file() and (data / "valid.codes.json").is_file()
    _assert_checkpoint(exp / "rvq/checkpoint")
    _assert_checkpoint(exp / "mert/exp/checkpoint")
    _assert_rerun_is_noop(args, 4, [exp / "mert/exp/checkpoint/model.safetensors", data / "train.codes", data / "train.tsv"])
    # The probe stage needs its data and says so.
    r = _bash(*args[:-2], "--stage", "4")
    assert r.returncode != 0 and "--probe_data DIR" in r.stderr
