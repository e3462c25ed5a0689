"""Loading a config: YAML files, dotted overrides and the raw tree they make, and
``upgrade_tree``, the one place a config written by an older version is read through.
Importable without torch (and without OmegaConf: ``tribyol --help`` needs neither).

Overrides are applied here, not by ``OmegaConf.from_dotlist``: that reads ``optim.lr`` (no
``=``) and ``optim.lr=`` as null, replaces a value by a section without a word, and refuses
numpy scalars, so each of those would need the checks below around it all the same."""

from __future__ import annotations

import copy
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tribyol.errors import ConfigError


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """``set_dotted(d, "optim.lr", 0.1)`` sets ``d["optim"]["lr"]``, creating sections."""
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"'{dotted}': '{key}' is a value, not a section")
    node[keys[-1]] = value


def dotted_items(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 0.1}}`` -> ``{"optim.lr": 0.1}``: the inverse of ``set_dotted``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            out.update(dotted_items(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=0.1"`` -> ``("optim.lr", 0.1)`` with the value read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value, e.g. optim.lr=0.1")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(
            f"override '{text}': the value is not valid YAML ({problem}); quote it, "
            "or write a list as [1, 2]"
        ) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (it would keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key '{key}' appears twice in one mapping",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml_file(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``; a missing file, a syntax error or a key given twice is a
    ``ConfigError``."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder; pass a YAML file")
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist; pass an existing YAML file")
    if not path.is_file():  # /dev/null, a pipe, a socket: reads as empty, or never ends
        raise ConfigError(f"config file {path} is not a regular file (a device, pipe or "
                          "socket); pass a YAML file")
    try:
        text = path.read_text()
        loaded = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or "syntax error"
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}; fix that line") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    if loaded is None:  # nothing but blanks and comments: a wrong or unsaved file, not "defaults"
        raise ConfigError(f"config file {path} is empty (no keys); write its keys in it "
                          "(configs/ has examples), or pass no config file for the defaults")
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return loaded


def _method_mapping(value: Any) -> dict[str, Any]:
    # `--method byol` gives a name; `--set method.tau=0.99` alone keeps the default method's
    # name, because OmegaConf merges the mapping into the default {"name": ...}.
    if isinstance(value, str):
        return {"name": value}
    if not isinstance(value, Mapping):
        raise ConfigError(f"method: expected a name or a mapping, got {value!r}")
    if not isinstance(value.get("name", ""), str):
        raise ConfigError(f"method.name: expected a method's name, got {value['name']!r}")
    return dict(value)


def config_tree(
    path: str | Path | Mapping[str, Any] | None = None,
    overrides: typing.Iterable[str | tuple[str, Any]] = (),
) -> dict[str, Any]:
    """The raw config: the YAML file (or a config given as a mapping, e.g. a ``RunConfig``'s
    ``to_dict``), if any, with the dotted overrides applied."""
    if isinstance(path, Mapping):
        tree: dict[str, Any] = copy.deepcopy(dict(path))
    else:
        tree = read_yaml_file(path) if path is not None else {}
    if isinstance(tree.get("method"), str):  # `method: byol`, so that method.tau=... can follow
        tree["method"] = {"name": tree["method"]}
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        set_dotted(tree, key, value)
    if "method" in tree:
        tree["method"] = _method_mapping(tree["method"])
    return tree


def upgrade_tree(tree: Mapping[str, Any]) -> dict[str, Any]:
    """A config (config.yaml, a checkpoint's or a record's settings) written before the renames
    of issue 21 in today's names: ``views`` -> ``augment`` (and its ``third_view`` ->
    ``extra_views``; a ``views`` section without it augmented the views past the pair the
    ``cycle`` way), ``run_dir`` -> ``runs_root``, TriBYOL's ``method.views`` ->
    ``method.num_views``. The one place older runs are read through (docs/architecture.md)."""
    tree = copy.deepcopy(dict(tree))
    if "views" in tree and "augment" not in tree:
        old = tree.pop("views")
        if isinstance(old, dict):
            old = dict(old)
            old["extra_views"] = old.pop("third_view", "cycle")
        tree["augment"] = old
    if "run_dir" in tree and "runs_root" not in tree:
        tree["runs_root"] = tree.pop("run_dir")
    method = tree.get("method")
    if isinstance(method, dict) and "views" in method and "num_views" not in method:
        tree["method"] = {("num_views" if k == "views" else k): v for k, v in method.items()}
    return tree
