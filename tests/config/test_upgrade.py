"""``tribyol.config.upgrade_tree``: the one function older runs are read through (a config.yaml,
a checkpoint's hyper-parameters, a record's settings written before issue 21's renames)."""

from __future__ import annotations

import yaml

from tribyol.config import RunConfig, to_dict, upgrade_tree
from tribyol.engine import pretrain
from tribyol.runs import CONFIG_NAME


def test_an_older_tree_reads_in_todays_names() -> None:
    old = {"views": {"flip_p": 0.3}, "run_dir": "old_runs", "name": "r",
           "method": {"name": "tribyol", "views": 4, "tau": 0.99}}
    new = upgrade_tree(old)
    # views -> augment, whose views past the pair were then augmented the cycle way
    assert new["augment"] == {"flip_p": 0.3, "extra_views": "cycle"}
    assert new["runs_root"] == "old_runs" and "run_dir" not in new and "views" not in new
    assert new["method"] == {"name": "tribyol", "num_views": 4, "tau": 0.99}  # order kept
    assert old["views"] == {"flip_p": 0.3} and "run_dir" in old  # the given tree is not changed
    assert upgrade_tree(new) == new  # today's trees pass as they are
    assert upgrade_tree(to_dict(RunConfig())) == to_dict(RunConfig())


def test_a_run_written_before_the_renames_resumes(tiny, caplog) -> None:
    run_dir = pretrain(tiny(("name", "old")))
    config = run_dir / CONFIG_NAME
    saved = yaml.safe_load(config.read_text())
    # config.yaml as written before the renames, and before augment.extra_views existed
    saved["views"] = saved.pop("augment")
    del saved["views"]["extra_views"]
    saved["run_dir"] = saved.pop("runs_root")
    saved["method"]["views"] = saved["method"].pop("num_views")
    config.write_text(yaml.safe_dump(saved))

    pretrain(tiny(("name", "old"), ("train.epochs", 2)), resume=True)
    assert "resuming with augment.extra_views changed: 'cycle' -> 'byol-pairs'" in caplog.text
    resumed = yaml.safe_load(config.read_text())
    assert resumed["method"]["num_views"] == 3 and "views" not in resumed


def test_a_checkpoints_older_hyper_parameters_build_the_module(tiny) -> None:
    from tribyol.data.pretrain import DataInfo
    from tribyol.engine.module import PretrainModule

    tree = to_dict(tiny(("method.num_views", 4)))
    tree["views"] = tree.pop("augment")
    del tree["views"]["extra_views"]
    tree["method"]["views"] = tree["method"].pop("num_views")
    info = DataInfo(channels=1, image_size=8, num_classes=10, num_train_images=64,
                    mean=(0.5,), std=(0.5,))
    module = PretrainModule(tree, vars(info))
    assert module.cfg.method.num_views == 4 and module.cfg.augment.extra_views == "cycle"
    assert module.hparams["config"]["method"]["num_views"] == 4  # saved in today's names
