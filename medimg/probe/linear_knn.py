"""Probes of frozen features: a linear probe and k-nearest neighbours, each tuned on the training split or on the
validation split.

The two protocols of MedMNIST+ (Doerrich et al., Scientific Reports 2025) beside end-to-end training:
they measure what an initialisation already separates, with nothing fine-tuned, so a comparison of
TL, SSL and scratch under them isolates the pretraining.

* :class:`LinearProbe`: standardised features, scikit-learn's ``LogisticRegression`` (L2, lbfgs), its
  inverse regularisation ``C`` chosen from a log grid by log loss (smoother than accuracy on few images), as
  Kornblith et al. ("Do better ImageNet models transfer better?", CVPR 2019) tune linear probes.
* :class:`KNNProbe`: scikit-learn's ``KNeighborsClassifier`` with cosine
  distance and distance weighting, ``k`` chosen by accuracy (the larger ``k`` on ties).

Where the setting is chosen (``select``): ``"cv"``, by stratified k-fold cross-validation on the training split
(the standardisation fitted inside each fold), so the validation split is never seen before it is scored (the
learning curves and the check against random features, issue #30); ``"val"``, on the validation split (LP-FT's
head and the probe runs of the book before issue #30: a model selection like early stopping, kept as it was).

Both follow scikit-learn's conventions: ``__init__`` stores settings, ``fit`` learns (attributes
ending in ``_``), ``predict_proba`` gives ``(N, classes)`` probabilities. ``max_train_images`` takes
the same stratified subsample of the training split as fine-tuning does (:mod:`medimg.data.balance`). Which
protocol builds which probe, and with which seed, is the table of :mod:`medimg.probe.protocols`.
"""
from __future__ import annotations

import numpy as np

from medimg.data.balance import stratified_subsample
from medimg.errors import MedimgError
from medimg.probe.features import FrozenFeatures

SELECTIONS = ("val", "cv")  # where a probe's C or k is chosen: the validation split, or cross-validation on training
CV_FOLDS = 5
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


