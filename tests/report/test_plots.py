"""The batch plot's colours and the t-SNE legend."""

from tests.report.helpers import sized_store
from tribyol.store import read_results


def test_every_method_in_the_batch_plot_has_its_own_colour(tmp_path):
    from matplotlib.colors import to_hex

    from tribyol.report import paper
    from tribyol.report.plots import batch_curves_figure, method_colours

    store = tmp_path / "r.jsonl"
    sized_store(store)
    fig = batch_curves_figure(read_results(store))
    lines = {line.get_label(): to_hex(line.get_color()) for ax in fig.axes for line in ax.lines}
    ours = {k: v for k, v in lines.items() if k.endswith("(ours)")}
    assert set(ours) == {"TriBYOL (ours)", "Random init (ours)", "BYOL (ours)"}
    assert len(set(ours.values())) == 3  # Random init used to share TriBYOL's colour (C10 = C0)
    assert lines["TriBYOL (poster)"] == ours["TriBYOL (ours)"]  # one method, one colour
    extra = [f"method{i}" for i in range(12)]
    colours = method_colours(extra)
    assert set(colours) == set(paper.METHOD_NAMES) | set(extra)
    assert len(set(colours.values())) == len(colours)
    assert colours["tribyol"] == method_colours()["tribyol"]  # stable across reports


def test_tsne_legend_names_the_classes(tmp_path, monkeypatch):
    import torch

    from tribyol.data import TensorImages
    from tribyol.eval.features import FeatureCache, cached_class_names
    from tribyol.report import cli as report_cli
    from tribyol.report import plots
    from tribyol.report.plots import class_scatter

    points = torch.randn(40, 2).numpy()
    labels = torch.arange(40) % 2
    legend = class_scatter(points, labels, class_names=["cat", "dog"]).axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["cat", "dog"]
    legend = class_scatter(points, labels).axes[0].get_legend()  # no names: the labels
    assert [t.get_text() for t in legend.get_texts()] == ["0", "1"]

    # the feature cache records the dataset's class names; the report passes them on
    images = TensorImages(torch.zeros(6, 1, 4, 4, dtype=torch.uint8), torch.arange(6) % 2,
                          ["cat", "dog"])
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    _, _, path = FeatureCache(tmp_path).features(
        encoder, images, name="toy", split="test", image_size=4, mean=(0.5,), std=(0.5,),
        device="cpu")
    assert cached_class_names(path) == ["cat", "dog"]
    seen = {}
    monkeypatch.setattr(plots, "plot_tsne", lambda *a, **kw: seen.update(kw) or tmp_path / "x.png")
    record = {"run_id": "a", "protocol": "knn", "dataset": "toy",
              "params": {"features_file": str(path)}}
    report_cli.tsne_plots([record], tmp_path, max_plots=1, points=10)
    assert seen["class_names"] == ["cat", "dog"]
