"""Paired differences over seeds (issue 20): a Student-t interval computed without SciPy."""

import math

import pytest

from tribyol.report.stats import paired_difference, t_mass, t_quantile


def test_a_paired_difference_computed_by_hand():
    # differences 2, 3, 4: mean 3, sd 1, se 1/sqrt(3); t(0.975, df 2) = 4.302653 (tables)
    d = paired_difference([3.0, 5.0, 7.0], [1.0, 2.0, 3.0])
    assert (d.n, d.mean) == (3, pytest.approx(3.0))
    half = 4.302653 / math.sqrt(3)
    assert (d.low, d.high) == (pytest.approx(3 - half, abs=1e-5), pytest.approx(3 + half, abs=1e-5))
    # df 2: P(|T| <= t) = t / sqrt(2 + t^2), so p = 1 - 5.19615 / sqrt(29) = 0.035098
    assert d.p == pytest.approx(1 - math.sqrt(27) / math.sqrt(29), rel=1e-9)
    assert not d.includes_zero and d.kind == "t"
    assert d.text() == "+3.00 [+0.52, +5.48] p 0.04 (n 3)"
    # the ablation's b32 TriBYOL (cycle) against BYOL at equal epochs, seeds 0, 1, 2
    gap = paired_difference([43.64, 43.74, 44.84], [43.18, 42.48, 43.48])
    assert gap.text() == "+1.03 [-0.20, +2.25] p 0.07 (n 3)" and gap.includes_zero


def test_one_pair_has_no_interval_and_equal_differences_a_point():
    one = paired_difference([2.0], [1.0])
    assert (one.low, one.p, one.includes_zero, one.text()) == (None, None, None, "+1.00 (n 1)")
    same = paired_difference([2.0, 3.0], [1.0, 2.0])
    assert (same.low, same.high, same.p) == (1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="same, non-zero length"):
        paired_difference([1.0], [1.0, 2.0])


@pytest.mark.parametrize(("df", "table"), [(1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764),
                                           (5, 2.5706), (10, 2.2281), (29, 2.0452), (120, 1.9799)])
def test_t_quantiles_match_the_printed_table(df, table):
    assert t_quantile(0.95, df) == pytest.approx(table, abs=1e-4)
    assert t_mass(t_quantile(0.95, df), df) == pytest.approx(0.95, abs=1e-12)


def test_t_mass_matches_scipy_where_it_is_installed():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 6, 7, 50):
        for t in (0.1, 1.0, 2.5, 8.0):
            assert t_mass(t, df) == pytest.approx(1 - 2 * stats.t.sf(t, df), abs=1e-12)
