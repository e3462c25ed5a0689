"""Row keys: the method a key is of, and the name it prints as."""

from tribyol.report.names import base_method, row_name


def test_base_method_drops_qualifiers_and_source():
    assert [base_method(k) for k in ("byol", "byol@3ep", "byol@b32, accum 4", "byol|cifar10",
                                     "byol@b32|cifar10")] == ["byol"] * 5


def test_row_name_prints_the_method_its_qualifiers_and_source():
    assert row_name("tribyol") == "TriBYOL"
    assert row_name("byol@3ep") == "BYOL (3ep)"
    assert row_name("tribyol@b32, accum 4") == "TriBYOL (b32, accum 4)"
    assert row_name("tribyol|cifar10") == "TriBYOL (from C10)"
    assert row_name("tribyol@b32|cifar10") == "TriBYOL (b32) (from C10)"
