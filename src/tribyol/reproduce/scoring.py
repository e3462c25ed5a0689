"""What a grid's cells are scored on (``select_on``), and the pre-training subset drawn outside
the test (and validation) carve the evaluations score."""

from __future__ import annotations

from typing import Any

from tribyol.errors import ConfigError

# ``select_on``: what a grid's cells are scored on. ``test``: the test set (or carve), for grids
# that report final figures; ``validation``: a validation carve outside the test carve
# (``eval.validation_from_train``), for ablations that choose a setting, so no choice is made
# on the images the final figures are scored on.
SELECT_ON = ("test", "validation")
VALIDATION_MANIFEST = "validation.json"
# data.pretrain_subset's carve where the grid leaves it out (data.carves.pretrain_subset's).
SUBSET_TEST_FRACTION, SUBSET_SEED = 0.2, 0
SPLIT_SEED = 0  # eval.split_seed where the grid leaves it out (tribyol eval's --split-seed)


def select_on(spec: dict[str, Any]) -> str:
    """The grid's ``select_on`` (default ``test``), checked with what it needs: ``validation``
    scores every cell on ``eval.validation_from_train``, a carve outside the test carve, and
    pre-trains on a subset drawn outside both; ``test`` grids may not score on a validation
    carve (a grid that does says so)."""
    value = spec.get("select_on", "test")
    if value not in SELECT_ON:
        raise ConfigError(f"grid: select_on must be test or validation, got {value!r}; "
                          "validation for ablations that choose a setting")
    ev = spec.get("eval") or {}
    if value == "test":
        if ev.get("validation_from_train") is not None:
            raise ConfigError("grid: eval.validation_from_train scores a validation carve, but "
                              "select_on is test; set select_on: validation")
        return value
    _check_validation_carve(ev)
    if not (spec.get("data") or {}).get("pretrain_subset"):
        raise ConfigError("grid: select_on: validation needs data.pretrain_subset (with "
                          "validation_fraction), or pre-training would see validation images")
    if (ev.get("transfer") or {}).get("targets"):
        raise ConfigError("grid: select_on: validation cannot run eval.transfer (its targets "
                          "are scored on their test sets); drop it")
    return value


def _check_validation_carve(ev: dict[str, Any]) -> None:
    """``eval.validation_from_train``: a fraction that leaves training images beside the test
    carve ``eval.test_from_train``, which it is drawn outside of."""
    fraction = ev.get("validation_from_train")
    if not ev.get("test_from_train"):
        raise ConfigError("grid: select_on: validation draws its carve outside the test carve; "
                          "give eval.test_from_train (e.g. 0.2)")
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 < fraction < 1:
        raise ConfigError(f"grid: select_on: validation needs eval.validation_from_train, a "
                          f"fraction in (0, 1) (e.g. 0.1), got {fraction!r}")
    if float(fraction) + float(ev["test_from_train"]) >= 1:
        raise ConfigError(f"grid: eval.test_from_train {ev['test_from_train']} + "
                          f"validation_from_train {fraction} leave no training images; "
                          "choose smaller fractions")


def check_subset_outside_test(spec: dict[str, Any], eval_spec: dict[str, Any]) -> None:
    """The pre-training subset is drawn outside the test split the evaluation carves (and
    outside its validation carve, where the grid scores one): both carves must be the same
    (fractions and split seed), or pre-training would see test (validation) images
    (``tribyol eval`` refuses such a carve too, naming the count)."""
    subset = (spec.get("data") or {}).get("pretrain_subset")
    if not subset:
        return
    drawn = subset.get("validation_fraction")
    scored = eval_spec.get("validation_from_train")
    if (None if drawn is None else float(drawn)) != (None if scored is None else float(scored)):
        raise ConfigError(
            f"grid: data.pretrain_subset.validation_fraction is {drawn}, but eval scores "
            f"validation_from_train {scored}; make them the same, or pre-training would see "
            "validation images (or leave out images no carve scores)")
    carve = (float(subset.get("test_fraction", SUBSET_TEST_FRACTION)),
             int(subset.get("seed", SUBSET_SEED)))
    scored = eval_spec.get("test_from_train")
    scored = (None if scored is None else float(scored),
              int(eval_spec.get("split_seed", SPLIT_SEED)))
    if scored != carve:
        raise ConfigError(
            f"grid: data.pretrain_subset is drawn outside a test split of fraction {carve[0]:g} "
            f"(seed {carve[1]}), but eval scores on test_from_train {scored[0]} (split_seed "
            f"{scored[1]}); pre-training would see test images. Make them the same")
