"""Audio sources the CLI accepts: a manifest ``.tsv``, a Kaldi ``wav.scp``, a directory, or files."""

from __future__ import annotations

from pathlib import Path

from audiossl.data.manifest import read_manifest

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif", ".au", ".sph")


def read_wav_scp(path: str | Path) -> list[tuple[str, str]]:
    """Kaldi ``wav.scp``: ``<utt_id> <path>`` per line. Piped commands (``... |``) are refused
    with a message, since they would run shell code."""
    out = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2:
            raise ValueError(f"{path}:{lineno}: expected '<utt_id> <path>', got {line!r}")
        uid, loc = parts
        if loc.endswith("|"):
            raise ValueError(
                f"{path}:{lineno}: piped command entries are not supported (they run shell code); "
                f"convert the audio to files first (e.g. with sox) and list their paths."
            )
        out.append((uid, loc))
    return out


def find_audio(directory: str | Path, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[Path]:
    """All audio files under ``directory`` (recursive), sorted for determinism."""
    directory = Path(directory)
    return sorted(p for p in directory.rglob("*") if p.suffix.lower() in extensions and p.is_file())


def collect_audio_paths(src: str | Path) -> list[str]:
    """Paths of every audio file a CLI input names (see module docstring)."""
    src = Path(src)
    if src.is_dir():
        return [str(p) for p in find_audio(src)]
    if src.suffix == ".tsv":
        return [str(p) for p in read_manifest(src, labels=[]).paths()]
    if src.name.endswith(".scp"):
        return [loc for _, loc in read_wav_scp(src)]
    return [str(src)]
