"""Probes of frozen features: a linear probe and k-nearest neighbours, each tuned on the validation split only.

The two protocols of MedMNIST+ (Doerrich et al., Scientific Reports 2025) beside end-to-end training:
they measure what an initialisation already separates, with nothing fine-tuned, so a comparison of
TL, SSL and scratch under them isolates the pretraining.

* :class:`LinearProbe`: standardised features, scikit-learn's ``LogisticRegression`` (L2, lbfgs), its
  inverse regularisation ``C`` chosen from a log grid by the validation log loss (smoother than
  validation accuracy on a small validation set), as Kornblith et al. ("Do better ImageNet models
  transfer better?", CVPR 2019) tune linear probes.
* :class:`KNNProbe`: scikit-learn's ``KNeighborsClassifier`` with cosine
  distance and distance weighting, ``k`` chosen by validation accuracy (the larger ``k`` on ties).

Both follow scikit-learn's conventions: ``__init__`` stores settings, ``fit`` learns (attributes
ending in ``_``), ``predict_proba`` gives ``(N, classes)`` probabilities. ``max_train_images`` takes
the same stratified subsample of the training split as fine-tuning does (:mod:`medimg.data.balance`).
"""
from __future__ import annotations

import numpy as np

from medimg.data.balance import stratified_subsample
from medimg.errors import MedimgError
from medimg.probe.features import FrozenFeatures

PROTOCOLS = ("linear", "knn")
DEFAULT_CS = tuple(float(c) for c in np.logspace(-4, 2, 13))
DEFAULT_KS = (1, 3, 5, 7, 11, 15, 21, 31, 51)


def _training_part(features: FrozenFeatures, max_train_images: int | None, split_seed: int):
    x, y = features.x["train"], features.y["train"]
    if max_train_images:
        keep = stratified_subsample(y, max_train_images, random_state=split_seed)
        x, y = x[keep], y[keep]
    if len(np.unique(y)) < 2:
        raise MedimgError("a probe needs training images of at least two classes: raise max_train_images")
    return x, y


def _full_proba(model, x: np.ndarray, n_classes: int) -> np.ndarray:
    """``predict_proba`` over every class of the dataset (a class missing from training gets 0)."""
    probs = np.zeros((len(x), n_classes))
    probs[:, model.classes_] = model.predict_proba(x)
    return probs


class LinearProbe:
    """Logistic regression on standardised frozen features, ``C`` chosen by validation log loss.

    Attributes after ``fit``: ``C_`` (chosen), ``val_log_loss_`` (``{C: loss}``), ``model_`` (the
    scikit-learn pipeline trained on the training split with ``C_``).
    """

    def __init__(self, Cs=DEFAULT_CS, *, max_train_images: int | None = None, split_seed: int = 0,
                 max_iter: int = 3000, random_state: int = 0):
        self.Cs = Cs
        self.max_train_images = max_train_images
        self.split_seed = split_seed
        self.max_iter = max_iter
        self.random_state = random_state

    def _model(self, C: float):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=self.max_iter,
                                                                  random_state=self.random_state))

    def fit(self, features: FrozenFeatures) -> "LinearProbe":
        from sklearn.metrics import log_loss

        x, y = _training_part(features, self.max_train_images, self.split_seed)
        n = len(features.classes)
        self.val_log_loss_, fitted = {}, {}
        for C in self.Cs:
            model = self._model(C).fit(x, y)
            probs = np.clip(_full_proba(model, features.x["val"], n), 1e-12, 1)
            probs /= probs.sum(1, keepdims=True)
            self.val_log_loss_[C] = float(log_loss(features.y["val"], probs, labels=range(n)))
            fitted[C] = model
        self.C_ = min(self.Cs, key=lambda c: (self.val_log_loss_[c], -c))  # ties: the weaker regularisation
        self.model_ = fitted[self.C_]
        self.n_classes_ = n
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return _full_proba(self.model_, x, self.n_classes_)

    @property
    def setting_(self) -> dict:
        return dict(C=self.C_)

    def head_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """The probe as a linear layer on the raw features: ``(weight (classes, D), bias (classes,))`` whose
        softmax equals :meth:`predict_proba` (the standardisation folded in; a binary probe's one logit split
        as -z/2, +z/2; a class absent from training gets a bias of -30). LP-FT starts its head from these."""
        scaler, lr = self.model_[0], self.model_[-1]
        coef, intercept = lr.coef_ / scaler.scale_, lr.intercept_ - (lr.coef_ / scaler.scale_) @ scaler.mean_
        if len(lr.classes_) == 2:  # sklearn's binary model: one logit z for classes_[1]
            coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
        weight = np.zeros((self.n_classes_, coef.shape[1]), np.float32)
        bias = np.full(self.n_classes_, -30.0, np.float32)
        weight[lr.classes_], bias[lr.classes_] = coef, intercept
        return weight, bias


class KNNProbe:
    """k-nearest neighbours (cosine distance, distance-weighted) on frozen features, ``k`` chosen by
    validation accuracy. Attributes after ``fit``: ``k_``, ``val_accuracy_`` (``{k: accuracy}``), ``model_``."""

    def __init__(self, ks=DEFAULT_KS, *, max_train_images: int | None = None, split_seed: int = 0):
        self.ks = ks
        self.max_train_images = max_train_images
        self.split_seed = split_seed

    def fit(self, features: FrozenFeatures) -> "KNNProbe":
        from sklearn.neighbors import KNeighborsClassifier

        x, y = _training_part(features, self.max_train_images, self.split_seed)
        self.n_classes_ = len(features.classes)
        self.val_accuracy_, fitted = {}, {}
        for k in (k for k in self.ks if k <= len(y)):
            model = KNeighborsClassifier(n_neighbors=k, metric="cosine", weights="distance").fit(x, y)
            predicted = _full_proba(model, features.x["val"], self.n_classes_).argmax(1)
            self.val_accuracy_[k] = float(np.mean(predicted == features.y["val"]))
            fitted[k] = model
        self.k_ = max(self.val_accuracy_, key=lambda k: (self.val_accuracy_[k], k))
        self.model_ = fitted[self.k_]
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return _full_proba(self.model_, x, self.n_classes_)

    @property
    def setting_(self) -> dict:
        return dict(k=self.k_)


def make_probe(protocol: str, **kwargs):
    """A :class:`LinearProbe` (``"linear"``) or :class:`KNNProbe` (``"knn"``)."""
    if protocol not in PROTOCOLS:
        raise MedimgError(f"unknown protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    return (LinearProbe if protocol == "linear" else KNNProbe)(**kwargs)
