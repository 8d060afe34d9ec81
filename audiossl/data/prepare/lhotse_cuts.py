"""A lhotse CutSet (``cuts.jsonl.gz``: recordings + supervisions) → ``OUT/<split>.tsv`` + labels.

Labels (written when every kept cut has them): ``.ids`` (the cut ids, so downstream ids match
lhotse's), ``.wrd`` (supervision texts in time order, joined by spaces), ``.ltr`` (fairseq letters
of ``.wrd``), ``.spk`` (the first supervision's speaker).

Audio. A manifest row is a whole file (``relpath<TAB>num_samples``; readers average channels to
mono): it cannot say "seconds 3.2–7.9 of channel 1". So:

- a cut that is a whole single-file recording with all its channels → the row names that file
  (nothing copied; multi-channel files are averaged to mono on load, as everywhere);
- any other cut (``start``/``duration`` inside a longer recording, a subset of channels, a
  multi-file or URL / in-memory source) → its audio is read by lhotse, averaged to mono and written
  to ``OUT/<split>_audio/<cut id>.wav`` (float32, the recording's rate), and the row names that.

A cut whose audio file is missing or unreadable is skipped with the file, the cut and the reason
(``OUT/skipped.txt``), like any bad file.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import soundfile as sf

from audiossl.audio.validate import Problem
from audiossl.data.prepare.common import Entry, PrepareError, PrepareResult, common_options, finish, relpath_under, write_splits
from audiossl.data.prepare.librispeech import letters

log = logging.getLogger("audiossl.prepare")


def _split_name(path: Path) -> str:
    return re.sub(r"\.(jsonl|json|yaml)(\.gz)?$", "", path.name)


def _whole_file(cut) -> str | None:
    """The one local file ``cut`` covers entirely with all its channels, else None."""
    rec = cut.recording
    if len(rec.sources) != 1 or rec.sources[0].type != "file" or getattr(cut, "has_features", False) and not cut.has_recording:
        return None
    channels = cut.channel if isinstance(cut.channel, list) else [cut.channel]
    if sorted(channels) != sorted(rec.channel_ids):
        return None
    if cut.start > 0.5 / rec.sampling_rate or abs(cut.duration - rec.duration) > 1.0 / rec.sampling_rate:
        return None
    return rec.sources[0].source


def _source_files(cut) -> list[str]:
    return [s.source for s in cut.recording.sources if s.type == "file"]


def _labels(cut) -> dict[str, str]:
    sups = sorted(cut.supervisions, key=lambda s: s.start)
    labels = {"ids": cut.id}
    texts = [" ".join(s.text.split()) for s in sups if s.text and s.text.strip()]
    if texts:
        labels["wrd"] = " ".join(texts)
        labels["ltr"] = letters(labels["wrd"])
    speakers = [s.speaker for s in sups if s.speaker]
    if speakers:
        labels["spk"] = speakers[0]
    return labels


def prepare_lhotse(src: str | Path, out: str | Path, *, split: str | None = None, **common) -> PrepareResult:
    """Write ``OUT/<split>.tsv`` (+ ``.ids .wrd .ltr .spk``) for the cuts in ``src`` (see module docstring).
    ``split`` defaults to the file name without ``.jsonl.gz`` (``cuts_train.jsonl.gz`` → ``cuts_train``)."""
    import numpy as np  # lazy: keeps torch/numpy out of startup (`prepare`, `validate`, `--help` start fast)
    from lhotse import CutSet  # lazy: optional dependency (lhotse)

    config = common_options(common)
    src, out = Path(src), Path(out)
    if not src.is_file():
        raise PrepareError(f"{src}: not found; expected a lhotse CutSet manifest such as cuts_train.jsonl.gz")
    try:
        cuts = CutSet.from_file(src)
    except Exception as e:  # lhotse raises plain errors for malformed manifests
        raise PrepareError(f"{src}: not a readable lhotse CutSet ({type(e).__name__}: {e})") from None
    split = split or _split_name(src)
    seg_dir = out / f"{split}_audio"
    problems: list[Problem] = []
    items: list[tuple[Path, dict[str, str]]] = []
    for cut in cuts:
        if not cut.has_recording:
            problems.append(Problem(cut.id, "missing", f"cut {cut.id} has no recording (features-only cuts cannot be used)"))
            continue
        missing = [f for f in _source_files(cut) if not os.path.isfile(f)]
        if missing:
            problems.append(Problem(missing[0], "missing", f"audio of cut {cut.id} not found; fix the recording's source path in {src}"))
            continue
        whole = _whole_file(cut)
        if whole is not None:
            items.append((Path(whole).resolve(), _labels(cut)))
            continue
        try:
            audio = cut.load_audio()  # [channels, samples]
        except Exception as e:
            where = (_source_files(cut) or [cut.id])[0]
            problems.append(Problem(where, "unreadable", f"cut {cut.id}: lhotse could not read it ({type(e).__name__}: {e})"))
            continue
        seg_dir.mkdir(parents=True, exist_ok=True)
        path = seg_dir / f"{cut.id.replace('/', '_')}.wav"
        sf.write(str(path), np.asarray(audio, dtype=np.float32).reshape(-1, audio.shape[-1]).mean(0), cut.sampling_rate, subtype="FLOAT")
        items.append((path.resolve(), _labels(cut)))
    if not items and not problems:
        raise PrepareError(f"{src}: holds no cuts")
    kinds = {"ids"}
    for ext in ("wrd", "ltr", "spk"):
        have = sum(ext in labels for _, labels in items)
        if items and have == len(items):
            kinds.add(ext)
        elif have:
            log.warning("%s: only %d of %d cuts have %s; .%s not written", src, have, len(items),
                        "text" if ext != "spk" else "a speaker", ext)
    root = Path(os.path.commonpath([str(p.parent) for p, _ in items])) if items else out.resolve()
    entries = [Entry(relpath_under(p, root), {k: v for k, v in labels.items() if k in kinds}) for p, labels in items]
    return finish(write_splits(root, {split: entries}, out, config, skipped=problems, sort=False))
