"""PNG plots: linear accuracy vs pre-training batch size per method, and t-SNE of features."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tribyol.report import paper
from tribyol.report.tables import base_method, latest, method_rows, row_name

TSNE_POINTS = 2000  # t-SNE is O(n log n) but slow on 2 cores beyond a few thousand points


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, out: str | Path) -> Path:
    """Write ``fig`` as a PNG (making its folder) and free it."""
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    _pyplot().close(fig)
    return out


def plot_loss_curves(curves: dict[str, list[tuple[float, float]]], out: str | Path, title: str) -> Path:
    """Training loss against optimizer step, one line per run."""
    fig, ax = _pyplot().subplots(figsize=(6, 4))
    for name, points in curves.items():
        if points:
            steps, losses = zip(*points, strict=True)
            ax.plot(steps, losses, label=name)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.legend()
    return save_figure(fig, out)


def plot_batch_curves(
    records: list[dict[str, Any]], out: str | Path, protocol: str = "linear"
) -> Path | None:
    """One panel per dataset: top-1 vs pre-training batch, ours solid, the poster's dashed."""
    ours: dict[str, dict[str, dict[int, list[float]]]] = {}
    chosen = [r for r in latest(records) if r.get("protocol") == protocol
              and r.get("pretrain_batch_size") and r.get("value") is not None]
    for r, row in zip(chosen, method_rows(chosen), strict=True):
        ours.setdefault(r["dataset"], {}).setdefault(row, {}).setdefault(
            int(r["pretrain_batch_size"]), []).append(float(r["value"]))
    poster: dict[str, dict[str, dict[int, float]]] = {}
    if protocol == "linear":
        for method, row in paper.LINEAR.items():
            for (dataset, batch), value in row.items():
                if value is not None:
                    poster.setdefault(dataset, {}).setdefault(method, {})[batch] = value
    datasets = sorted(set(ours)) + [d for d in poster if d not in ours]
    if not datasets:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.6), squeeze=False)
    colours = {m: f"C{i}" for i, m in enumerate(paper.METHOD_NAMES)}
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for method, points in sorted(poster.get(dataset, {}).items()):
            xs = sorted(points)
            ax.plot(xs, [points[x] for x in xs], "--", marker="x", color=colours.get(method),
                    alpha=0.6, label=f"{paper.method_name(method)} (poster)")
        seen: dict[str, int] = {}
        for row, points in sorted(ours.get(dataset, {}).items()):
            xs = sorted(points)
            ys = [sum(points[x]) / len(points[x]) for x in xs]
            # several budgets of one method (byol@2ep, byol@3ep): one colour, a marker each
            nth = seen[base_method(row)] = seen.get(base_method(row), -1) + 1
            ax.plot(xs, ys, "-", marker="osD^v"[nth % 5], color=colours.get(base_method(row)),
                    label=f"{row_name(row)} (ours)")
        ax.set_xscale("log", base=2)
        ax.set_title(paper.dataset_name(dataset))
        ax.set_xlabel("pre-training batch size")
        ax.set_ylabel(f"{protocol} top-1 %")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    return save_figure(fig, out)


def plot_tsne(
    features: torch.Tensor,
    labels: torch.Tensor,
    out: str | Path,
    title: str = "",
    max_points: int = TSNE_POINTS,
    seed: int = 0,
) -> Path:
    """2-D t-SNE (scikit-learn) of up to ``max_points`` features, coloured by class."""
    from sklearn.manifold import TSNE

    from tribyol.eval.splits import stratified_sample

    labels = labels.long()
    if len(labels) > max_points:
        idx = stratified_sample(labels, int(max_points), seed)
        features, labels = features[idx], labels[idx]
    x = features.float()
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
    perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
    emb = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x.numpy())
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    cmap = "tab10" if labels.max() < 10 else "tab20"
    scatter = ax.scatter(emb[:, 0], emb[:, 1], c=labels.numpy(), cmap=cmap, s=4)
    ax.legend(*scatter.legend_elements(), fontsize=6, title="class", loc="best", markerscale=0.8)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    return save_figure(fig, out)
