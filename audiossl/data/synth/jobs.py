"""A clip to synthesize (:class:`Job`), and the seeded helpers every corpus plan uses."""

from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, dataclass, field

from audiossl.data.synth import speech

SPLITS = ("train", "valid", "test")


@dataclass
class Job:
    """One clip to render. ``kind`` selects the renderer; ``params`` are its arguments."""

    task: str
    split: str
    relpath: str
    kind: str  # "speech" | "keyword" | "note" | "keys" | "beats" | "conversation" | "style" | "mixture"
    params: dict
    seed: int
    labels: dict[str, str] = field(default_factory=dict)


def clip_seed(*parts) -> int:
    h = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def jitter_voice(spk: speech.Speaker, rng: random.Random, **style) -> dict:
    s = spk.settings(**style)
    return asdict(s) | {
        "rate": int(min(400, max(80, s.rate * rng.uniform(0.92, 1.08)))),
        "pitch": int(min(99, max(0, s.pitch + rng.randint(-4, 4)))),
    }
