"""The parity tests' error measure (tests/_helpers_models.relative_error) sees what it must."""

import numpy as np
import pytest
from _helpers_models import relative_error


def test_an_ordinary_sized_error_beside_a_massive_activation_is_seen():
    ref = np.ones((4, 8))
    ref[0, 0] = 1e4  # one massive activation, as at SmolLM2's position 0
    ours = ref.copy()
    ours[2, 3] += 0.01  # 1% of an ordinary entry
    assert relative_error(ours, ref) == pytest.approx(0.01)
    assert np.abs(ours - ref).max() / np.abs(ref).max() < 1e-5  # dividing by the largest |ref| would hide it


def test_entries_near_zero_count_as_the_floor():
    ref = np.array([1.0, 2.0, 1e-9])
    ours = ref + np.array([0.0, 0.0, 1e-3])
    assert relative_error(ours, ref) == pytest.approx(1e-3)  # floor = median |ref| = 1, not 1e-9
    assert relative_error(ours, ref, floor=1e-2) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="shapes differ"):
        relative_error(np.ones(3), np.ones(4))
