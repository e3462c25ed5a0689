"""``tribyol report``: the files it writes, t-SNE plots, --filter, --reference, --out errors."""

import json
from pathlib import Path

from tests.report.helpers import write_store
from tribyol.cli import main

GRIDS = Path(__file__).resolve().parents[2] / "results" / "grids"


def test_report_command_writes_tables_and_plot(tmp_path, capsys):
    store = tmp_path / "r.jsonl"
    write_store(store)
    out = tmp_path / "report"
    assert main(["report", "--store", str(store), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "Linear evaluation by pre-training batch size" in text and "60.00 / 79.09" in text
    assert (out / "linear.csv").exists() and (out / "runs.csv").exists()
    assert (out / "linear_vs_batch.png").stat().st_size > 1000
    assert "60.00 / 79.09" in capsys.readouterr().out
    # filters narrow the records
    assert main(["report", "--store", str(store), "--out", str(out), "--no-plots",
                 "--filter", "method=byol"]) == 0
    assert "60.00" not in (out / "report.md").read_text()


def test_tsne_plot_from_cached_features(tmp_path):
    import torch
    from safetensors.torch import save_file

    from tribyol.report.cli import tsne_plots

    feats = torch.cat([torch.randn(30, 8), torch.randn(30, 8) + 5])
    save_file({"features": feats, "labels": torch.arange(60) // 30}, str(tmp_path / "f.safetensors"))
    record = {"run_id": "a", "protocol": "linear", "dataset": "toy",
              "params": {"features_file": str(tmp_path / "f.safetensors")}}
    (path,) = tsne_plots([record], tmp_path, max_plots=2, points=40)
    assert path.exists() and path.stat().st_size > 1000
    assert json.dumps(record)  # records stay JSON-able


def test_report_out_that_cannot_be_written_is_one_error_line(tmp_path, capsys, monkeypatch):
    import errno

    store = tmp_path / "r.jsonl"
    write_store(store)
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "report"  # a file in the way (tests run as root)
    assert main(["report", "--store", str(store), "--out", str(out), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: cannot write the report to --out {out} (Not a directory); pick "
                   "another folder with --out\n")

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "write_text", read_only)
    assert main(["report", "--store", str(store), "--out", str(tmp_path / "ro")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write the report") and "Read-only" in err
    assert "Traceback" not in err


def test_report_reference_names_the_row_to_pair_against(tmp_path, capsys):
    store = str(GRIDS / "cpu_ablation" / "results.jsonl")
    args = ["report", "--store", store, "--out", str(tmp_path), "--no-plots"]
    assert main([*args, "--reference", "BYOL (2.0ep)"]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "| TriBYOL | +1.03 [-0.20, +2.25] p 0.07 (n 3) |" in text  # the b32 equal-epochs gap
    capsys.readouterr()
    assert main([*args, "--reference", "BYOL"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --reference 'BYOL' is no row of the report; rows: BYOL (2.0ep)")
