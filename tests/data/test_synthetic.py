import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from medimg.data.synthetic import make_synthetic


def test_deterministic_from_seed():
    a, la = make_synthetic(5, 24, seed=3, colour=True)
    b, lb = make_synthetic(5, 24, seed=3, colour=True)
    c, _ = make_synthetic(5, 24, seed=4, colour=True)
    assert np.array_equal(a, b) and np.array_equal(la, lb) and not np.array_equal(a, c)
    assert a.shape == (15, 24, 24, 3) and make_synthetic(2, 24, seed=0, colour=False)[0].shape[-1] == 1


@pytest.mark.parametrize("colour", [False, True])
def test_shape_signal_is_learnable(colour):
    # The shape sits anywhere, so use translation-invariant features: the Fourier magnitude.
    x, y = make_synthetic(120, 24, seed=0, colour=colour)
    g = x[..., 0].astype(float)
    feats = np.log1p(np.abs(np.fft.fft2(g - g.mean(axis=(1, 2), keepdims=True)))).reshape(len(x), -1)
    accuracy = LogisticRegression(max_iter=3000).fit(feats[:240], y[:240]).score(feats[240:], y[240:])
    assert accuracy > 0.6  # chance is 1/3
