"""Query by example (SUPERB QbE-style): subsequence DTW of spoken queries over frozen features, MAP.

No head is trained. For every upstream layer each query is matched against every search document
with subsequence DTW (:func:`librosa.sequence.dtw` with ``subseq=True``: the query must be matched
whole, the document anywhere) on the cosine distance of per-utterance mean/variance normalised
features; a pair's score is minus the best path cost divided by the query length. The layer with
the best **MAP** on dev is reported on test (SUPERB picks the layer on dev the same way).

Metric: **MAP** (mean over queries of the non-interpolated average precision of the documents ranked
by score; a document is relevant when it contains the query's keyword), ×100. SUPERB's QbE on QUESST
2014 reports MTWV (the NIST term-weighted value, which needs the detection threshold and cost
constants of the QUESST scoring tool); MAP is the threshold-free ranking metric of the SWS 2013 and
most QbE-STD papers, and it decomposes over queries, which gives the bootstrap CI per query.

Data (``audiossl synth --tasks qbe``): ``qbe/<split>.tsv`` = search documents with ``.kw`` (the
keywords spoken in the document, comma-separated, ``none`` for none); ``qbe/<split>_queries.tsv`` =
isolated keyword queries with ``.kw`` (exactly one keyword each).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audiossl.data.frame_labels import LabelError
from audiossl.data.manifest import ManifestError, read_manifest
from audiossl.eval.cache import CacheConfig, build_cache, layer_stack
from audiossl.eval.confidence import Items, confidence_intervals, task_seed
from audiossl.eval.names import slug
from audiossl.eval.tasks import BenchError

NONE = "none"


def doc_keywords(label: str) -> set[str]:
    toks = {t.strip() for t in label.split(",") if t.strip()}
    return set() if toks == {NONE} else toks


def queries_path(docs_tsv: Path) -> Path:
    docs_tsv = Path(docs_tsv)
    return docs_tsv.with_name(docs_tsv.stem + "_queries.tsv")


def check_labels(manifest, label_path: Path) -> None:
    """Before any caching: documents carry ``.kw`` lines and the queries manifest beside them exists,
    with one keyword per query, every one of them spoken in at least one document."""
    docs = [doc_keywords(l) for l in manifest.labels["kw"]]
    qtsv = queries_path(Path(label_path).with_suffix(".tsv"))
    if not qtsv.is_file():
        raise LabelError(f"{qtsv}: no queries manifest beside the documents {label_path} (QbE needs "
                         f"<split>_queries.tsv + .kw); make it with `audiossl synth --tasks qbe`.")
    try:
        q = read_manifest(qtsv, labels=["kw"])
    except ManifestError as e:
        raise LabelError(str(e)) from None
    found = set().union(*docs) if docs else set()
    for i, lab in enumerate(q.labels["kw"]):
        kw = lab.strip()
        if not kw or "," in kw or kw == NONE:
            raise LabelError(f"{qtsv.with_suffix('.kw')}:{i + 1} ({q.rows[i].relpath}): a query needs exactly one "
                             f"keyword, got {lab!r}")
        if kw not in found:
            raise LabelError(f"{qtsv.with_suffix('.kw')}:{i + 1}: query keyword {kw!r} occurs in no document of "
                             f"{label_path}; its average precision is undefined.")


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    """Non-interpolated AP of one ranking: mean over relevant items of precision at their rank.

    Ties are broken by item order (stable sort), so the result is deterministic. NaN when nothing
    is relevant.
    """
    scores, relevant = np.asarray(scores, dtype=np.float64), np.asarray(relevant, dtype=bool)
    if not relevant.any():
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    rel = relevant[order]
    hits = np.cumsum(rel)
    ranks = np.arange(1, len(rel) + 1)
    return float(np.mean(hits[rel] / ranks[rel]))


def mean_average_precision(score_matrix: np.ndarray, relevance: np.ndarray) -> tuple[float, np.ndarray]:
    """``(MAP ×100, per-query AP)`` over queries (rows) × documents (columns)."""
    ap = np.array([average_precision(s, r) for s, r in zip(score_matrix, relevance)])
    return 100.0 * float(np.nanmean(ap)), ap


def _normalise(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(0, keepdims=True)
    x = x / (x.std(0, keepdims=True) + 1e-5)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-8)


def dtw_score(query: np.ndarray, doc: np.ndarray) -> float:
    """Minus the length-normalised cost of the best subsequence-DTW path of ``query`` [N, D] in ``doc`` [M, D].

    Inputs are unit-norm rows (cosine distance = 1 − dot). Steps (1,1), (1,0), (0,1), as librosa's default.
    """
    import librosa  # lazy: slow import (numba); only this path needs it

    cost = np.clip(1.0 - query @ doc.T, 0.0, 2.0)
    acc = librosa.sequence.dtw(C=cost, subseq=True, backtrack=False)
    return -float(acc[-1].min()) / len(query)


def score_layer(queries: list[np.ndarray], docs: list[np.ndarray]) -> np.ndarray:
    """Scores ``[queries, docs]`` for one layer (features ``[frames, dim]`` per utterance)."""
    q = [_normalise(np.asarray(x, dtype=np.float32)) for x in queries]
    d = [_normalise(np.asarray(x, dtype=np.float32)) for x in docs]
    return np.array([[dtw_score(a, b) for b in d] for a in q])


def relevance(query_kw: list[str], doc_kw: list[set[str]]) -> np.ndarray:
    return np.array([[k.strip() in d for d in doc_kw] for k in query_kw], dtype=bool)


def evaluate(dev: tuple, test: tuple, num_layers: int) -> dict:
    """``dev``/``test`` = ``(query feats [list of [T, L, D]], query keywords, doc feats, doc keyword sets)``.

    Returns ``{"layer", "dev_map" per layer, "test_map", "test_ap" per query}``.
    """
    def per_layer(split, layer):
        qf, qk, df, dk = split
        s = score_layer([x[:, layer] for x in qf], [x[:, layer] for x in df])
        return mean_average_precision(s, relevance(qk, dk))

    dev_map = [per_layer(dev, k)[0] for k in range(num_layers)]
    best = int(np.argmax(dev_map))
    test_map, ap = per_layer(test, best)
    return {"layer": best, "dev_map": dev_map, "test_map": test_map, "test_ap": ap}


def run_pair(u: str, up, layer: int | None, td, out: Path, cfg) -> dict:
    """The bench record of one (upstream, qbe) pair: cache queries + documents of dev and test, pick
    the layer on dev, score test; per-query AP as the bootstrap items."""
    ccfg = CacheConfig(layer=layer, pooled=False, max_batch_seconds=cfg.max_batch_seconds, device=cfg.device)
    splits, skipped, qids = {}, 0, []
    for role in ("dev", "test"):
        parts = []
        for tsv in (queries_path(td.splits[role]), td.splits[role]):
            store = build_cache(up, u, tsv, out / "cache" / slug(u), ccfg)
            skipped += len(store.meta["extra"].get("skipped", []))
            m = read_manifest(tsv, labels=["kw"])
            ids = m.ids  # a property that builds the list: read it once
            keep = [i for i, x in enumerate(ids) if x in store]
            if not keep:
                raise BenchError(f"task qbe: every file of {tsv} was skipped as bad audio.")
            parts.append(([np.asarray(layer_stack(store, ids[i]), dtype=np.float32) for i in keep],
                          [m.labels["kw"][i] for i in keep], [ids[i] for i in keep]))
        (qf, qk, qi), (df, dk, _) = parts
        splits[role] = (qf, [k.strip() for k in qk], df, [doc_keywords(k) for k in dk])
        if role == "test":
            qids = qi
    num_layers = splits["dev"][0][0].shape[1]
    res = evaluate(splits["dev"], splits["test"], num_layers)
    ap = res["test_ap"]
    ok = ~np.isnan(ap)  # a query whose keyword lost all its documents to bad audio
    items = Items([q for q, k in zip(qids, ok) if k], {"map": (ap[ok], np.ones(int(ok.sum())))})
    run_dir = out / "runs" / slug(u) / td.spec.name
    run_dir.mkdir(parents=True, exist_ok=True)
    items.save(run_dir / "items.npz")
    ci = confidence_intervals(items, ["map"], n=cfg.bootstrap, seed=task_seed("qbe", cfg.seed)) if cfg.bootstrap > 0 else {}
    best = res["layer"] if layer is None else layer
    weights = [float(k == res["layer"]) for k in range(num_layers)]
    return {
        "upstream": u, "upstream_name": up.name, "task": "qbe", "metric": "map", "value": res["test_map"],
        "test": {"map": res["test_map"]}, "dev": max(res["dev_map"]), "lr": None, "lr_grid": {},
        "layer": best, "layer_weights": weights, "curve": [], "dev_per_layer": res["dev_map"],
        "folds": [], "skipped_files": skipped, "head": None, "epochs": 0, "frame_rate": float(up.frame_rate),
        "ci": ci, "items": str((run_dir / "items.npz").relative_to(out)), "lm": None,
    }
