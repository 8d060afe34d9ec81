"""lhotse bridge: ``audiossl prepare lhotse CUTS OUT`` and ``audiossl export-manifest --to lhotse``
on a CutSet built here: whole mono / multi-channel recordings (named in place, averaged to mono on
load), a start/duration cut and a channel-subset cut (written out as mono audio), a missing file
(skipped, named), and the round trip back to a CutSet."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from audiossl.audio.io import load_audio
from audiossl.cli.main import main
from audiossl.data.manifest import read_manifest

lhotse = pytest.importorskip("lhotse")
SR = 16000


def _wav(path, channels: int, seconds: float, seed: int):
    x = 0.1 * np.random.default_rng(seed).standard_normal((int(seconds * SR), channels)).astype(np.float32)
    sf.write(str(path), x if channels > 1 else x[:, 0], SR, subtype="FLOAT")
    return x


def _sup(cut_id, rec, start, duration, text, speaker, channel=0):
    return lhotse.SupervisionSegment(id=f"{cut_id}-sup", recording_id=rec.id, start=start, duration=duration,
                                     channel=channel, text=text, speaker=speaker)


@pytest.fixture
def cutset(tmp_path):
    from lhotse import CutSet, MonoCut, MultiCut, Recording
    from lhotse.audio import AudioSource

    d = tmp_path / "corpus"
    d.mkdir()
    audio = {"mono": _wav(d / "mono.wav", 1, 1.0, 0), "stereo": _wav(d / "stereo.wav", 2, 1.5, 1),
             "long": _wav(d / "long.wav", 1, 3.0, 2)}
    rec = {k: Recording.from_file(d / f"{k}.wav", recording_id=k) for k in audio}
    gone = Recording(id="gone", sources=[AudioSource(type="file", channels=[0], source=str(d / "gone.wav"))],
                     sampling_rate=SR, num_samples=SR, duration=1.0)
    cuts = [
        MonoCut("u1", 0.0, 1.0, 0, recording=rec["mono"], supervisions=[_sup("u1", rec["mono"], 0, 1.0, "hello  world", "spk1")]),
        MultiCut("u2", 0.0, 1.5, [0, 1], recording=rec["stereo"], supervisions=[_sup("u2", rec["stereo"], 0, 1.5, "STEREO", "spk2", [0, 1])]),
        MonoCut("u3", 0.5, 1.0, 0, recording=rec["long"],
                supervisions=[_sup("u3", rec["long"], 0.5, 0.5, "B", "spk3"), _sup("u3b", rec["long"], 0.0, 0.4, "A", "spk3")]),
        MonoCut("u4", 0.0, 1.5, 1, recording=rec["stereo"], supervisions=[_sup("u4", rec["stereo"], 0, 1.5, "RIGHT", "spk2", 1)]),
        MonoCut("u5", 0.0, 1.0, 0, recording=gone, supervisions=[_sup("u5", gone, 0, 1.0, "LOST", "spk9")]),
    ]
    path = tmp_path / "cuts_train.jsonl.gz"
    CutSet.from_cuts(cuts).to_file(path)
    expected = {
        "u1": audio["mono"][:, 0],
        "u2": audio["stereo"].mean(1),  # averaged to mono, our audio contract
        "u3": audio["long"][int(0.5 * SR): int(1.5 * SR), 0],  # start/duration honoured
        "u4": audio["stereo"][:, 1],  # the cut's channel only
    }
    return path, expected, d


def test_prepare_lhotse_then_export_round_trip(tmp_path, cutset, capsys):
    cuts, expected, corpus = cutset
    out = tmp_path / "manifests"
    assert main(["prepare", "lhotse", str(cuts), str(out), "--no-progress"]) == 0
    m = read_manifest(out / "cuts_train.tsv")
    assert m.ids == ["u1", "u2", "u3", "u4"]
    assert m.labels["wrd"] == ["hello world", "STEREO", "A B", "RIGHT"]  # supervisions in time order
    assert m.labels["ltr"][0] == "h e l l o | w o r l d |"
    assert m.labels["spk"] == ["spk1", "spk2", "spk3", "spk2"]
    paths = list(m.paths())
    assert paths[0] == (corpus / "mono.wav").resolve() and paths[1] == (corpus / "stereo.wav").resolve()  # not copied
    assert paths[2].name == "u3.wav" and paths[2].parent.name == "cuts_train_audio"
    for i, uid in enumerate(m.ids):
        wav, _ = load_audio(paths[i], SR)
        np.testing.assert_allclose(wav.numpy(), expected[uid], atol=1e-6, err_msg=uid)
        assert m.rows[i].num_samples == len(expected[uid])
    skipped = (out / "skipped.txt").read_text()
    assert "gone.wav\tmissing" in skipped and "cut u5" in skipped

    back = tmp_path / "back.jsonl.gz"
    assert main(["export-manifest", "--to", "lhotse", str(out / "cuts_train.tsv"), str(back)]) == 0
    round_trip = lhotse.CutSet.from_file(back)
    assert sorted(round_trip.ids) == ["u1", "u2", "u3", "u4"]
    for cut in round_trip:
        sup = cut.supervisions[0]
        assert sup.text == m.labels["wrd"][m.ids.index(cut.id)] and sup.speaker == m.labels["spk"][m.ids.index(cut.id)]
        audio = cut.load_audio()  # [channels, samples]
        np.testing.assert_allclose(audio.mean(0), expected[cut.id], atol=1e-6, err_msg=cut.id)


def test_all_cuts_missing_exits_1_naming_the_files(tmp_path, capsys):
    from lhotse import CutSet, MonoCut, Recording
    from lhotse.audio import AudioSource

    rec = Recording(id="r", sources=[AudioSource(type="file", channels=[0], source=str(tmp_path / "nowhere.flac"))],
                    sampling_rate=SR, num_samples=SR, duration=1.0)
    CutSet.from_cuts([MonoCut("c1", 0.0, 1.0, 0, recording=rec)]).to_file(tmp_path / "cuts.jsonl.gz")
    rc = main(["prepare", "lhotse", str(tmp_path / "cuts.jsonl.gz"), str(tmp_path / "out"), "--no-progress"])
    assert rc == 1 and "all 1 audio files were skipped" in capsys.readouterr().err
    assert "nowhere.flac\tmissing\taudio of cut c1 not found" in (tmp_path / "out" / "skipped.txt").read_text()


def test_export_skips_and_names_a_missing_file(tmp_path, capsys):
    _wav(tmp_path / "a.wav", 1, 0.5, 0)
    (tmp_path / "m.tsv").write_text(f"{tmp_path}\na.wav\t8000\nmissing.wav\t8000\n")
    assert main(["export-manifest", "--to", "lhotse", str(tmp_path / "m.tsv"), str(tmp_path / "c.jsonl.gz")]) == 0
    assert f"skipped {tmp_path / 'missing.wav'}: missing" in capsys.readouterr().out
    assert list(lhotse.CutSet.from_file(tmp_path / "c.jsonl.gz").ids) == ["a"]
    (tmp_path / "m2.tsv").write_text(f"{tmp_path}\nmissing.wav\t8000\n")
    assert main(["export-manifest", "--to", "lhotse", str(tmp_path / "m2.tsv"), str(tmp_path / "d.jsonl.gz")]) == 1
    assert not (tmp_path / "d.jsonl.gz").exists()
