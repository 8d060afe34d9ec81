"""Build the demo corpus: plan every clip from the seed, render in worker processes, write
audio and fairseq manifests in a fixed order so the bytes never depend on scheduling.

Layout (a contract other parts rely on)::

    OUT/corpus.json  phones.txt
    OUT/speech/            wav/<spk>/<utt>.wav  {train,valid,test}.{tsv,wrd,ltr,phn,spk,ali}
    OUT/speakers_unseen/   wav/...  test.{tsv,spk}  trials.txt
    OUT/keywords/          wav/<label>/...  {train,valid,test}.{tsv,lbl}
    OUT/prosody/           wav/<style>/...  {train,valid,test}.{tsv,lbl,spk,wrd}
    OUT/music/notes/       wav/<family>/... {train,valid,test}.{tsv,lbl,pitch}
    OUT/music/keys/        wav/...          {train,valid,test}.{tsv,lbl}

Opt-in (``tasks=[..., "intents", "conversations", "music_beats", ...]``; see :mod:`.bench_tasks`)::

    OUT/intents/           wav/<spk>/...    {train,valid,test}.{tsv,lbl,action,object,location,wrd,spk}
    OUT/conversations/     wav/...          {train,valid,test}.{tsv,seg}  rttm/{train,valid,test}.rttm
    OUT/music/beats/       wav/...          {train,valid,test}.{tsv,beats,downbeats,bpm}
    OUT/qbe/               wav/{queries,docs}/<spk>/...  {valid,test}.{tsv,kw,wrd}  {valid,test}_queries.{tsv,kw}
    OUT/music/genre/       wav/<style>/...  {train,valid,test}.{tsv,lbl,bpm}
    OUT/music/tags/        wav/...          {train,valid,test}.{tsv,tags,programs}  tags.txt

Workers only synthesise (eSpeak / SoundFont, no torch); the parent resamples, aligns and
writes every file atomically, in plan order.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import random
import shutil
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from audiossl.audio.io import save_audio
from audiossl.data.manifest import Manifest, Row, write_manifest
from audiossl.data.synth import bench_tasks, mixtures, music, speech, styles, text
from audiossl.data.synth.espeak import ESpeakError, VoiceSettings
from audiossl.data.synth.jobs import SPLITS, Job, jitter_voice, clip_seed
from audiossl.data.synth.plans_extra import (
    plan_beats,
    plan_conversations,
    plan_genre,
    plan_intents,
    plan_qbe,
    plan_tagging,
)
from audiossl.utils.fileio import atomic_write_json, atomic_write_text, check_free_space

log = logging.getLogger(__name__)

VERSION = 2  # 2: valid/test notes by instruments unheard in training (music.note_programs)
TASKS = ("speech", "speakers_unseen", "keywords", "prosody", "music_notes", "music_keys")
EXTRA_TASKS = ("intents", "conversations", "music_beats", "qbe", "music_genre", "music_tagging")
"""made only when named in ``tasks`` (not part of the default demo corpus yet)"""
TASK_DIRS = {
    "speech": "speech", "speakers_unseen": "speakers_unseen", "keywords": "keywords",
    "prosody": "prosody", "music_notes": "music/notes", "music_keys": "music/keys",
    "intents": "intents", "conversations": "conversations", "music_beats": "music/beats",
    "qbe": "qbe", "music_genre": "music/genre", "music_tagging": "music/tags",
}
KW_CLIP = speech.SPEECH_RATE  # 1 s keyword clips


@dataclass(frozen=True)
class SizeConfig:
    """How many clips each task gets. Tuples are per split (train, valid, test)."""

    speakers: int
    utts_per_speaker: tuple[int, int, int]
    unseen_speakers: int
    unseen_utts: int
    keywords_per_class: tuple[int, int, int]
    prosody_sentences: tuple[int, int, int]  # each spoken in every style
    notes_per_family: tuple[int, int, int]
    progressions_per_key: tuple[int, int, int]


SIZES: dict[str, SizeConfig] = {
    "tiny": SizeConfig(6, (4, 1, 1), 3, 3, (1, 1, 1), (2, 1, 1), (2, 1, 1), (1, 1, 1)),
    "small": SizeConfig(20, (24, 4, 4), 8, 6, (14, 3, 3), (40, 10, 10), (24, 6, 6), (8, 2, 2)),
    "full": SizeConfig(40, (600, 40, 40), 40, 20, (300, 40, 40), (500, 80, 80), (300, 40, 40), (60, 10, 10)),
}


# ---------------------------------------------------------------- planning (pure, seeded)


def plan_speech(cfg: SizeConfig, seed: int, speakers: list[speech.Speaker]) -> list[Job]:
    jobs = []
    for spk in speakers:
        rng = random.Random(clip_seed(seed, "speech", spk.spk_id))
        n = 0
        for split, count in zip(SPLITS, cfg.utts_per_speaker):
            for _ in range(count):
                n += 1
                words = text.sentence(rng)
                utt = f"{spk.spk_id}-{n:04d}"
                params = {"text": " ".join(words), "settings": jitter_voice(spk, rng)}
                labels = {"wrd": " ".join(words).upper(), "ltr": text.letters(words), "spk": spk.spk_id}
                jobs.append(Job("speech", split, f"wav/{spk.spk_id}/{utt}.wav", "speech", params, clip_seed(seed, utt), labels))
    return jobs


def plan_unseen(cfg: SizeConfig, seed: int, speakers: list[speech.Speaker]) -> list[Job]:
    jobs = []
    for spk in speakers:
        rng = random.Random(clip_seed(seed, "unseen", spk.spk_id))
        for n in range(1, cfg.unseen_utts + 1):
            words = text.sentence(rng)
            utt = f"{spk.spk_id}-{n:04d}"
            params = {"text": " ".join(words), "settings": jitter_voice(spk, rng)}
            jobs.append(
                Job("speakers_unseen", "test", f"wav/{spk.spk_id}/{utt}.wav", "speech", params, clip_seed(seed, "unseen", utt),
                    {"spk": spk.spk_id, "wrd": " ".join(words).upper()})
            )
    return jobs


def plan_keywords(cfg: SizeConfig, seed: int, speakers: list[speech.Speaker]) -> list[Job]:
    jobs = []
    classes = text.KEYWORDS + [text.UNKNOWN, text.SILENCE]
    for split, count in zip(SPLITS, cfg.keywords_per_class):
        rng = random.Random(clip_seed(seed, "keywords", split))
        for label in classes:
            for k in range(count):
                name = f"{split}-{label.strip('_')}-{k:04d}"
                spk = rng.choice(speakers)
                word = rng.choice(text.UNKNOWN_WORDS) if label == text.UNKNOWN else label
                params = {
                    "text": word, "settings": jitter_voice(spk, rng), "gain": rng.uniform(0.5, 1.0),
                    "noise_dbfs": rng.uniform(-65, -45), "silence": label == text.SILENCE,
                    "offset": rng.random(),
                }
                jobs.append(Job("keywords", split, f"wav/{label.strip('_')}/{name}.wav", "keyword", params,
                                clip_seed(seed, "kw", name), {"lbl": label}))
    return jobs


def plan_prosody(cfg: SizeConfig, seed: int, speakers: list[speech.Speaker]) -> list[Job]:
    jobs = []
    n = 0
    for split, count in zip(SPLITS, cfg.prosody_sentences):
        rng = random.Random(clip_seed(seed, "prosody", split))
        for _ in range(count):
            n += 1
            words = text.sentence(rng, 4, 9)
            spk = rng.choice(speakers)
            for style, (rate, pitch, range_, gap) in speech.PROSODY_STYLES.items():
                settings = jitter_voice(spk, rng, rate_scale=rate, pitch_shift=pitch, range_=range_, wordgap=gap)
                settings["range"] = range_  # style sets the range exactly; only rate/pitch jitter
                name = f"s{n:04d}-{style}"
                jobs.append(Job("prosody", split, f"wav/{style}/{name}.wav", "speech",
                                {"text": " ".join(words), "settings": settings}, clip_seed(seed, "prosody", name),
                                {"lbl": style, "spk": spk.spk_id, "wrd": " ".join(words).upper()}))
    return jobs


def plan_notes(cfg: SizeConfig, seed: int) -> list[Job]:
    jobs = []
    for split, count in zip(SPLITS, cfg.notes_per_family):
        rng = random.Random(clip_seed(seed, "notes", split))
        for family, (_, (lo, hi)) in music.FAMILIES.items():
            for k in range(count):
                pitch = rng.randint(lo, hi)
                name = f"{split}-{family}-{k:04d}-p{pitch:03d}"
                jobs.append(Job("music_notes", split, f"wav/{family}/{name}.wav", "note",
                                {"family": family, "pitch": pitch, "programs": music.note_programs(family, split)},
                                clip_seed(seed, "note", name),
                                {"lbl": family, "pitch": str(pitch)}))
    return jobs


def plan_keys(cfg: SizeConfig, seed: int) -> list[Job]:
    jobs = []
    for split, count in zip(SPLITS, cfg.progressions_per_key):
        for mode in ("major", "minor"):
            for tonic, pc in enumerate(music.PITCH_CLASSES):
                for k in range(count):
                    name = f"{split}-{pc.replace('#', 's')}{mode}-{k:04d}"
                    jobs.append(Job("music_keys", split, f"wav/{name}.wav", "keys", {"tonic": tonic, "mode": mode},
                                    clip_seed(seed, "keys", name), {"lbl": f"{pc} {mode}"}))
    return jobs


def plan(size: str, seed: int, tasks: list[str]) -> list[Job]:
    cfg = SIZES[size]
    table = speech.speaker_table(cfg.speakers + cfg.unseen_speakers)
    seen, unseen = table[: cfg.speakers], table[cfg.speakers:]
    planners = {
        "speech": lambda: plan_speech(cfg, seed, seen),
        "speakers_unseen": lambda: plan_unseen(cfg, seed, unseen),
        "keywords": lambda: plan_keywords(cfg, seed, seen),
        "prosody": lambda: plan_prosody(cfg, seed, seen),
        "music_notes": lambda: plan_notes(cfg, seed),
        "music_keys": lambda: plan_keys(cfg, seed),
        "intents": lambda: plan_intents(size, seed, seen),
        "conversations": lambda: plan_conversations(size, seed, seen),
        "music_beats": lambda: plan_beats(size, seed),
        "qbe": lambda: plan_qbe(size, seed, seen),
        "music_genre": lambda: plan_genre(size, seed),
        "music_tagging": lambda: plan_tagging(size, seed),
    }
    return [job for task in TASKS + EXTRA_TASKS if task in tasks for job in planners[task]()]


# ---------------------------------------------------------------- rendering (worker side)


def render(job: Job):
    """Worker: synthesise one clip. Returns eSpeak output or float32 audio; an error string on failure."""
    try:
        if job.kind == "keyword" and job.params["silence"]:
            return None  # noise only; made in the parent
        if job.kind in ("speech", "keyword"):
            return speech.synthesize(job.params["text"], VoiceSettings(**job.params["settings"]), job.seed)
        if job.kind == "note":
            return music.render_note(job.params["family"], job.params["pitch"], job.seed, programs=job.params["programs"])
        if job.kind == "keys":
            return music.render_progression(job.params["tonic"], job.params["mode"], job.seed)
        if job.kind == "beats":
            return music.render_beats(job.seed)
        if job.kind == "style":
            return styles.render_style(job.params["genre"], job.seed)
        if job.kind == "mixture":
            return mixtures.render_mixture(job.seed)
        if job.kind == "conversation":
            return [speech.synthesize(t["text"], VoiceSettings(**st), job.seed + k)
                    for k, (t, st) in enumerate(zip(job.params["turns"], job.params["settings"]))]
    except (ESpeakError, ValueError, RuntimeError) as e:
        return f"{type(e).__name__}: {e}"
    raise ValueError(f"unknown job kind {job.kind!r}")


# ---------------------------------------------------------------- finishing (parent side)


def _keyword_clip(job: Job, syn) -> np.ndarray:
    """A 1 s clip: the word at a random place (cropped to its centre if longer), plus noise."""
    p = job.params
    rng = np.random.default_rng(job.seed)
    clip = np.zeros(KW_CLIP, np.float32)
    if not p["silence"]:
        audio = speech.to_16k(syn.samples, syn.sample_rate)
        start, end = speech.speech_region(speech.segments(syn, len(audio)))
        word = audio[max(0, start - 400): end + 400]
        if len(word) > KW_CLIP:
            cut = (len(word) - KW_CLIP) // 2
            word = word[cut: cut + KW_CLIP]
        at = int(p["offset"] * (KW_CLIP - len(word)))
        clip[at: at + len(word)] = word * p["gain"]
    noise_db = p["noise_dbfs"] + (5.0 if p["silence"] else 0.0)
    clip += rng.standard_normal(KW_CLIP, dtype=np.float32) * np.float32(10 ** (noise_db / 20))
    return np.clip(clip, -1.0, 32767 / 32768)


def _noise_floor(audio: np.ndarray, seed: int, dbfs: float = -72.0) -> np.ndarray:
    """Add a faint seeded noise floor: eSpeak pauses are digital zeros, which no microphone gives."""
    noise = np.random.default_rng(seed).standard_normal(len(audio), dtype=np.float32)
    return np.clip(audio + noise * np.float32(10 ** (dbfs / 20)), -1.0, 32767 / 32768)


def finish(job: Job, result, task_dir: Path, write) -> tuple[int, float, dict[str, str]] | None:
    """Parent: turn a worker result into audio, hand it to ``write(path, audio, rate)``;
    returns (num_samples, seconds, labels), or None when there is no audio."""

    labels = dict(job.labels)
    if job.kind == "speech":
        audio = speech.to_16k(result.samples, result.sample_rate)
        segs = speech.segments(result, len(audio))
        audio = _noise_floor(audio, job.seed)
        labels["phn"] = " ".join(speech.phone_sequence(segs))
        labels["ali"] = " ".join(speech.frame_alignment(segs, len(audio)))
        rate = speech.SPEECH_RATE
    elif job.kind == "keyword":
        audio, rate = _keyword_clip(job, result), speech.SPEECH_RATE
    elif job.kind == "conversation":
        p = job.params
        turn_audio = [speech.to_16k(r.samples, r.sample_rate) for r in result]
        regions = [speech.speech_region(speech.segments(r, len(a))) for r, a in zip(result, turn_audio)]
        audio, segs = bench_tasks.mix_conversation(turn_audio, regions, p["turns"], p["speakers"], speech.SPEECH_RATE,
                                                   gains=tuple(p["gains"]))
        audio = _noise_floor(audio, job.seed, -60.0)
        labels["seg"] = bench_tasks.format_segments(segs)
        rate = speech.SPEECH_RATE
    elif job.kind == "beats":
        audio, rate = result[0], music.MUSIC_RATE
        info = result[1]
        labels.update(beats=" ".join(f"{b:.4f}" for b in info["beats"]),
                      downbeats=" ".join(f"{b:.4f}" for b in info["downbeats"]), bpm=f"{info['bpm']:.3f}")
    elif job.kind in ("style", "mixture"):
        audio, rate = result[0], music.MUSIC_RATE
        info = result[1]
        if job.kind == "style":
            labels["bpm"] = f"{info['bpm']:.2f}"
        else:  # tags by construction: the families of the parts rendered, programs in the same order
            labels["tags"] = ",".join(info["tags"])
            by_family = {p["family"]: p["program"] for p in info["parts"]}
            labels["programs"] = ",".join(str(by_family[t]) for t in info["tags"])
    else:
        audio, rate = result[0], music.MUSIC_RATE
    if len(audio) == 0:
        return None
    write(task_dir / job.relpath, audio, rate)
    return len(audio), len(audio) / rate, labels


def _trials(ids: list[str], spks: list[str], seed: int) -> list[str]:
    """About one target and one non-target trial per utterance, in a seeded order."""
    rng = random.Random(clip_seed(seed, "trials"))
    by_spk: dict[str, list[str]] = {}
    for uid, s in zip(ids, spks):
        by_spk.setdefault(s, []).append(uid)
    lines = []
    for uid, s in zip(ids, spks):
        same = [u for u in by_spk[s] if u != uid]
        other = [u for u, s2 in zip(ids, spks) if s2 != s]
        if same:
            lines.append(f"1 {uid} {rng.choice(same)}")
        if other:
            lines.append(f"0 {uid} {rng.choice(other)}")
    return lines


# Rough bytes per clip, for the free-space check before a run.
_BYTES_PER_CLIP = {"speech": 110_000, "keyword": 32_000, "note": 72_000, "keys": 200_000, "conversation": 300_000,
                   "beats": 290_000, "style": 240_000, "mixture": 192_000}


def _ordered_results(pool, jobs: list[Job], window: int):
    """Results in job order, with at most ``window`` clips in flight (bounds memory on `full`)."""
    pending: deque = deque()
    for job in jobs:
        pending.append(pool.submit(render, job))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


class _Writer:
    """Atomic wav writes on a few threads: each one fsyncs, and fsync waits on the disk, not
    the CPU, so overlapping them keeps the corpus build from being disk-latency bound."""

    def __init__(self, threads: int = 8, max_pending: int = 256) -> None:
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="synth-write")
        self.pending: deque = deque()
        self.max_pending = max_pending

    def write(self, path: Path, audio: np.ndarray, rate: int) -> None:
        self.pending.append(self.pool.submit(save_audio, path, audio, rate))
        while len(self.pending) > self.max_pending or (self.pending and self.pending[0].done()):
            self.pending.popleft().result()  # re-raises a failed write (disk full, ...)

    def close(self, cancel: bool = False) -> None:
        if cancel:
            for f in self.pending:
                f.cancel()
        else:
            while self.pending:
                self.pending.popleft().result()
        self.pool.shutdown(wait=True)


def _executor(workers: int):
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx)


def synthesize(out: str | Path, size: str = "tiny", seed: int = 0, workers: int = 2,
               tasks: list[str] | None = None, overwrite: bool = False, progress: bool = True) -> dict:
    """Generate the corpus under ``out``; returns the summary written to ``corpus.json``.

    Same (size, seed, tasks) → bit-identical files, whatever ``workers`` is. Refuses a
    non-empty ``out`` unless ``overwrite`` (then only this corpus' own entries are replaced).
    """

    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    tasks = list(TASKS) if tasks is None else _expand_tasks(tasks)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out}: output directory is not empty; choose another or pass overwrite=True (--overwrite).")
        for name in ("speech", "speakers_unseen", "keywords", "prosody", "music", "intents", "conversations", "qbe",
                     "corpus.json", "phones.txt", "skipped.txt"):
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    jobs = plan(size, seed, tasks)
    check_free_space(out, sum(_BYTES_PER_CLIP[j.kind] for j in jobs), f"the {size} demo corpus")
    rows: dict[tuple[str, str], list] = {}
    skipped: list[str] = []
    pool = _executor(workers) if workers > 1 else None
    if pool:
        pool.submit(int).result()  # fork the workers now, before tqdm and writer threads exist
    bar = tqdm(total=len(jobs), desc=f"synth {size}", unit="clip", disable=not progress)
    writer = _Writer()
    try:
        results = _ordered_results(pool, jobs, 64 * workers) if pool else map(render, jobs)
        for job, result in zip(jobs, results):
            task_dir = out / TASK_DIRS[job.task]
            done = None if isinstance(result, str) else finish(job, result, task_dir, writer.write)
            if done is None:
                reason = result if isinstance(result, str) else "empty audio"
                log.warning("skipped %s/%s: %s", job.task, job.relpath, reason)
                skipped.append(f"{job.task}/{job.relpath}: {reason}")
            else:
                rows.setdefault((job.task, job.split), []).append((job.relpath, *done))
            bar.update()
        writer.close()
    finally:
        bar.close()
        writer.close(cancel=True)
        if pool:
            pool.shutdown(cancel_futures=True)

    counts: dict[str, dict[str, int]] = {}
    durations: dict[str, dict[str, float]] = {}
    for (task, split), items in rows.items():
        task_dir = out / TASK_DIRS[task]
        keys = list(items[0][3])
        m = Manifest(task_dir, [Row(r, n) for r, n, _, _ in items],
                     {k: [lab[k] for _, _, _, lab in items] for k in keys})
        write_manifest(m, task_dir / f"{split}.tsv")
        counts.setdefault(task, {})[split] = len(items)
        durations.setdefault(task, {})[split] = round(sum(s for _, _, s, _ in items), 2)
        if task == "speakers_unseen":
            atomic_write_text(task_dir / "trials.txt", "\n".join(_trials(m.ids, m.labels["spk"], seed)) + "\n")
        if task == "conversations":
            rttm = [line for uid, seg in zip(m.ids, m.labels["seg"]) for line in bench_tasks.rttm_lines(
                uid, [(float(a), float(b), c) for a, b, c in (t.split(":") for t in seg.split())])]
            atomic_write_text(task_dir / "rttm" / f"{split}.rttm", "\n".join(rttm) + "\n")
        if task == "music_tagging":
            atomic_write_text(task_dir / "tags.txt", "\n".join(mixtures.TAGS) + "\n")
    atomic_write_text(out / "phones.txt", "\n".join(speech.PHONES) + "\n")
    summary = {
        "size": size, "seed": seed, "version": VERSION, "tasks": tasks, "counts": counts,
        "durations_s": durations,
        "sample_rates": {"speech": speech.SPEECH_RATE, "music": music.MUSIC_RATE},
        "frame_rate_ali": speech.SPEECH_RATE // speech.HOP,
        "num_phones": len(speech.PHONES),
        "skipped": len(skipped),
    }
    atomic_write_json(out / "corpus.json", summary)
    if skipped:
        atomic_write_text(out / "skipped.txt", "\n".join(skipped) + "\n")
    summary = dict(summary, out=str(out), seconds=round(time.perf_counter() - t0, 2))
    return summary


def _expand_tasks(tasks: list[str]) -> list[str]:
    out = []
    for t in tasks:
        t = t.strip()
        names = (["music_notes", "music_keys"] if t == "music" else list(TASKS) if t == "all"
                 else [t.replace("/", "_")])
        for name in names:
            if name not in TASKS + EXTRA_TASKS:
                raise ValueError(f"unknown task {t!r}; choose from {', '.join(TASKS + EXTRA_TASKS)} "
                                 f"(or 'music' for both music tasks, 'all' for the default set)")
            if name not in out:
                out.append(name)
    return out
