"""Plain directory and Kaldi wav.scp preparers, and the `audiossl prepare` CLI."""

import pytest

from audiossl.cli.main import main
from audiossl.data.manifest import read_manifest
from audiossl.data.prepare import PREPARERS, PrepareError
from audiossl.data.prepare.generic import prepare_dir, prepare_wav_scp
from tests.fake_corpora import REASON, write_audio, write_bad

OPTS = dict(progress=False, workers=1)


@pytest.fixture
def audio_dir(tmp_path):
    d = tmp_path / "audio"
    good = ["a.wav", "sub/b.flac", "sub/deeper/c.wav"]
    for k, rel in enumerate(good):
        write_audio(d / rel, 0.2 + 0.1 * k)
    bad = {}
    for kind in ("empty", "notaudio", "short"):
        write_bad(d / f"bad/{kind}.wav", kind)
        bad[f"bad/{kind}.wav"] = REASON[kind]
    (d / "notes.txt").write_text("not audio, not listed\n")
    return d, good, bad


def test_dir(audio_dir, tmp_path):
    d, good, bad = audio_dir
    res = prepare_dir(d, tmp_path / "o", split="all", **OPTS)
    m = read_manifest(tmp_path / "o" / "all.tsv")
    assert m.root == d.resolve() and m.labels == {}
    assert [r.relpath for r in m.rows] == sorted(good)
    assert [r.num_samples for r in m.rows] == [3200, 4800, 6400]
    assert {p.path: p.reason for p in res.skipped} == {str(d / r): why for r, why in bad.items()}
    with pytest.raises(PrepareError, match="no audio files"):
        prepare_dir(tmp_path / "o", tmp_path / "o2", **OPTS)


@pytest.fixture
def kaldi(audio_dir, tmp_path):
    d, good, bad = audio_dir
    data = tmp_path / "data" / "dev"
    data.mkdir(parents=True)
    utts = {"spkB-u2": d / "sub/b.flac", "spkA-u1": d / "a.wav", "spkA-u3": d / "sub/deeper/c.wav", "spkB-u9": d / "bad/notaudio.wav"}
    (data / "wav.scp").write_text("".join(f"{u} {p}\n" for u, p in utts.items()))
    (data / "text").write_text("spkA-u1 HELLO  WORLD\nspkB-u2 GOOD MORNING\nspkA-u3\nspkB-u9 BROKEN\n")
    (data / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in utts))
    return data, utts


def test_wav_scp_with_text_and_utt2spk(kaldi, tmp_path):
    data, utts = kaldi
    res = prepare_wav_scp(data / "wav.scp", tmp_path / "o", **OPTS)
    assert res.counts == {"dev": 3}  # split named after the data dir
    m = read_manifest(tmp_path / "o" / "dev.tsv")
    assert m.ids == ["spkA-u1", "spkA-u3", "spkB-u2"]  # Kaldi order, bad file left out
    assert m.labels["wrd"] == ["HELLO WORLD", "", "GOOD MORNING"]
    assert m.labels["spk"] == ["spkA", "spkA", "spkB"]
    assert [str(p) for p in m.paths()] == [str(utts[u].resolve()) for u in m.ids]
    assert [(p.path, p.reason) for p in res.skipped] == [(str(utts["spkB-u9"].resolve()), "unreadable")]


def test_wav_scp_relative_paths_and_no_labels(audio_dir, tmp_path):
    d, _, _ = audio_dir
    scp = tmp_path / "list.scp"
    scp.write_text("x1 audio/a.wav\nx2 audio/sub/b.flac\n")
    res = prepare_wav_scp(scp, tmp_path / "o", split="mine", base_dir=tmp_path, **OPTS)
    m = read_manifest(tmp_path / "o" / "mine.tsv")
    assert res.counts == {"mine": 2} and set(m.labels) == {"ids"}
    assert m.root == d.resolve() and [r.relpath for r in m.rows] == ["a.wav", "sub/b.flac"]


