"""Benchmark: bench head training from the feature cache vs running the frozen upstream every step.

s3prl's downstream runner forwards the frozen upstream on every training step; `audiossl bench`
runs it once per split into a memory-mapped cache (audiossl.eval.cache) and trains the heads from
there. Both paths here train the SAME task spec, head, featurizer, optimizer and batches with the
same loop (audiossl.eval.runner.train_epoch); only the feature source differs. The peer path is
given its best case: the audio is preloaded into RAM and the upstream runs batched.

    .venv/bin/python tools/bench/feature_cache.py                  # HuBERT Base (random init), KS-like, 48 × 1 s
    .venv/bin/python tools/bench/feature_cache.py --quick          # hubert tiny, 24 × 1 s (seconds)
    .venv/bin/python tools/bench/feature_cache.py --task pr        # frame-level cache (linear CTC)
    .venv/bin/python tools/bench/feature_cache.py --upstream fbank # any load_upstream spec

Prints seconds per epoch for both, the ratio (target ≥ 10×), the one-off cache build time and
the number of epochs after which the cache has paid for itself.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

SR = 16000


def make_corpus(root: Path, n: int, seconds: float, seed: int) -> dict[str, Path]:
    """Tones per class (KS-like, .lbl) with phone-like sequences (.phn) in train/valid/test manifests."""
    import soundfile as sf

    from audiossl.data.manifest import Manifest, Row, write_manifest

    rng = np.random.default_rng(seed)
    freqs = [300.0, 600.0, 1200.0, 2400.0]
    out = {}
    for split, count in (("train", n), ("valid", max(4, n // 4)), ("test", max(4, n // 4))):
        rows, lbl, phn = [], [], []
        for k in range(count):
            c = k % len(freqs)
            t = np.arange(int(seconds * SR)) / SR
            wav = 0.3 * np.sin(2 * math.pi * freqs[c] * t) + 0.02 * rng.standard_normal(t.size)
            rel = f"wav/{split}_{k}.wav"
            (root / "wav").mkdir(parents=True, exist_ok=True)
            sf.write(root / rel, wav.astype(np.float32), SR)
            rows.append(Row(rel, t.size))
            lbl.append(f"class{c}")
            phn.append(" ".join(rng.choice(["a", "b", "c", "d"], size=int(seconds * 8))))
        out[split] = write_manifest(Manifest(root, rows, {"lbl": lbl, "phn": phn}), root / f"{split}.tsv")
    return out


def build_upstream(spec: str | None, size: str):
    from audiossl.upstream.encoder import EncoderUpstream
    from audiossl.upstream.load import load_upstream

    if spec:
        return load_upstream(spec), spec
    from audiossl.models.hubert.model import CONFIGS, build_hubert

    model = build_hubert(CONFIGS[size]()).encoder
    return EncoderUpstream(model, name=f"hubert_{size}_random"), f"hubert_{size}_random"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--upstream", default=None, help="load_upstream spec (default: audiossl HuBERT, random init)")
    p.add_argument("--size", default="base", choices=["tiny", "base"], help="HuBERT size when --upstream is not given")
    p.add_argument("--task", default="ks", choices=["ks", "pr"], help="pooled utterance task or frame-level CTC task")
    p.add_argument("--clips", type=int, default=48, help="training clips")
    p.add_argument("--seconds", type=float, default=1.0, help="clip length")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per path")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--quick", action="store_true", help="hubert tiny, 24 clips, 2 epochs")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = p.parse_args()
    if args.quick:
        args.size, args.clips, args.epochs = "tiny", 24, 2

    import torch

    from audiossl.eval.cache import CacheConfig, build_cache
    from audiossl.eval.heads import masked_mean
    from audiossl.eval.batching import collate, make_batches
    from audiossl.eval.runner import RunConfig, _targets, setup, train_epoch
    from audiossl.eval.splits import load_split
    from audiossl.eval.tasks import get_task
    from audiossl.audio.io import load_audio

    spec = get_task(args.task)
    up, up_id = build_upstream(args.upstream, args.size)
    up = up.to(args.device).eval()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tsvs = make_corpus(tmp / "data", args.clips, args.seconds, seed=0)
        t0 = time.perf_counter()
        store = build_cache(up, up_id, tsvs["train"], tmp / "cache", CacheConfig(pooled=spec.pooled, device=args.device))
        t_build = time.perf_counter() - t0
        train = load_split(store, tsvs["train"], spec.label)
        cfg = RunConfig(lr=spec.lr, epochs=args.epochs, device=args.device)
        batches = make_batches(train, spec.batch_frames, True, random.Random(0))
        wavs = {}
        from audiossl.data.manifest import read_manifest

        m = read_manifest(tsvs["train"], labels=[])
        for i, uid in enumerate(m.ids):
            wavs[uid] = load_audio(m.path(i), up.sample_rate)[0]

        def live(idx):
            """What s3prl does: the frozen upstream on every step (batched, audio already in RAM)."""
            ws = [wavs[train.ids[i]] for i in idx]
            lens = torch.tensor([w.shape[0] for w in ws])
            out = up(torch.nn.utils.rnn.pad_sequence(ws, batch_first=True).to(args.device), lens.to(args.device))
            x = torch.stack(out.hidden_states, dim=2)  # [batch, frame, layer, dim]
            flen = out.lengths
            if spec.pooled:
                x = torch.stack([masked_mean(x[:, :, k], flen) for k in range(x.shape[2])], dim=1)  # [batch, layer, dim]
            return x, flen, flen.cpu()

        def cached(idx):
            return collate(train, idx, spec.pooled, args.device)

        times = {}
        for name, source in (("cache", cached), ("upstream_every_step", live)):
            torch.manual_seed(0)
            obj, fwd, opt = setup(spec, train, cfg, int(up.num_layers), None)
            targets = _targets(obj, train)
            train_epoch(fwd, obj, opt, batches[:1], source, targets, cfg)  # warm-up
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(args.epochs):
                loss = train_epoch(fwd, obj, opt, batches, source, targets, cfg)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name] = (time.perf_counter() - t) / args.epochs
            print(f"{name:>20}: {times[name]:8.3f} s/epoch (final loss {loss:.3f})")
    ratio = times["upstream_every_step"] / times["cache"]
    breakeven = t_build / max(times["upstream_every_step"] - times["cache"], 1e-9)
    res = {
        "upstream": up_id, "task": args.task, "clips": args.clips, "seconds": args.seconds, "epochs": args.epochs,
        "threads": torch.get_num_threads(), "device": args.device, "cache_build_s": t_build,
        "cache_s_per_epoch": times["cache"], "upstream_s_per_epoch": times["upstream_every_step"], "ratio": ratio,
        "breakeven_epochs": breakeven,
    }
    print(f"{'cache build (once)':>20}: {t_build:8.3f} s  → pays off after {breakeven:.2f} epochs")
    print(f"ratio upstream-every-step / cache per epoch: {ratio:.1f}x (target >= 10x)")
    if args.json:
        from audiossl.utils.fileio import atomic_write_json

        atomic_write_json(args.json, res)


if __name__ == "__main__":
    main()
