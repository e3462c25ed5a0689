"""The qualifiers that tell one method's configurations apart in a row's name: the recorded
pre-training settings (``pretrain_settings``) its records differ in; for records from before
settings were recorded, the grid arm read from the run's name and the folder the run lies in."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tribyol.config import upgrade_tree
from tribyol.report.records import grid_run, imagenet_weights, run_folder

MAX_SETTINGS = 3  # setting differences a row label spells out; more: "+N more, cfg <hash>"
# The order in which differing settings are named (the rest after these, alphabetically).
SETTING_ORDER = ("method", "augment", "optim", "model", "norm", "train", "data", "weights")


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def text(value: Any) -> str:
    """A setting's value as a row key may spell it."""
    if isinstance(value, bool) or value is None:
        out = json.dumps(value)
    elif isinstance(value, (list, tuple, dict)):
        out = json.dumps(value, separators=(",", ":"), default=str)
    else:
        out = str(value)
    return out.replace("|", "/").replace("@", "/")  # row keys split on these


def _setting_rank(key: str) -> tuple:
    head = key.split(".")[0]
    return (SETTING_ORDER.index(head) if head in SETTING_ORDER else len(SETTING_ORDER), key)


def _differing(flats: dict[int, dict[str, Any]]) -> tuple[list[str], dict[str, str]]:
    """The settings keys whose values differ across ``flats``, in naming order, and the name
    each is shown by (its leaf, or the whole key where two leaves share a name)."""
    all_keys = {k for f in flats.values() for k in f}
    differ = sorted((k for k in all_keys if len({text(f.get(k)) for f in flats.values()}) > 1),
                    key=_setting_rank)
    leaves = [k.rsplit(".", 1)[-1] for k in differ]
    names = {k: (leaf if leaves.count(leaf) == 1 else k) for k, leaf in zip(differ, leaves, strict=True)}
    return differ, names


def _recorded_quals(flat: dict[str, Any], differ: list[str], names: dict[str, str]) -> list[str]:
    """``name=value`` per differing setting; past MAX_SETTINGS, a count and a digest."""
    quals = [f"{names[k]}={text(flat.get(k))}" for k in differ]
    if len(quals) > MAX_SETTINGS:
        digest = hashlib.sha256(json.dumps([text(flat.get(k)) for k in differ]).encode())
        quals = quals[:MAX_SETTINGS] + [
            f"+{len(differ) - MAX_SETTINGS} more, cfg {digest.hexdigest()[:6]}"]
    return quals


@dataclass
class _Unrecorded:
    """One method's records without settings: the grid arm each run's name gives, and the
    folder each run lies in (ImageNet weights have none), as shown."""

    variants: dict[int, str | None]
    folders: dict[int, str]
    shown: dict[str, str]
    beside_recorded: bool  # the method also has records that name their settings

    @classmethod
    def of(cls, legacy: list[dict[str, Any]], beside_recorded: bool) -> _Unrecorded:
        folders = {id(r): run_folder(r) for r in legacy if not imagenet_weights(r)}
        shown = {f: Path(f).name or f for f in folders.values()}
        if len(set(shown.values())) < len(shown):  # two folders of one name: their whole paths
            shown = {f: f for f in shown}
        return cls({id(r): grid_run(r)[0] for r in legacy}, folders, shown, beside_recorded)

    @property
    def arms(self) -> bool:
        return len(set(self.variants.values())) > 1

    def keys(self) -> list[str]:
        return (["cell"] if self.arms else []) + (["run folder"] if len(self.shown) > 1 else [])

    def quals(self, r: dict[str, Any]) -> list[str]:
        quals: list[str] = ["settings unrecorded"] if self.beside_recorded else []
        variant = self.variants[id(r)]
        if self.arms and variant:
            quals.append(f"cell {text(variant)}")
        elif self.arms and variant is None:
            quals.append("cell ?")
        if len(self.shown) > 1 and id(r) in self.folders:
            quals.append(f"in {text(self.shown[self.folders[id(r)]])}")
        return quals


def setting_quals(group: list[dict[str, Any]]) -> tuple[list[list[str]], list[str]]:
    """Per record of one method, the qualifiers that tell its configuration from the others'
    (settings that differ; for records without settings, the grid arm and commit); and the
    names of the keys that differ."""
    recorded = [r for r in group if isinstance(r.get("pretrain_settings"), dict)]
    legacy = [r for r in group if not isinstance(r.get("pretrain_settings"), dict)]
    flats = {id(r): {k: v for k, v in _flat(upgrade_tree(r["pretrain_settings"])).items()
                    if k != "model.stem"}
             for r in recorded}
    differ, names = _differing(flats)
    unrecorded = _Unrecorded.of(legacy, bool(recorded))
    keys = [names[k] for k in differ] + unrecorded.keys()
    keys += ["settings recorded or not"] if recorded and legacy else []
    out = [_recorded_quals(flats[id(r)], differ, names) if id(r) in flats else unrecorded.quals(r)
           for r in group]
    return out, keys
