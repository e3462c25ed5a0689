"""Row keys (``method@qualifiers|source``): the method a key is of, and the name it prints as."""

from __future__ import annotations

from tribyol.report import paper


def base_method(key: str) -> str:
    """The method of a row key: ``byol@3ep``, ``byol@b32, accum 4`` and ``byol|cifar10`` -> ``byol``."""
    return key.partition("|")[0].partition("@")[0]


def row_name(key: str) -> str:
    """``tribyol`` -> TriBYOL; ``tribyol|cifar10`` (transfer rows) -> TriBYOL (from C10);
    ``byol@3ep`` (a method pre-trained for several budgets) -> BYOL (3ep);
    ``tribyol@b32, accum 4`` -> TriBYOL (b32, accum 4)."""
    head, _, source = key.partition("|")
    method, _, budget = head.partition("@")
    name = paper.method_name(method) + (f" ({budget})" if budget else "")
    return f"{name} (from {paper.dataset_name(source)})" if source else name