def _folds(y: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds of the training labels (at most as many as the rarest class has images, at least 2)."""
    from sklearn.model_selection import StratifiedKFold

    k = max(2, min(folds, int(np.bincount(y).min(initial=len(y), where=np.bincount(y) > 0))))
    return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def _check_select(select: str) -> str:
    if select not in SELECTIONS:
        raise MedimgError(f"unknown probe selection {select!r}: choose one of {', '.join(SELECTIONS)}")
    return select


def _full_proba(model, x: np.ndarray, n_classes: int) -> np.ndarray:
    """``predict_proba`` over every class of the dataset (a class missing from training gets 0)."""
    probs = np.zeros((len(x), n_classes))
    probs[:, model.classes_] = model.predict_proba(x)
    return probs


class LinearProbe:
    """Logistic regression on standardised frozen features, ``C`` chosen by log loss on the validation split
    (``select="val"``) or by stratified ``folds``-fold cross-validation on the training split (``"cv"``).

    Attributes after ``fit``: ``C_`` (chosen), ``val_log_loss_`` (``{C: loss}`` on validation, every C, either
    way), ``cv_log_loss_`` (``{C: mean loss over the folds}``, with ``"cv"``), ``model_`` (the scikit-learn
    pipeline trained on the whole training split with ``C_``).
    """

    def __init__(self, Cs=DEFAULT_CS, *, max_train_images: int | None = None, split_seed: int = 0,
                 max_iter: int = 3000, random_state: int = 0, select: str = "val", folds: int = CV_FOLDS):
        self.Cs = Cs
        self.max_train_images = max_train_images
        self.split_seed = split_seed
        self.max_iter = max_iter
        self.random_state = random_state
        self.select = _check_select(select)
        self.folds = folds

    def _model(self, C: float):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=self.max_iter,
                                                                  random_state=self.random_state))

    def _log_loss(self, model, x, y, n) -> float:
        from sklearn.metrics import log_loss

        probs = np.clip(_full_proba(model, x, n), 1e-12, 1)
        probs /= probs.sum(1, keepdims=True)
        return float(log_loss(y, probs, labels=range(n)))

    def _path(self, x, y):
        """The probe at every C, each fit started from the last (C rising: lbfgs's warm start), as pipelines."""
        import copy

        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(x)
        z = scaler.transform(x)
        model = LogisticRegression(max_iter=self.max_iter, random_state=self.random_state, warm_start=True)
        fitted = {}
        for C in sorted(self.Cs):
            model.set_params(C=C).fit(z, y)
            fitted[C] = make_pipeline(scaler, copy.deepcopy(model))
        return fitted

    def fit(self, features: FrozenFeatures) -> "LinearProbe":
        x, y = _training_part(features, self.max_train_images, self.split_seed)
        n = len(features.classes)
        if self.select == "cv":  # each C started from the last: the same optimum, in a fraction of the iterations
            fitted = self._path(x, y)
        else:  # every C from scratch, as the probes and LP-FT heads before issue #30
            fitted = {C: self._model(C).fit(x, y) for C in self.Cs}
        self.val_log_loss_ = {C: self._log_loss(fitted[C], features.x["val"], features.y["val"], n) for C in self.Cs}
        if self.select == "cv":
            losses = {C: [] for C in self.Cs}
            for train, held in _folds(y, self.folds, self.random_state):
                for C, model in self._path(x[train], y[train]).items():
                    losses[C].append(self._log_loss(model, x[held], y[held], n))
            self.cv_log_loss_ = {C: float(np.mean(v)) for C, v in losses.items()}
            scores = self.cv_log_loss_
        else:
            scores = self.val_log_loss_
        self.C_ = min(self.Cs, key=lambda c: (scores[c], -c))  # ties: the weaker regularisation
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
    """k-nearest neighbours (cosine distance, distance-weighted) on frozen features, ``k`` chosen by accuracy on the
    validation split (``select="val"``) or by stratified cross-validation on the training split (``"cv"``).
    Attributes after ``fit``: ``k_``, ``val_accuracy_`` (``{k: accuracy}`` on validation), ``cv_accuracy_`` (with
    ``"cv"``), ``model_``."""

    def __init__(self, ks=DEFAULT_KS, *, max_train_images: int | None = None, split_seed: int = 0,
                 select: str = "val", folds: int = CV_FOLDS, random_state: int = 0):
        self.ks = ks
        self.max_train_images = max_train_images
        self.split_seed = split_seed
        self.select = _check_select(select)
        self.folds = folds
        self.random_state = random_state

    @staticmethod
    def _model(k: int):
        from sklearn.neighbors import KNeighborsClassifier

        return KNeighborsClassifier(n_neighbors=k, metric="cosine", weights="distance")

    def fit(self, features: FrozenFeatures) -> "KNNProbe":
        x, y = _training_part(features, self.max_train_images, self.split_seed)
        self.n_classes_ = len(features.classes)
        self.val_accuracy_, fitted = {}, {}
        for k in (k for k in self.ks if k <= len(y)):
            model = self._model(k).fit(x, y)
            predicted = _full_proba(model, features.x["val"], self.n_classes_).argmax(1)
            self.val_accuracy_[k] = float(np.mean(predicted == features.y["val"]))
            fitted[k] = model
        scores = self.val_accuracy_
        if self.select == "cv":
            folds = _folds(y, self.folds, self.random_state)
            smallest = min(len(train) for train, _ in folds)
            self.cv_accuracy_ = {k: float(np.mean([np.mean(self._model(k).fit(x[tr], y[tr]).predict(x[held]) == y[held])
                                                   for tr, held in folds]))
                                 for k in fitted if k <= smallest}
            scores = self.cv_accuracy_
        self.k_ = max(scores, key=lambda k: (scores[k], k))
        self.model_ = fitted[self.k_]
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return _full_proba(self.model_, x, self.n_classes_)

    @property
    def setting_(self) -> dict:
        return dict(k=self.k_)