def test_wav_scp_refuses_pipes(tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text("u1 /x/a.wav\nu2 sph2pipe -f wav -p -c 1 /x/b.sph |\n")
    with pytest.raises(PrepareError, match=r"wav.scp:2: piped command entries are not supported"):
        prepare_wav_scp(scp, tmp_path / "o", **OPTS)
    assert not (tmp_path / "o").exists()


def test_wav_scp_inconsistent_data_dir(kaldi, tmp_path):
    data, _ = kaldi
    (data / "utt2spk").write_text("spkA-u1 spkA\n")
    with pytest.raises(PrepareError) as e:
        prepare_wav_scp(data / "wav.scp", tmp_path / "o", **OPTS)
    assert "utt2spk: no line for 3 of the 4 utts" in str(e.value) and "fix_data_dir" in str(e.value)
    with pytest.raises(PrepareError, match="nothere: not found"):
        prepare_wav_scp(data / "wav.scp", tmp_path / "o", text=tmp_path / "nothere", **OPTS)
    with open(data / "wav.scp", "a") as f:
        f.write("spkA-u1 /x/dup.wav\n")
    with pytest.raises(PrepareError, match="duplicate utt id 'spkA-u1'"):
        prepare_wav_scp(data / "wav.scp", tmp_path / "o", **OPTS)


def test_cli_help_lists_corpora(capsys):
    with pytest.raises(SystemExit) as e:
        main(["prepare", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for name, (_, _, layout) in PREPARERS.items():
        assert name in text and layout[:30] in text
    with pytest.raises(SystemExit):
        main(["prepare", "librispeech", "--help"])
    text = capsys.readouterr().out
    assert "--lexicon" in text and "--skip-oov" in text and "--workers" in text and "default: 4" in text


def test_cli_dir_and_errors(audio_dir, tmp_path, capsys, caplog):
    d, good, bad = audio_dir
    caplog.set_level("WARNING", logger="audiossl.prepare")
    rc = main(["prepare", "dir", str(d), str(tmp_path / "o"), "--workers", "2", "--no-progress", "--split", "x"])
    out = capsys.readouterr().out
    assert rc == 0
    assert f"skipped {len(bad)} files" in out
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped: ")]
    assert sorted(m.split(": ")[1] for m in logged) == sorted(str(d / r) for r in bad)
    assert len(read_manifest(tmp_path / "o" / "x.tsv")) == len(good)
    scp = tmp_path / "wav.scp"
    scp.write_text("u1 gunzip -c a.wav.gz |\n")
    rc = main(["prepare", "wav.scp", str(scp), str(tmp_path / "o2")])
    err = capsys.readouterr().err
    assert rc == 2 and "wav.scp:1: piped command" in err


def test_parallel_probe_matches_serial(tmp_path):
    d = tmp_path / "many"
    for k in range(300):  # above the 256-file threshold for the process pool
        write_audio(d / f"{k:03d}.wav", 0.1 + 0.001 * k, freq=100 + k)
    write_bad(d / "zz.wav", "notaudio")
    a = prepare_dir(d, tmp_path / "a", progress=False, workers=1)
    b = prepare_dir(d, tmp_path / "b", progress=False, workers=2)
    assert (tmp_path / "a" / "train.tsv").read_text() == (tmp_path / "b" / "train.tsv").read_text()
    assert a.counts == b.counts == {"train": 300} and len(a.skipped) == len(b.skipped) == 1


def test_scan_samples_and_min_duration(tmp_path):
    import numpy as np
    import soundfile as sf

    d = tmp_path / "d"
    write_audio(d / "ok.wav", 0.5)
    x = np.full(8000, 0.1, np.float32)
    x[10] = np.nan
    sf.write(str(d / "nan.wav"), x, 16000, subtype="FLOAT")
    assert prepare_dir(d, tmp_path / "a", **OPTS).counts == {"train": 2}  # header checks only
    res = prepare_dir(d, tmp_path / "b", scan_samples=True, **OPTS)
    assert res.counts == {"train": 1} and [p.reason for p in res.skipped] == ["non_finite"]
    res = prepare_dir(d, tmp_path / "c", min_duration=0.6, **OPTS)
    assert res.counts == {"train": 0} and {p.reason for p in res.skipped} == {"too_short"}
    res = prepare_dir(d, tmp_path / "f", sample_rate=8000, **OPTS)
    assert res.counts == {"train": 2} and res.warnings == {"sample_rate": 2}  # kept, counted
    assert "kept with warnings: sample_rate=2" in res.summary()
    with pytest.raises(TypeError, match="unknown preparer option"):
        prepare_dir(d, tmp_path / "e", min_dur=1.0)
