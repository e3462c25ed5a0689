"""PNG plots: linear accuracy vs pre-training batch size per method, and t-SNE of features."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tribyol.data.sampling import stratified_sample
from tribyol.report import paper
from tribyol.report.names import base_method, row_name
from tribyol.report.records import latest
from tribyol.report.rows import method_rows

TSNE_POINTS = 2000  # t-SNE is O(n log n) but slow on 2 cores beyond a few thousand points (cli repeats it)
LEGEND_CLASSES = 20  # t-SNE legends name at most this many classes

# Method colours: matplotlib's ten "C" colours, then five more that differ from all of them, so
# the poster's eleven named methods (and four others) never share one. Known methods keep their
# colour from report to report.
PALETTE = ("C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9",
           "#000000", "#000080", "#e6ab02", "#800000", "#00ff7f")


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


def method_colours(methods: Any = ()) -> dict[str, str]:
    """A distinct colour (hex) per method: the poster's methods in ``paper.METHOD_NAMES`` order,
    then the other ``methods`` sorted; past the palette, evenly spaced hues."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    names = list(paper.METHOD_NAMES) + sorted(set(methods) - set(paper.METHOD_NAMES))
    extra = max(0, len(names) - len(PALETTE))
    hues = [to_hex(colormaps["hsv"](i / extra)) for i in range(extra)]
    colours = [to_hex(c) for c in PALETTE] + hues
    return dict(zip(names, colours, strict=False))


def plot_batch_curves(
    records: list[dict[str, Any]], out: str | Path, protocol: str = "linear"
) -> Path | None:
    """One panel per dataset: top-1 vs pre-training batch, ours solid, the poster's dashed."""
    fig = batch_curves_figure(records, protocol)
    return None if fig is None else save_figure(fig, out)


def batch_curves_figure(records: list[dict[str, Any]], protocol: str = "linear") -> Any:
    """The figure of ``plot_batch_curves`` (None without data); each method its own colour,
    shared by its poster (dashed) and our (solid) lines."""
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
    colours = method_colours(base_method(row) for rows in ours.values() for row in rows)
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
    return fig


def plot_tsne(
    features: torch.Tensor,
    labels: torch.Tensor,
    out: str | Path,
    title: str = "",
    max_points: int = TSNE_POINTS,
    seed: int = 0,
    class_names: Sequence[str] = (),
) -> Path:
    """2-D t-SNE (scikit-learn) of up to ``max_points`` features, coloured by class; the legend
    names classes by ``class_names`` (indexed by label), or by label where there are none."""
    emb, labels = tsne_embedding(features, labels, max_points, seed)
    return save_figure(class_scatter(emb, labels, title, class_names), out)


def tsne_embedding(
    features: torch.Tensor, labels: torch.Tensor, max_points: int = TSNE_POINTS, seed: int = 0
) -> tuple[Any, torch.Tensor]:
    """``(points [N, 2], labels [N])`` of a t-SNE of a stratified sample of ``features``."""
    from sklearn.manifold import TSNE  # here: sklearn is slow to import and only t-SNE needs it

    labels = labels.long()
    if len(labels) > max_points:
        idx = stratified_sample(labels, int(max_points), seed)
        features, labels = features[idx], labels[idx]
    x = features.float()
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
    perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
    emb = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x.numpy())
    return emb, labels


def class_scatter(points: Any, labels: torch.Tensor, title: str = "",
                  class_names: Sequence[str] = ()) -> Any:
    """A scatter of 2-D ``points`` coloured by class, the legend naming the classes."""
    from matplotlib.lines import Line2D

    labels = torch.as_tensor(labels).long()
    fig, ax = _pyplot().subplots(figsize=(5, 5))
    cmap = "tab10" if labels.max() < 10 else "tab20"
    scatter = ax.scatter(points[:, 0], points[:, 1], c=labels.numpy(), cmap=cmap, s=4)
    present = labels.unique().tolist()
    shown = present[:LEGEND_CLASSES]
    handles = [Line2D([], [], marker="o", linestyle="", markersize=4,
                      color=scatter.cmap(scatter.norm(c))) for c in shown]
    names = [str(class_names[c]) if 0 <= c < len(class_names) else str(c) for c in shown]
    heading = "class" if len(shown) == len(present) else f"class (first {len(shown)} of {len(present)})"
    ax.legend(handles, names, fontsize=6, title=heading, title_fontsize=7, loc="best")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig
