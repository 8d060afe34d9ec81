"""AudioSet preparer: segments CSVs + a clips directory with the real file-name conventions,
rows without clips counted, corrupt clips skipped with their reason, display names in .tags."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from audiossl.data.manifest import read_manifest
from audiossl.data.prepare import PrepareError
from audiossl.data.prepare.audioset import name_readings, prepare_audioset, read_segments_csv

OPTS = dict(progress=False, workers=1)
HEADER = (
    "# Segments csv created Sun Mar  5 10:54:31 2017\n"
    "# num_ytids=6, num_segs=6, num_unique_labels=3, num_positive_labels=8\n"
    "# YTID, start_seconds, end_seconds, positive_labels\n"
)
CLASSES = 'index,mid,display_name\n0,/m/09x0r,"Speech"\n1,/m/05zppz,"Male speech, man speaking"\n2,/m/04rlf,"Music"\n'


def _wav(path, seconds=0.5, sr=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "audioset"
    root.mkdir()
    train = root / "balanced_train_segments.csv"
    train.write_text(HEADER + "".join([
        '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/m/05zppz"\n',   # <YTID>.wav
        'Yabc_def-12, 0.000, 10.000, "/m/04rlf"\n',              # an id that starts with Y, stored as Y<YTID>.flac
        'a_b_c_d_e_f, 12.500, 22.500, "/m/09x0r"\n',             # <YTID>_<start>_<end>.wav, '_' inside the id
        'ZZZZZZZZZZZ, 5.000, 15.000, "/m/04rlf"\n',              # <YTID>_<start in ms>.wav
        'NoClipHere1, 0.000, 10.000, "/m/04rlf"\n',              # never downloaded
        'corruptclip, 0.000, 10.000, "/m/09x0r"\n',              # a broken download
        'wrongstart1, 20.000, 30.000, "/m/09x0r"\n',             # only another segment of the video is on disk
    ]))
    evals = root / "eval_segments.csv"
    evals.write_text(HEADER + 'EvalClip001, 1.000, 11.000, "/m/04rlf"\nEvalMissing, 1.0, 11.0, "/m/04rlf"\n')
    clips = root / "clips"
    _wav(clips / "--PJHxphWEs.wav")
    _wav(clips / "sub" / "YYabc_def-12.flac")
    _wav(clips / "a_b_c_d_e_f_12.500_22.500.wav")
    _wav(clips / "ZZZZZZZZZZZ_5000.wav")
    (clips / "corruptclip.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    _wav(clips / "wrongstart1_0.000_10.000.wav")
    _wav(clips / "eval" / "EvalClip001_1.000_11.000.ogg")
    _wav(clips / "notinanycsv.wav")
    (root / "class_labels_indices.csv").write_text(CLASSES)
    return {"root": root, "clips": clips, "csvs": [train, evals], "classes": root / "class_labels_indices.csv"}


def test_prepare_matches_names_counts_missing_and_skips_corrupt(tree, tmp_path):
    out = tmp_path / "out"
    res = prepare_audioset(tree["clips"], out, csv_files=tree["csvs"], class_labels=tree["classes"], **OPTS)
    assert res.counts == {"balanced_train": 4, "eval": 1}
    m = read_manifest(out / "balanced_train.tsv", labels=["tags", "mid"])
    assert m.root == tree["clips"].resolve()
    got = dict(zip((r.relpath for r in m.rows), zip(m.labels["tags"], m.labels["mid"])))
    assert got == {
        "--PJHxphWEs.wav": ("Speech,Male speech; man speaking", "/m/09x0r,/m/05zppz"),
        "sub/YYabc_def-12.flac": ("Music", "/m/04rlf"),
        "a_b_c_d_e_f_12.500_22.500.wav": ("Speech", "/m/09x0r"),
        "ZZZZZZZZZZZ_5000.wav": ("Music", "/m/04rlf"),
    }
    assert all(r.num_samples == 8000 for r in m.rows)
    ev = read_manifest(out / "eval.tsv", labels=["tags"])
    assert [r.relpath for r in ev.rows] == ["eval/EvalClip001_1.000_11.000.ogg"]
    # Missing rows: counted per split and listed, not reported as bad files.
    assert res.missing == {"balanced_train": 2, "eval": 1}
    assert {line.split("\t")[0] for line in (out / "missing_balanced_train.txt").read_text().splitlines()} == {"NoClipHere1", "wrongstart1"}
    assert (out / "missing_eval.txt").read_text().startswith("EvalMissing\t1.000\t11.000")
    # The corrupt clip: skipped with its path and reason, in skipped.txt and the summary.
    assert [p.path for p in res.skipped] == [str(tree["clips"] / "corruptclip.wav")]
    assert res.skipped[0].reason and res.skipped[0].reason in (out / "skipped.txt").read_text()
    summary = res.summary()
    assert "skipped 1 files" in summary and "balanced_train=2, eval=1" in summary and "normal for AudioSet" in summary


def test_without_class_labels_tags_are_mids_and_names_from_arg(tree, tmp_path):
    out = tmp_path / "o"
    res = prepare_audioset(tree["clips"], out, csv_files=[f"train={tree['csvs'][0]}"], **OPTS)
    assert list(res.counts) == ["train"]
    m = read_manifest(out / "train.tsv", labels=["tags"])
    assert "/m/09x0r,/m/05zppz" in m.labels["tags"]


def test_default_csvs_found_beside_clips(tree, tmp_path):
    res = prepare_audioset(tree["clips"], tmp_path / "o", **OPTS)  # CSVs live in the parent of the clips dir
    assert set(res.counts) == {"balanced_train", "eval"}


def test_name_readings():
    assert name_readings("--PJHxphWEs") == [("--PJHxphWEs", None)]
    assert ("--PJHxphWEs", 30.0) in name_readings("Y--PJHxphWEs_30.000_40.000")
    assert ("YYabc_def-1", None) not in name_readings("YYabc_def-12")
    assert name_readings("short") == []


@pytest.mark.parametrize("row, message", [
    ('--PJHxphWEs, 30.000, 40.000, /m/09x0r, /m/05zppz\n', r"segments.csv:4: expected 4 fields .*quote the label list"),
    ('tooshort, 0, 10, "/m/09x0r"\n', r"segments.csv:4: YTID 'tooshort' is not an 11-character"),
    ('--PJHxphWEs, abc, 40.000, "/m/09x0r"\n', r"segments.csv:4: start/end 'abc', '40.000' are not numbers"),
    ('--PJHxphWEs, 40.000, 30.000, "/m/09x0r"\n', r"segments.csv:4: segment 40.0..30.0 s is empty"),
    ('--PJHxphWEs, 0, 10, ""\n', r"segments.csv:4: no labels for --PJHxphWEs"),
])
def test_bad_csv_rows_name_file_and_line(tmp_path, row, message):
    path = tmp_path / "bad_segments.csv"
    path.write_text(HEADER + row)
    with pytest.raises(PrepareError, match=message):
        read_segments_csv(path)


def test_duplicate_row_reported_and_first_kept(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(HEADER + '--PJHxphWEs, 0, 10, "/m/a"\n--PJHxphWEs, 10, 20, "/m/b"\n')
    rows, dups = read_segments_csv(path)
    assert [r.mids for r in rows] == [("/m/a",)]
    assert dups[0].path == f"{path}:5" and "line 4" in dups[0].detail


def test_errors(tree, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PrepareError, match="no segments CSV given"):
        prepare_audioset(empty, tmp_path / "o", **OPTS)
    tree["classes"].write_text("index,mid,display_name\n0,/m/09x0r,Speech\n")
    with pytest.raises(PrepareError, match=r"balanced_train_segments.csv:4: label\(s\) \['/m/05zppz'\] are not in"):
        prepare_audioset(tree["clips"], tmp_path / "o", csv_files=tree["csvs"], class_labels=tree["classes"], **OPTS)
    with pytest.raises(PrepareError, match="map to the same split name"):
        prepare_audioset(tree["clips"], tmp_path / "o", csv_files=[f"a={tree['csvs'][0]}", f"a={tree['csvs'][1]}"], **OPTS)


def test_cli(tree, tmp_path):
    out = tmp_path / "cli"
    r = subprocess.run([sys.executable, "-m", "audiossl.cli.main", "prepare", "audioset", str(tree["clips"]), str(out),
                        "--csv", str(tree["csvs"][1]), "--class-labels", str(tree["classes"]), "--no-progress"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "eval=1" in r.stdout and "CSV rows without a clip: eval=1" in r.stdout
    assert read_manifest(out / "eval.tsv", labels=["tags"]).labels["tags"] == ["Music"]
