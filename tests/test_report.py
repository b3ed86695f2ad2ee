"""Issue 19's variety and near-copy measures (conchshell.evaluation.report)."""

import math

import numpy as np
import pytest

from conchshell.evaluation.report import NEAR_COPY_DB, near_copies, within_category_distance


def test_within_category_distance():
    rng = np.random.RandomState(0)
    a, b = rng.randn(2, 16000).astype(np.float32)
    # Identical clips within each category: no variety at all.
    assert within_category_distance(np.stack([a, a, b, b]), [0, 0, 1, 1]) == 0.0
    mixed = within_category_distance(np.stack([a, b, a, b]), [0, 0, 1, 1])
    assert mixed > 0.0
    # The mean over pairs: three clips of one category give three pairs.
    three = within_category_distance(np.stack([a, a, b]), [0, 0, 0])
    assert three == pytest.approx(2 / 3 * mixed, rel=1e-5)
    assert math.isnan(within_category_distance(np.stack([a, b]), [0, 1]))
    with pytest.raises(ValueError, match="categories must have shape"):
        within_category_distance(np.stack([a, b]), [0])


def orthogonal_mix(ref, other, si_sdr_db):
    """``ref`` plus the part of ``other`` orthogonal to it, at the given SI-SDR."""
    ref, other = ref - ref.mean(), other - other.mean()
    other = other - (other @ ref) / (ref @ ref) * ref
    other *= np.sqrt((ref @ ref) / (other @ other) / 10 ** (si_sdr_db / 10))
    return ref + other


def test_near_copies_counts_clips_within_ten_db_of_a_reference():
    rng = np.random.RandomState(0)
    refs = rng.randn(3, 8000)
    other = rng.randn(8000)
    clips = np.stack(
        [
            0.5 * refs[1],  # a scaled copy: infinite SI-SDR
            orthogonal_mix(refs[2], other, 12.0),
            orthogonal_mix(refs[0], other, 8.0),
            other,
        ]
    )
    assert NEAR_COPY_DB == 10.0
    assert near_copies(clips, refs) == 0.5
    assert near_copies(clips, refs, threshold_db=7.0) == 0.75
    # References are cut to the clips' length; shorter ones are refused.
    assert near_copies(clips[:, :4000], refs) == near_copies(clips[:, :4000], refs[:, :4000])
    with pytest.raises(ValueError, match="shorter"):
        near_copies(clips, refs[:, :100])
