"""Report figures written beside ``results.md``: per-task bars with 95 % CI whiskers and layer-weight heatmaps.

Matplotlib with the Agg backend (no display needed); files are written atomically.
"""

from __future__ import annotations

from pathlib import Path

from audiossl.utils.fileio import atomic_open


def _plt():
    import matplotlib  # lazy: slow import; only plots need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: slow import; only plots need it

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    return path


def score_bars(columns: list[dict], upstreams: list[str], path: str | Path) -> Path:
    """One panel per table column, one bar per upstream, whiskers = 95 % confidence interval.

    ``columns``: ``{"title", "values": {upstream: value}, "ci": {upstream: [lo, hi] | None}, "lower_better"}``.
    """
    import numpy as np  # lazy: keeps torch/numpy out of startup (`prepare`, `validate`, `--help` start fast)

    plt = _plt()
    n = len(columns)
    ncol = min(n, 4)
    nrow = (n + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.8 * nrow), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, col in enumerate(columns):
        ax = axes[k // ncol][k % ncol]
        xs, hs, err = [], [], [[], []]
        for j, u in enumerate(upstreams):
            v = col["values"].get(u)
            if v is None:
                continue
            ci = col["ci"].get(u)
            xs.append(j)
            hs.append(v)
            err[0].append(max(v - ci[0], 0.0) if ci else 0.0)
            err[1].append(max(ci[1] - v, 0.0) if ci else 0.0)
        ax.bar(xs, hs, yerr=np.array(err) if xs else None, capsize=4,
               color=[colors[x % len(colors)] for x in xs])
        ax.set_xticks(range(len(upstreams)), upstreams, rotation=30, ha="right", fontsize=7)
        ax.set_title(col["title"] + (" (lower is better)" if col.get("lower_better") else ""), fontsize=8)
    for k in range(n, nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    fig.suptitle("test metrics with 95% bootstrap confidence intervals", fontsize=9)
    fig.tight_layout()
    out = _save(fig, Path(path))
    plt.close(fig)
    return out


def layer_weight_heatmap(weights: dict[str, list[float]], title: str, path: str | Path) -> Path:
    """Tasks × layers heatmap of the learned softmax layer weights of one upstream (``{task: weights}``)."""
    import numpy as np  # lazy: keeps torch/numpy out of startup (`prepare`, `validate`, `--help` start fast)

    plt = _plt()
    tasks = list(weights)
    nl = max(len(w) for w in weights.values())
    m = np.full((len(tasks), nl), np.nan)
    for i, t in enumerate(tasks):
        m[i, : len(weights[t])] = weights[t]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 + 0.45 * nl), 1.2 + 0.35 * len(tasks)))
    im = ax.imshow(m, aspect="auto", cmap="viridis", vmin=0.0)
    ax.set_xticks(range(nl), [str(i) for i in range(nl)], fontsize=7)
    ax.set_yticks(range(len(tasks)), tasks, fontsize=7)
    ax.set(xlabel="layer (0 = input of the first transformer layer)", title=title)
    ax.title.set_fontsize(8)
    ax.xaxis.label.set_fontsize(7)
    fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02)
    fig.tight_layout()
    out = _save(fig, Path(path))
    plt.close(fig)
    return out
