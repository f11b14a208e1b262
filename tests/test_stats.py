import math

import pytest

from psmlab.stats import bootstrap_ci, rate_of, wilson


def test_wilson_known_values():
    r = wilson(8, 10)
    # reference values of the Wilson score interval for 8/10 at 95 %
    assert r.low == pytest.approx(0.4902, abs=1e-3) and r.high == pytest.approx(0.9433, abs=1e-3)
    assert wilson(0, 10).low == 0.0 and wilson(10, 10).high == 1.0
    assert 0 < wilson(0, 10).high < 0.35


def test_wilson_contains_rate_and_narrows():
    wide, narrow = wilson(5, 10), wilson(500, 1000)
    assert wide.low < 0.5 < wide.high
    assert narrow.high - narrow.low < wide.high - wide.low
    assert math.isnan(wilson(0, 0).value)
    with pytest.raises(ValueError):
        wilson(3, 2)


def test_rate_of_and_bootstrap():
    assert rate_of([True, False, True, True]).k == 3
    est = bootstrap_ci([0.0] * 50 + [1.0] * 50, n_boot=500, seed=1)
    assert est.value == 0.5 and est.low < 0.5 < est.high
    assert bootstrap_ci([1.0] * 20, n_boot=100).low == 1.0
    assert bootstrap_ci([0.1, 0.9], n_boot=200, seed=3) == bootstrap_ci(
        [0.1, 0.9], n_boot=200, seed=3
    )


def test_student_t_tail_and_quantile_against_reference_values():
    from psmlab.stats import t_quantile, t_sf

    # reference values (tables of Student's t)
    assert t_sf(2.0, 1) == pytest.approx(0.147584, abs=1e-6)
    assert t_sf(2.0, 10) == pytest.approx(0.036694, abs=1e-6)
    assert t_sf(0.0, 3) == pytest.approx(0.5)
    assert t_quantile(0.975, 1) == pytest.approx(12.7062, abs=1e-3)
    assert t_quantile(0.975, 2) == pytest.approx(4.3027, abs=1e-3)
    # a huge t (seeds that agree to rounding) gives a tiny tail, never a wrong or negative one
    assert 0 < t_sf(5000.0, 2) < 1e-7 and 0 < t_sf(1e4, 2) < t_sf(5000.0, 2)
    assert t_sf(-1e4, 2) == pytest.approx(1.0) and t_sf(-1e4, 2) <= 1.0


def test_across_seeds_interval_test_and_levels():
    from psmlab.stats import across_seeds

    a = across_seeds([0.4, 0.5, 0.45], threshold=0.1)
    assert a["n_seeds"] == 3 and a["value"] == pytest.approx(0.45)
    assert a["low"] > 0.1 and a["p_value"] < 0.01
    wider = across_seeds([0.4, 0.5, 0.45], threshold=0.1, confidence=1 - 0.05 / 3)
    assert wider["low"] < a["low"] and wider["high"] > a["high"]
    # equal up to rounding: the mean is exact, not a t of ~1e16
    tie = across_seeds([0.5, 0.49999999999999994, 0.5], threshold=0.5)
    assert tie["low"] == tie["high"] == pytest.approx(0.5) and tie["p_value"] == 1.0
    two = across_seeds([-0.3, -0.35, -0.32], two_sided=True)
    assert two["high"] < 0 and two["p_value"] < 0.01  # a clear negative difference
    assert across_seeds([None, float("nan"), 0.2])["n_seeds"] == 1
