"""Which layers of each upstream hold a label: a cross-validated linear probe on pooled features.

Reads the pooled feature caches ``audiossl bench`` leaves under ``OUT/cache/<upstream>/`` (no model
runs again) for every split of one corpus directory, pools the splits, and scores each layer with
k-fold cross-validated logistic regression on standardised features (scikit-learn). Pooling the
splits gives every clip a turn in a test fold, so the score is not at the mercy of one small test
split; the spread over folds is printed with it. ``--random FAMILY`` adds the same probe on a
*randomly initialised* tiny encoder of that family (run here over the same clips): the control
that says whether pretraining added or removed the information.

Pooling the splits also mixes what a split holds out (the unseen speakers of a KS or SID test split,
say), so for such tasks the scores are optimistic next to the bench's: compare rows with each other
here, not with the bench table.

    python tools/layer_probe.py demo_out/bench/mert --corpus notes --label pitch --random hubert,mert
    python tools/layer_probe.py demo_out/bench/hubert --corpus keys --label lbl

Prints a markdown table (mean ± std accuracy over folds, per layer) and writes it to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from audiossl.audio.io import load_audio
from audiossl.data.feature_store import FeatureStore
from audiossl.data.manifest import read_manifest
from audiossl.models.families import get_family
from audiossl.upstream.encoder import EncoderUpstream


def cached_splits(bench_out: Path, corpus: str) -> dict[str, list[Path]]:
    """``upstream cache dir name → [pooled stores of corpus's splits]`` found under ``bench_out/cache``."""
    found: dict[str, list[Path]] = {}
    for up_dir in sorted(p for p in (bench_out / "cache").iterdir() if p.is_dir()):
        stores = [s for s in sorted(up_dir.glob(f"{corpus}_*_*")) if (s / "meta.json").is_file()]
        stores = [s for s in stores if json.loads((s / "meta.json").read_text())["extra"].get("pooled")]
        if stores:
            found[up_dir.name] = stores
    return found


def pooled_features(stores: list[Path], label: str) -> tuple[np.ndarray, np.ndarray, list[str], int]:
    """Stores → (features ``[clip, layer, dim]``, labels ``[clip]``, manifests read, number of layers)."""
    xs, ys, manifests = [], [], []
    for path in stores:
        store = FeatureStore(path)
        extra = store.meta["extra"]
        layers = int(extra.get("num_layers", 1))
        man = read_manifest(extra["manifest"], labels=[label])
        by_id = dict(zip(man.ids, man.labels[label]))
        xs.append(np.stack([np.asarray(store[u][0]).reshape(layers, -1) for u in store.ids]))
        ys += [by_id[u] for u in store.ids]
        manifests.append(extra["manifest"])
    return np.concatenate(xs), np.array(ys), manifests, layers


def random_encoder_features(family: str, manifests: list[str], label: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A randomly initialised ``family`` tiny encoder over the clips of ``manifests`` → (``[clip, layer, dim]``, labels)."""
    torch.manual_seed(seed)
    fam = get_family(family)
    up = EncoderUpstream(fam.build_pretrain_model(fam.CONFIGS["tiny"]()).encoder.eval(), name=f"random {family}-tiny")
    xs, ys = [], []
    with torch.inference_mode():
        for tsv in manifests:
            man = read_manifest(tsv, labels=[label])
            for i in range(len(man)):
                wav, _ = load_audio(man.path(i), up.sample_rate)
                out = up(wav[None], torch.tensor([len(wav)]))
                xs.append(torch.stack([h[0].mean(0) for h in out.hidden_states]).numpy())
            ys += man.labels[label]
    return np.stack(xs), np.array(ys)


def probe(x: np.ndarray, y: np.ndarray, folds: int, seed: int = 0) -> list[tuple[float, float]]:
    """``[clip, layer, dim]`` → per layer (mean, std) accuracy in % over ``folds`` CV folds."""
    counts = np.unique(y, return_counts=True)[1]
    cv = (StratifiedKFold if counts.min() >= folds else KFold)(folds, shuffle=True, random_state=seed)
    out = []
    for layer in range(x.shape[1]):
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
        scores = []
        for tr, te in cv.split(x[:, layer], y):
            clf.fit(x[tr, layer], y[tr])
            scores.append(100.0 * float((clf.predict(x[te, layer]) == y[te]).mean()))
        out.append((float(np.mean(scores)), float(np.std(scores))))
    return out


def effective_rank(x: np.ndarray) -> float:
    """RankMe of ``x [clip, dim]`` after centring: ``exp(-Σ p log p)``, ``p = σ / Σσ`` (1 … min(clip, dim))."""
    s = np.linalg.svd(x - x.mean(0), compute_uv=False)
    p = s / max(float(s.sum()), 1e-12)
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench_out", type=Path, help="an `audiossl bench --out` directory (its cache/ is read)")
    ap.add_argument("--corpus", default="notes", help="corpus directory name of the task's manifests (notes, keys, keywords, ...)")
    ap.add_argument("--label", default="pitch", help="label file extension beside the manifests (pitch, lbl, spk, ...)")
    ap.add_argument("--folds", type=int, default=6)
    ap.add_argument("--random", default="", help="comma-separated families to add as randomly initialised tiny encoders")
    ap.add_argument("--out", type=Path, default=None, help="write the table here (markdown)")
    args = ap.parse_args(argv)
    if not (args.bench_out / "cache").is_dir():
        print(f"error: {args.bench_out}/cache not found; run `audiossl bench ... --out {args.bench_out}` first", file=sys.stderr)
        return 2
    found = cached_splits(args.bench_out, args.corpus)
    if not found:
        print(f"error: no pooled cache of corpus {args.corpus!r} under {args.bench_out}/cache (a pooled task's corpus: notes, keys, ...)",
              file=sys.stderr)
        return 2
    def scored(name: str, x: np.ndarray, y: np.ndarray) -> tuple:
        return name, len(y), probe(x, y, args.folds), [effective_rank(x[:, i]) for i in range(x.shape[1])], x.shape[2]

    rows, manifests = [], []
    for name, stores in found.items():
        x, y, manifests, _ = pooled_features(stores, args.label)
        rows.append(scored(name, x, y))
    for family in filter(None, args.random.split(",")):
        rows.append(scored(f"random-init {family}-tiny", *random_encoder_features(family, manifests, args.label)))
    width = max(len(r[2]) for r in rows)
    lines = [f"| upstream | clips | " + " | ".join(f"L{i}" for i in range(width)) + " |", "|---|---|" + "---|" * width]
    for name, n, scores, _, _ in rows:
        cells = [f"{m:.1f} ± {s:.1f}" for m, s in scores] + [""] * (width - len(scores))
        lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    lines += ["", f"{args.folds}-fold CV accuracy (%) of a logistic regression on standardised, mean-pooled "
              f"layer features, label `{args.label}` of corpus `{args.corpus}` (all splits pooled).", ""]
    lines += [f"| upstream | dims | " + " | ".join(f"L{i}" for i in range(width)) + " |", "|---|---|" + "---|" * width]
    for name, _, _, ranks, dim in rows:
        lines.append(f"| {name} | {dim} | " + " | ".join([f"{r:.1f}" for r in ranks] + [""] * (width - len(ranks))) + " |")
    table = "\n".join(lines) + ("\n\nEffective rank (RankMe) of each layer's centred mean-pooled features over the same clips: "
                                "how many directions the clips spread over (no label used).\n")
    print(table)
    if args.out:
        args.out.write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
