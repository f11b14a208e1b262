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
