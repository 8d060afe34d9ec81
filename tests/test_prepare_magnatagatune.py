"""MagnaTagATune preparer on a fake tree in the real layout (quoted tab-separated annotations_final.csv,
mp3/<0-9a-f>/ dirs): top-N tags, directory splits, bad and missing mp3s skipped, malformed rows refused."""

from __future__ import annotations

import pytest

from audiossl.data.manifest import read_manifest
from audiossl.data.prepare import PrepareError
from audiossl.data.prepare.magnatagatune import prepare_magnatagatune
from tests.fake_corpora import write_audio, write_bad

OPTS = dict(progress=False, workers=1)
TAGS = ["guitar", "classical", "slow", "no voice", "rare"]


def _line(fields):
    return "\t".join(f'"{f}"' for f in fields) + "\n"


def make_mtt(root, rows=None):
    """Clips: (mp3 dir, name, tag values, kind) with kind ok | empty | notaudio | missing."""
    rows = rows or [
        ("0", "a-0", [1, 0, 1, 0, 0], "ok"), ("1", "a-1", [1, 1, 0, 0, 0], "ok"), ("b", "a-2", [0, 1, 1, 1, 0], "ok"),
        ("0", "a-3", [0, 0, 0, 0, 0], "ok"),  # no tag at all: left out
        ("c", "v-0", [1, 0, 0, 1, 0], "ok"), ("d", "t-0", [0, 1, 1, 0, 1], "ok"), ("f", "t-1", [1, 1, 0, 0, 0], "ok"),
        ("e", "t-2", [1, 0, 0, 0, 0], "empty"), ("2", "a-4", [1, 0, 0, 0, 0], "notaudio"),
        ("3", "a-5", [0, 1, 0, 0, 0], "missing"),
    ]
    text = _line(["clip_id", *TAGS, "mp3_path"])
    for k, (d, name, vals, kind) in enumerate(rows):
        rel = f"{d}/{name}.mp3"
        text += _line([str(k + 2), *map(str, vals), rel])
        path = root / "mp3" / rel
        if kind == "ok":
            write_audio(path, 0.5, freq=300 + 40 * k)
        elif kind != "missing":
            write_bad(path, kind)
    root.mkdir(parents=True, exist_ok=True)
    (root / "annotations_final.csv").write_text(text)
    return root


def test_top_tags_splits_and_bad_files(tmp_path):
    src = make_mtt(tmp_path / "mtt")
    res = prepare_magnatagatune(src, tmp_path / "out", top_n=3, **OPTS)
    # counts: guitar 6, classical 5, slow 3, no voice 2, rare 1 → top 3
    assert (tmp_path / "out" / "tags.txt").read_text().split("\n")[:3] == ["guitar", "classical", "slow"]
    m = {s: read_manifest(tmp_path / "out" / f"{s}.tsv", labels=["tags"]) for s in ("train", "valid", "test")}
    assert m["train"].root == (src / "mp3").resolve()
    assert [r.relpath for r in m["train"].rows] == ["0/a-0.mp3", "1/a-1.mp3", "b/a-2.mp3"]
    assert m["train"].labels["tags"] == ["guitar,slow", "guitar,classical", "classical,slow"]
    assert [r.relpath for r in m["valid"].rows] == ["c/v-0.mp3"] and m["valid"].labels["tags"] == ["guitar"]
    assert [r.relpath for r in m["test"].rows] == ["d/t-0.mp3", "f/t-1.mp3"]
    assert m["test"].labels["tags"] == ["classical,slow", "guitar,classical"]
    reasons = {p.path.split("mp3/")[-1]: p.reason for p in res.skipped}
    assert reasons == {"e/t-2.mp3": "empty", "2/a-4.mp3": "unreadable", "3/a-5.mp3": "missing"}
    assert "3/a-5.mp3" in (tmp_path / "out" / "skipped.txt").read_text()
    # the bench's tagging task reads it (labels checked before training)
    from audiossl.eval.tasks import get_task, resolve

    data = tmp_path / "data"
    data.mkdir()
    (data / "mtt").symlink_to(tmp_path / "out")
    assert set(resolve(get_task("tagging"), data).splits) == {"train", "dev", "test"}


def test_keep_untagged(tmp_path):
    src = make_mtt(tmp_path / "mtt")
    prepare_magnatagatune(src, tmp_path / "out", top_n=3, keep_untagged=True, **OPTS)
    m = read_manifest(tmp_path / "out" / "train.tsv", labels=["tags"])
    assert "0/a-3.mp3" in [r.relpath for r in m.rows] and "" in m.labels["tags"]


def test_malformed_annotations_are_refused(tmp_path):
    src = make_mtt(tmp_path / "mtt")
    ann = src / "annotations_final.csv"
    lines = ann.read_text().splitlines(keepends=True)
    ann.write_text("".join(lines[:3] + [lines[3].replace('"1"', '"x"', 1)] + lines[4:]))
    with pytest.raises(PrepareError, match=r"annotations_final\.csv:4: tag .* is 'x', expected 0 or 1"):
        prepare_magnatagatune(src, tmp_path / "out", **OPTS)
    ann.write_text("".join(lines[:2] + ['"99"\t"1"\n'] + lines[2:]))
    with pytest.raises(PrepareError, match=r"annotations_final\.csv:3: 2 fields, the header has 7"):
        prepare_magnatagatune(src, tmp_path / "out", **OPTS)
    ann.unlink()
    with pytest.raises(PrepareError, match=r"annotations_final\.csv: not found"):
        prepare_magnatagatune(src, tmp_path / "out", **OPTS)
