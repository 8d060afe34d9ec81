"""Plans of the opt-in bench sets (intents, conversations, music_beats, qbe, music_genre, music_tagging):
pure and seeded."""

from __future__ import annotations

import random

from audiossl.data.synth import bench_tasks, mixtures, speech, styles
from audiossl.data.synth.jobs import SPLITS, Job, jitter_voice, clip_seed


def plan_intents(size: str, seed: int, speakers: list[speech.Speaker]) -> list[Job]:
    jobs = []
    for split, count in zip(SPLITS, bench_tasks.SIZES[size].intent_utts):
        rng = random.Random(clip_seed(seed, "intents", split))
        for n, (action, obj, loc) in enumerate(bench_tasks.INTENTS):
            for k in range(count):
                spk = rng.choice(speakers)
                words = bench_tasks.intent_text(action, obj, loc, rng)
                name = f"{split}-i{n:02d}-{k:04d}"
                labels = {"lbl": bench_tasks.intent_label(action, obj, loc), "action": action, "object": obj,
                          "location": loc, "wrd": words.upper(), "spk": spk.spk_id}
                jobs.append(Job("intents", split, f"wav/{spk.spk_id}/{name}.wav", "speech",
                                {"text": words, "settings": jitter_voice(spk, rng)}, clip_seed(seed, "intent", name), labels))
    return jobs


def plan_conversations(size: str, seed: int, speakers: list[speech.Speaker]) -> list[Job]:
    jobs = []
    for split, count in zip(SPLITS, bench_tasks.SIZES[size].conversations):
        rng = random.Random(clip_seed(seed, "conversations", split))
        for k in range(count):
            pair = rng.sample(speakers, 2)
            turns = bench_tasks.conversation_plan(rng)
            name = f"{split}-conv{k:04d}"
            params = {"turns": turns, "speakers": [p.spk_id for p in pair],
                      "settings": [jitter_voice(pair[t["who"]], rng) for t in turns],
                      "gains": [rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0)]}
            jobs.append(Job("conversations", split, f"wav/{name}.wav", "conversation", params,
                            clip_seed(seed, "conv", name)))
    return jobs


def plan_beats(size: str, seed: int) -> list[Job]:
    jobs = []
    for split, count in zip(SPLITS, bench_tasks.SIZES[size].beat_clips):
        for k in range(count):
            name = f"{split}-groove{k:04d}"
            jobs.append(Job("music_beats", split, f"wav/{name}.wav", "beats", {}, clip_seed(seed, "beats", name)))
    return jobs


def plan_qbe(size: str, seed: int, speakers: list[speech.Speaker]) -> list[Job]:
    sz = bench_tasks.SIZES[size]
    keywords = bench_tasks.QBE_KEYWORDS[: sz.qbe_keywords]
    jobs = []
    for split in ("valid", "test"):
        rng = random.Random(clip_seed(seed, "qbe", split))
        for kw in keywords:
            for k in range(sz.qbe_queries):
                spk = rng.choice(speakers)
                name = f"{split}-q-{kw}-{k:02d}"
                jobs.append(Job("qbe", f"{split}_queries", f"wav/queries/{spk.spk_id}/{name}.wav", "speech",
                                {"text": kw, "settings": jitter_voice(spk, rng)}, clip_seed(seed, "qbe", name),
                                {"kw": kw, "spk": spk.spk_id}))
        for k, (words, kw) in enumerate(bench_tasks.qbe_documents(sz.qbe_docs, keywords, rng)):
            spk = rng.choice(speakers)
            name = f"{split}-d{k:04d}"
            found = sorted(set(words) & set(keywords))
            jobs.append(Job("qbe", split, f"wav/docs/{spk.spk_id}/{name}.wav", "speech",
                            {"text": " ".join(words), "settings": jitter_voice(spk, rng)}, clip_seed(seed, "qbe", name),
                            {"kw": ",".join(found) or "none", "wrd": " ".join(words).upper(), "spk": spk.spk_id}))
    return jobs


def plan_genre(size: str, seed: int) -> list[Job]:
    jobs = []
    for split, count in zip(SPLITS, bench_tasks.SIZES[size].genre_clips):
        for genre in styles.GENRES:
            for k in range(count):
                name = f"{split}-{genre}-{k:04d}"
                jobs.append(Job("music_genre", split, f"wav/{genre}/{name}.wav", "style", {"genre": genre},
                                clip_seed(seed, "genre", name), {"lbl": genre}))
    return jobs


def plan_tagging(size: str, seed: int) -> list[Job]:
    """Tags are filled in from the rendered parts (:func:`audiossl.data.synth.mixtures.render_mixture`)."""
    jobs = []
    for split, count in zip(SPLITS, bench_tasks.SIZES[size].tag_clips):
        for k in range(count):
            name = f"{split}-mix{k:05d}"
            jobs.append(Job("music_tagging", split, f"wav/{name}.wav", "mixture", {}, clip_seed(seed, "mixture", name)))
    return jobs
