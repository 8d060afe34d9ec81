"""Our manifest (``<split>.tsv`` + ``.wrd`` / ``.spk`` / ``.ids``) → a lhotse CutSet file.

One recording per row (lhotse reads the header: rate, channels, duration), one supervision
covering it with the row's text (``.wrd``) and speaker (``.spk``) when those files exist; ids are
the manifest ids (``.ids`` when present). Rows whose audio is missing or unreadable are skipped
and returned with the reason, never silently dropped.
"""

from __future__ import annotations

from pathlib import Path

from audiossl.data.manifest import read_manifest


def export_lhotse(tsv: str | Path, out: str | Path) -> tuple[Path, int, list[tuple[str, str]]]:
    """Write ``out`` (``.jsonl.gz``); returns ``(out, cuts written, [(path, reason), ...] skipped)``."""
    from lhotse import CutSet, MonoCut, MultiCut, Recording, SupervisionSegment  # lazy: optional dependency (lhotse)

    m = read_manifest(tsv)
    texts, speakers = m.labels.get("wrd"), m.labels.get("spk")
    cuts, skipped = [], []
    for i, uid in enumerate(m.ids):
        path = m.path(i)
        if not path.is_file():
            skipped.append((str(path), "missing: no such file"))
            continue
        try:
            rec = Recording.from_file(path, recording_id=uid)
        except Exception as e:
            skipped.append((str(path), f"unreadable: {type(e).__name__}: {e}"))
            continue
        channel = rec.channel_ids if rec.num_channels > 1 else 0
        sup = SupervisionSegment(id=uid, recording_id=uid, start=0.0, duration=rec.duration, channel=channel,
                                 text=texts[i] if texts else None, speaker=speakers[i] if speakers else None)
        cls = MultiCut if rec.num_channels > 1 else MonoCut
        cuts.append(cls(id=uid, start=0.0, duration=rec.duration, channel=channel, recording=rec, supervisions=[sup]))
    out = Path(out)
    if cuts:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp{''.join(out.suffixes)}")
        CutSet.from_cuts(cuts).to_file(tmp)
        tmp.replace(out)
    return out, len(cuts), skipped
