"""Bad eval options: one line `error: ...` naming the problem and the fix, exit 2, no traceback.

The source path does not exist: each option must be refused before any encoder or data is
loaded (a source-first check would say "does not exist" instead).
"""

from __future__ import annotations

import pytest
import torch

from tribyol.cli import main

# (protocol and arguments after the source, substrings the error line must hold)
BAD_OPTIONS = [
    (["knn", "--dataset", "cifar11"], ["unknown dataset 'cifar11'", "Did you mean 'cifar10'?"]),
    (["knn", "--k", "-5"], ["--k must be >= 1", "got -5"]),
    (["knn", "--k", "0"], ["--k must be >= 1", "got 0"]),
    (["knn", "--temperature", "0"], ["--temperature must be > 0", "got 0.0"]),
    (["knn", "--temperature", "-0.1"], ["--temperature must be > 0", "got -0.1"]),
    (["linear", "--val-fraction", "1.5"],
     ["--val-fraction must be in [0, 1)", "choose the L2 penalty", "got 1.5"]),
    (["finetune", "--label-fraction", "0.1", "--epochs", "0"], ["--epochs must be >= 1", "got 0"]),
    (["finetune", "--label-fraction", "0.1", "--batch-size", "0"],
     ["--batch-size must be >= 2", "got 0"]),
    (["knn", "--device", "gpu7"], ["--device must be cpu, cuda, cuda:N or mps", "'gpu7'"]),
    (["knn", "--limit-train", "0"], ["--limit-train must be >= 1", "got 0"]),
    (["knn", "--limit-test", "-1"], ["--limit-test must be >= 1", "got -1"]),
    (["linear", "--eval-batch-size", "0"], ["--eval-batch-size must be >= 1", "got 0"]),
    (["finetune", "--label-fraction", "0"], ["--label-fraction must be in (0, 1]", "got 0.0"]),
    (["finetune", "--label-fraction", "1.5"], ["--label-fraction must be in (0, 1]", "got 1.5"]),
    (["knn", "--test-from-train", "1"], ["--test-from-train must be in (0, 1)", "e.g. 0.2"]),
    (["linear", "--test-from-train", "0"], ["--test-from-train must be in (0, 1)", "got 0.0"]),
    (["linear", "--max-iter", "0"], ["--max-iter must be >= 1", "got 0"]),
    (["linear", "--weight-decays", ","], ["--weight-decays is empty", "e.g. 1e-6,1e-4,1e-2"]),
    (["transfer", "--weight-decays", "1e-4,-1e-3"],
     ["--weight-decays must all be finite and >= 0", "got -0.001"]),
    (["transfer", "--targets", "mnist,cifar11"], ["--targets", "Did you mean 'cifar10'?"]),
    (["transfer", "--test-from-train", "1.5"], ["--test-from-train must be in (0, 1)"]),
]


@pytest.mark.parametrize(("args", "expected"), BAD_OPTIONS, ids=lambda x: " ".join(x)[:45])
def test_bad_eval_option_is_one_error_line(tmp_path, capsys, args, expected) -> None:
    missing = tmp_path / "no-such-run"
    protocol, *options = args
    store = tmp_path / "r.jsonl"
    assert main(["eval", protocol, str(missing), *options, "--store", str(store)]) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, captured.err
    for text in expected:
        assert text in lines[0]
    assert "does not exist" not in lines[0]  # refused before the source was looked at
    assert "Traceback" not in captured.err and not store.exists()


def test_cuda_asked_where_there_is_none(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["eval", "knn", str(tmp_path / "nope"), "--device", "cuda:0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --device cuda:0: CUDA is not available") and "--device cpu" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("make", "expected"), [
    (lambda t: ["--store", str(t)], "must be a file (JSON lines), not a folder"),
    (lambda t: ["--store", ""], "must be a file (JSON lines), not a folder or empty"),
    (lambda t: ["--store", str(t / "afile" / "r.jsonl")], "cannot be made (a file is in the way?)"),
    (lambda t: ["--cache-dir", str(t / "afile")], "--cache-dir"),
    (lambda t: ["--cache-dir", ""], "--cache-dir '' must be a folder"),
    (lambda t: ["--dataset-label", "  "], "--dataset-label is empty"),
], ids=["store-folder", "store-empty", "store-under-file", "cache-file", "cache-empty", "label"])
def test_where_results_go_is_checked_before_evaluating(tmp_path, capsys, make, expected) -> None:
    (tmp_path / "afile").write_text("not a folder")
    assert main(["eval", "knn", str(tmp_path / "no-such-run"), "--dataset", "digits",
                 *make(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and len(err.strip().splitlines()) == 1
