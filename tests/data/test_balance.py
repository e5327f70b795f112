import numpy as np
import pytest

from medimg.data import class_balance
from medimg.errors import MedimgError

LABELS = np.array([0] * 50 + [1] * 20 + [2] * 7)


def test_down_sampling_to_the_minority():
    plan = class_balance(LABELS, "down", random_state=0)
    assert plan.counts_after == {0: 7, 1: 7, 2: 7}
    assert len(set(plan.indices.tolist())) == 21 and not plan.extra.any()
    assert np.array_equal(plan.indices, class_balance(LABELS, "down", random_state=0).indices)
    assert not np.array_equal(plan.indices, class_balance(LABELS, "down", random_state=1).indices)


def test_over_sampling_flags_the_copies():
    plan = class_balance(LABELS, "over", random_state=0)
    assert plan.counts_after == {0: 50, 1: 50, 2: 50}
    assert plan.extra.sum() == 150 - 77
    assert np.array_equal(plan.indices[:77], np.arange(77))  # every original is kept once


def test_none_and_unknown():
    assert class_balance(LABELS, "none", random_state=0).counts_after == {0: 50, 1: 20, 2: 7}
    with pytest.raises(MedimgError, match="none, down or over"):
        class_balance(LABELS, "up", random_state=0)


def test_stratified_subsample_keeps_class_shares_and_is_seeded():
    from medimg.data.balance import stratified_subsample

    labels = np.array([0] * 700 + [1] * 250 + [2] * 50)
    keep = stratified_subsample(labels, 200, random_state=3)
    assert len(keep) == 200 and len(set(keep)) == 200
    assert np.bincount(labels[keep]).tolist() == [140, 50, 10]
    assert np.array_equal(keep, stratified_subsample(labels, 200, random_state=3))
    assert not np.array_equal(keep, stratified_subsample(labels, 200, random_state=4))
    assert np.array_equal(stratified_subsample(labels, 5000, random_state=0), np.arange(1000))
    tiny = stratified_subsample(np.array([0] * 98 + [1] * 2), 10, random_state=0)
    assert np.bincount(np.array([0] * 98 + [1] * 2)[tiny]).tolist() == [9, 1]  # a rare class keeps one
