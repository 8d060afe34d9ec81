"""k-means units for HuBERT-style pretraining.

  audiossl kmeans fit STORE OUT --k 100 --percent 0.1       fit centroids on a feature store
  audiossl kmeans label OUT STORE LABELS [--manifest TSV]    write frame labels (+ .json sidecar)
  audiossl kmeans quality LABELS --ref REF.ali --ref-rate 100  PNMI / purity / codebook usage
      [--rate 50]   ... of the units resampled to 50 Hz (nearest frame), to compare unit sets at one rate

A model is a directory with kmeans.safetensors (centroids) and kmeans.json (what made it).

Data-parallel: `fit` under torchrun streams each rank's share of the store's shards and
all-reduces per-centroid float64 sums and counts (rank 0 writes the model; same centroids as one
process). `label` under torchrun labels each rank's shards and rank 0 writes the file after a
barrier; as a Slurm array, `label ... --shard I/N` per task writes LABELS.part-I-of-N.npz, then
`label ... --merge` writes LABELS. Labels are identical for any number of ranks or shards.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

HELP = "fit k-means on features, label a corpus, measure label quality"
log = logging.getLogger("audiossl.kmeans")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="{fit,label,quality}")
    fmt = argparse.ArgumentDefaultsHelpFormatter

    f = sub.add_parser("fit", help="fit centroids on a feature store (streamed from disk)", formatter_class=fmt)
    f.add_argument("store", type=Path, help="feature store directory (from `audiossl features`)")
    f.add_argument("out", type=Path, help="output directory for kmeans.safetensors + kmeans.json")
    f.add_argument("--k", type=int, default=100, help="number of clusters (fairseq n_clusters)")
    f.add_argument("--percent", type=float, default=-1.0, help="fraction of each utterance's frames to fit on; -1 = all")
    f.add_argument("--seed", type=int, default=0, help="seed for frame sampling and k-means++")
    f.add_argument("--iters", type=int, default=2, help="full Lloyd passes over all chosen frames")
    f.add_argument("--sample-iters", type=int, default=10, help="Lloyd iterations on the in-memory init sample first")
    f.add_argument("--swap-rounds", type=int, default=5, help="centroid swap rounds on the init sample (0 = off)")
    f.add_argument("--init-size", type=int, default=None, help="frames in the k-means++ sample (default max(10000, 40k))")
    f.add_argument("--tol", type=float, default=0.0, help="stop passes when the relative inertia drop is below this")
    f.add_argument("--chunk-size", type=int, default=16384, help="frames per distance matmul")
    f.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ...")
    f.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")

    la = sub.add_parser("label", help="assign every frame of a store to its nearest centroid", formatter_class=fmt)
    la.add_argument("kmeans", type=Path, help="k-means directory from `kmeans fit`")
    la.add_argument("store", type=Path, help="feature store to label")
    la.add_argument("labels", type=Path, help="output label file, e.g. data/train.km (sidecar .km.json beside it)")
    la.add_argument("--manifest", type=Path, default=None, help="write rows in this manifest's order (None: the store's order)")
    la.add_argument("--fairseq-dict", action="store_true", help="also write dict.<ext>.txt beside the labels")
    la.add_argument("--chunk-size", type=int, default=16384, help="frames per distance matmul")
    la.add_argument("--device", default="cpu", help="torch device: cpu, cuda, ...")
    la.add_argument("--shard", default=None, metavar="I/N", help="label only part I of N of the store's shards (a Slurm array task)")
    la.add_argument("--merge", action="store_true", help="write LABELS from the finished --shard parts")

    q = sub.add_parser("quality", help="PNMI, phone / cluster purity, codebook usage vs reference labels", formatter_class=fmt)
    q.add_argument("labels", type=Path, help="unit label file with its .json sidecar (gives its frame rate)")
    q.add_argument("--ref", type=Path, required=True, help="reference labels: one line per row, space-separated symbols")
    q.add_argument("--ref-rate", type=float, default=100.0, help="frame rate of the reference labels in Hz")
    q.add_argument("--tolerance", type=int, default=3, help="max length difference per row, in label frames (Kaldi 25 ms windows lose ~1.5)")
    q.add_argument("--json", type=Path, default=None, help="also write the metrics as JSON here")
    q.add_argument("--rate", type=float, default=None,
                   help="score the units resampled to this frame rate in Hz (nearest frame by start time, e.g. "
                        "100 Hz MFCC k-means labels at a 50 Hz model's rate); None = their own rate")
    q.add_argument("--band", type=int, default=None,
                   help="multi-codebook labels (BEATs bands, RVQ levels): score only this codebook; "
                        "None scores each one and reports the mean")


def run(args: argparse.Namespace) -> int:
    return {"fit": _fit, "label": _label, "quality": _quality}[args.action](args)


def _fail(msg: str) -> int:
    print(f"audiossl kmeans: {msg}", file=sys.stderr)
    return 1


def _fit(args: argparse.Namespace) -> int:
    from audiossl.data.feature_store import FeatureStore
    from audiossl.tokenizers.kmeans import KMeansConfig
    from audiossl.tokenizers.kmeans_store import fit_kmeans_store
    from audiossl.tokenizers.kmeans_io import save_kmeans

    from audiossl.data.sharding import current_part

    try:
        part = current_part()
        store = FeatureStore(args.store)
        cfg = KMeansConfig(
            k=args.k, percent=args.percent, seed=args.seed, init_size=args.init_size, sample_iters=args.sample_iters,
            swap_rounds=args.swap_rounds, iters=args.iters, tol=args.tol, chunk_size=args.chunk_size,
            device=args.device, num_threads=args.threads,
        )
        res = fit_kmeans_store(store, cfg, part=part)
    except (FileNotFoundError, ValueError) as e:
        return _fail(str(e))
    if part.index != 0:  # every rank holds the same centroids; rank 0 writes them
        part.barrier()
        return 0
    extra = store.meta.get("extra", {}) or {}
    meta = {
        "feature_kind": store.kind,
        "layer": extra.get("layer"),
        "frame_rate": store.frame_rate,
        "source_store": str(Path(args.store).resolve()),
        "seed": args.seed,
        "percent": args.percent,
        "iters": args.iters,
        "inertia": res.inertia,
        "inertia_per_frame": res.inertia / max(res.num_frames, 1),
        "inertia_trace": res.inertia_trace,
        "num_frames": res.num_frames,
        "empty_reassigned": res.empty_reassigned,
    }
    save_kmeans(args.out, res.centroids, meta)
    part.barrier()
    print(f"k-means k={args.k} on {res.num_frames} frames: inertia/frame {meta['inertia_per_frame']:.6g} -> {args.out}")
    return 0


def _label(args: argparse.Namespace) -> int:
    from audiossl.data.feature_store import FeatureStore
    from audiossl.data.frame_labels import LabelInfo, write_fairseq_dict, write_frame_labels
    from audiossl.data.manifest import ManifestError, read_manifest
    from audiossl.tokenizers.kmeans_store import label_store
    from audiossl.tokenizers.kmeans_io import load_kmeans
    from audiossl.tokenizers.label_parts import label_parts, merge_label_parts, save_label_part

    try:
        km = load_kmeans(args.kmeans)
        store = FeatureStore(args.store)
        order = store.ids
        if args.manifest is not None:
            ids_file = Path(args.manifest).with_suffix(".ids")
            order = read_manifest(args.manifest, labels=["ids"] if ids_file.is_file() else []).ids
            missing = [u for u in order if u not in store]
            if missing:
                shown = ", ".join(missing[:10]) + (f", ... ({len(missing)} in all)" if len(missing) > 10 else "")
                return _fail(
                    f"{args.manifest}: {len(missing)} of {len(order)} utterances are not in the feature store "
                    f"{args.store}: {shown}. Re-run `audiossl features` on this manifest."
                )
        from audiossl.data.sharding import current_part

        part = current_part(args.shard)
        if args.merge:
            by_id = merge_label_parts(args.labels)
        else:
            by_id = label_store(store, km.centroids, device=args.device, chunk_size=args.chunk_size,
                                part=(part.index, part.count))
            if not part.single:
                save_label_part(args.labels, part.index, part.count, by_id)
                part.barrier()
                if not part.distributed:
                    print(f"labelled part {part.index}/{part.count} ({len(by_id)} utterances); "
                          f"join the parts with `audiossl kmeans label ... --merge`")
                    return 0
                if part.index != 0:
                    part.barrier()
                    return 0
                by_id = merge_label_parts(args.labels)
        missing = [u for u in order if u not in by_id]
        if missing:
            return _fail(f"{args.labels}: no labels for {len(missing)} utterances (e.g. {missing[0]})")
    except (FileNotFoundError, ValueError, ManifestError) as e:
        return _fail(str(e))
    tokenizer = {
        "kind": "kmeans",
        "k": km.k,
        "path": str(Path(args.kmeans).resolve()),
        "feature_kind": km.meta.get("feature_kind", store.kind),
        "layer": km.meta.get("layer"),
        "sha256": km.sha256,
    }
    if km.meta.get("feature_kind") not in (None, store.kind):
        log.warning("centroids were fit on %r features but the store holds %r", km.meta["feature_kind"], store.kind)
    labels = [by_id[u] for u in order]
    write_frame_labels(args.labels, labels, LabelInfo(frame_rate=store.frame_rate, num_classes=km.k, tokenizer=tokenizer))
    msg = f"labelled {len(labels)} rows ({sum(len(l) for l in labels)} frames) -> {args.labels}"
    if args.fairseq_dict:
        ext = Path(args.labels).suffix.lstrip(".") or "km"
        d = write_fairseq_dict(Path(args.labels).parent / f"dict.{ext}.txt", km.k)
        msg += f", {d}"
    print(msg)
    for p in label_parts(args.labels):
        p.unlink()
    if part.distributed:
        part.barrier()
    from audiossl.cli.status import produced_or_fail

    return produced_or_fail("kmeans label", len(labels), len(labels), "utterances")


def _quality(args: argparse.Namespace) -> int:
    from audiossl.data.frame_labels import LabelError, read_frame_labels
    from audiossl.tokenizers.quality import AlignmentError, label_quality, read_ref_labels, resample_labels

    try:
        hyp, info = read_frame_labels(args.labels)
        rate = info.frame_rate
        if args.rate is not None and args.rate != rate:
            hyp, rate = [resample_labels(h, info.frame_rate, args.rate) for h in hyp], args.rate
        ref = read_ref_labels(args.ref)
        c = info.num_codebooks
        if args.band is not None and not 0 <= args.band < c:
            raise ValueError(f"--band {args.band}: {args.labels} has {c} codebook(s) per frame (0..{c - 1})")
        bands = [None] if c == 1 else ([args.band] if args.band is not None else list(range(c)))
        scores = [
            label_quality(
                [h if b is None else h[:, b] for h in hyp], ref, hyp_rate=rate, ref_rate=args.ref_rate,
                num_units=info.num_classes, tolerance=args.tolerance, hyp_name=str(args.labels), ref_name=str(args.ref),
            )
            for b in bands
        ]
    except (FileNotFoundError, LabelError, AlignmentError, ValueError) as e:
        return _fail(str(e))
    record: dict = {"labels": str(args.labels), "ref": str(args.ref), "ref_rate": args.ref_rate,
                    "label_rate": info.frame_rate, "frame_rate": rate,
                    "resampling": None if rate == info.frame_rate else "nearest frame by start time"}
    if len(scores) == 1:
        print(scores[0].table())
        record.update(scores[0].to_dict())
    else:
        for b, q in zip(bands, scores):
            print(f"codebook {b}: PNMI {q.pnmi:.4f}")
        mean = sum(q.pnmi for q in scores) / len(scores)
        print(f"mean PNMI over {len(scores)} codebooks: {mean:.4f} (best {max(q.pnmi for q in scores):.4f})")
        record.update(pnmi=mean, pnmi_best=max(q.pnmi for q in scores), codebooks=[q.to_dict() for q in scores])
    if args.json:
        from audiossl.utils.fileio import atomic_write_json

        atomic_write_json(args.json, record)
    return 0
