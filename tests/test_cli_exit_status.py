"""Exit statuses scripts can trust: every verb exits 1 when it produced nothing (all inputs
skipped, or none found) with the reasons printed, 0 when it produced something; and every
``--help`` that takes an upstream spec lists every scheme of the one table ``load_upstream`` uses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiossl.cli.main import main, make_parser
from audiossl.upstream.specs import SCHEMES, split_spec
from tests.fake_corpora import write_audio, write_bad


@pytest.fixture
def bad_manifest(tmp_path):
    """A manifest whose every row is a bad file (empty, not audio)."""
    root = tmp_path / "audio"
    write_bad(root / "a.wav", "empty")
    write_bad(root / "b.wav", "notaudio")
    tsv = tmp_path / "m" / "train.tsv"
    tsv.parent.mkdir()
    tsv.write_text(f"{root}\na.wav\t16000\nb.wav\t16000\n")
    return tsv


def _all(text: str, *needles: str) -> bool:
    return all(n in text for n in needles)


def test_extract_missing_file_exits_1_and_says_why(tmp_path, capsys):
    assert main(["extract", "fbank", str(tmp_path / "missing.wav"), str(tmp_path / "out")]) == 1
    cap = capsys.readouterr()
    assert _all(cap.out, "missing.wav", "no such file") and "nothing produced: all 1 audio files were skipped" in cap.err
    write_audio(tmp_path / "in" / "ok.wav", 0.5)
    write_bad(tmp_path / "in" / "bad.wav", "empty")
    assert main(["extract", "fbank", str(tmp_path / "in"), str(tmp_path / "out2")]) == 0  # some skipped: still 0
    assert main(["extract", "fbank", str(tmp_path / "in"), str(tmp_path / "out2")]) == 0  # resume: all done is success


def test_extract_empty_directory_exits_1(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["extract", "fbank", str(tmp_path / "empty"), str(tmp_path / "out")]) == 1
    assert "no audio files found" in capsys.readouterr().err


def test_features_and_kmeans_label_all_skipped_exit_1(tmp_path, bad_manifest, capsys):
    store = tmp_path / "feats"
    assert main(["features", "mfcc", str(bad_manifest), str(store), "--workers", "1", "--no-progress"]) == 1
    cap = capsys.readouterr()
    assert _all(cap.out, "a.wav", "b.wav") and "all 2 manifest rows were skipped" in cap.err
    from audiossl.tokenizers.kmeans_io import save_kmeans

    km = save_kmeans(tmp_path / "km", torch.randn(4, 39), {"feature_kind": "mfcc"})
    rc = main(["kmeans", "label", str(km), str(store), str(tmp_path / "train.km")])
    assert rc == 1 and "nothing produced" in capsys.readouterr().err


def test_prepare_dir_all_bad_exits_1(tmp_path, capsys):
    write_bad(tmp_path / "src" / "a.wav", "empty")
    write_bad(tmp_path / "src" / "b.wav", "short")
    assert main(["prepare", "dir", str(tmp_path / "src"), str(tmp_path / "out"), "--no-progress"]) == 1
    assert "all 2 audio files were skipped" in capsys.readouterr().err


def test_validate_all_bad_exits_1_some_bad_exits_0(tmp_path, capsys):
    write_bad(tmp_path / "a.wav", "empty")
    assert main(["validate", str(tmp_path), "--workers", "1"]) == 1
    assert "a.wav" in capsys.readouterr().out
    write_audio(tmp_path / "ok.wav", 0.5)
    assert main(["validate", str(tmp_path), "--workers", "1"]) == 0


def test_tokenizer_label_random_projection_all_skipped_exits_1(tmp_path, bad_manifest, capsys):
    rc = main(["tokenizer", "label", "random-projection", str(bad_manifest), "--out", str(tmp_path / "t.rp")])
    cap = capsys.readouterr()
    assert rc == 1 and "skipped 2" in cap.out and "all 2 manifest rows were skipped" in cap.err


def test_tokenizer_label_rvq_all_skipped_exits_1(tmp_path, bad_manifest, capsys, monkeypatch):
    import audiossl.cli.tokenizer_rvq as rvq

    class Coder:  # never called: every file is unreadable
        sample_rate, hop, codebook_size, num_codebooks, tokenizer_info = 24000, 320, 1024, 8, {"kind": "fake"}

        def encode(self, wavs, lengths):
            raise AssertionError("no audio should reach the coder")

    monkeypatch.setattr(rvq, "_load_coder", lambda args: Coder())
    rc = main(["tokenizer", "label", "rvq", str(tmp_path / "ckpt"), str(bad_manifest), "--out", str(tmp_path / "t.rvq")])
    cap = capsys.readouterr()
    assert rc == 1 and _all(cap.out, "a.wav", "b.wav") and "nothing produced" in cap.err


def test_bench_with_no_results_exits_1(tmp_path, capsys, monkeypatch):
    import audiossl.eval.harness as harness

    monkeypatch.setattr(harness, "run_bench", lambda *a, **k: [])
    assert main(["bench", "fbank", "--data", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    assert "nothing produced" in capsys.readouterr().err


@pytest.mark.parametrize("verb,args", [("extract", []), ("bench", []), ("tokenizer", ["train", "beats"])])
def test_help_lists_every_upstream_scheme(verb, args):
    parser, _ = make_parser(verb)
    if args:  # sub-command help
        for a in args:
            parser = next(act for act in parser._actions if hasattr(act, "choices") and isinstance(act.choices, dict)).choices[a]
    text = " ".join(parser.format_help().split())
    for name, scheme in SCHEMES.items():
        assert " ".join(scheme.usage.split()) in text, f"{verb} --help misses the {name!r} scheme"


def test_every_scheme_dispatches_to_its_loader():
    for name, scheme in SCHEMES.items():
        example = scheme.usage.split(" | ")[-1].replace("<", "").replace(">", "").replace("[", "").replace("]", "")
        assert split_spec(example)[0] == name, (name, example)
        module, func = scheme.loader.split(":")
        assert callable(getattr(__import__(module, fromlist=[func]), func))
    assert split_spec("/some/dir") == ("hubert", "/some/dir")
    assert split_spec("fbank:64+cmvn") == ("fbank", "fbank:64+cmvn")
