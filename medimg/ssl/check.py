"""Is a SimCLR checkpoint worth more than random weights? Checked before the SSL arms are read.

The check is the MedMNIST+ linear probe (Doerrich et al. 2025; :class:`~medimg.probe.linear_knn.LinearProbe`) of the
checkpoint's frozen features, fitted on the target's training split and scored on its **validation** split
(never test), beside the same probe of the same network at random initialisation, one per seed of the arm
(the scratch arm's initial networks). A checkpoint that does not beat random features has learned nothing
useful for that target within its budget, and the SSL claim cannot be tested with it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from medimg.errors import MedimgError
from medimg.probe.features import Network


@dataclass(frozen=True)
class SSLCheck:
    """Validation accuracy and log loss of the linear probe on a checkpoint's features and on random ones.

    ``random_val_accuracy`` and ``random_val_loss`` hold one value per seed (random init differs by seed).
    """

    target: str
    checkpoint: str
    C: float  # the checkpoint probe's chosen inverse regularisation
    val_accuracy: float
    val_loss: float
    seeds: tuple[int, ...]
    random_val_accuracy: tuple[float, ...]
    random_val_loss: tuple[float, ...]

    @property
    def random_accuracy_mean(self) -> float:
        return float(np.mean(self.random_val_accuracy))

    @property
    def beats_random(self) -> bool:
        """True when the checkpoint's validation accuracy is above the best random initialisation's."""
        return self.val_accuracy > max(self.random_val_accuracy)

    def verdict(self) -> str:
        """One sentence for the book."""
        if self.beats_random:
            return (f"The checkpoint's features beat random ones on {self.target}'s validation split "
                    f"({self.val_accuracy:.3f} against at most {max(self.random_val_accuracy):.3f}).")
        return (f"The checkpoint's features do **not** beat random ones on {self.target}'s validation split "
                f"({self.val_accuracy:.3f} against {self.random_accuracy_mean:.3f} on average): its pretraining "
                f"learned nothing this target can use within its budget, so the SSL arm tests that budget.")

    def to_dict(self) -> dict:
        return dict(asdict(self), beats_random=self.beats_random)

    @classmethod
    def from_dict(cls, d: dict) -> "SSLCheck":
        fields = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def checks_markdown(checks: dict[str, SSLCheck]) -> str:
    """The summary's table of checks (``{target: SSLCheck}``): the checkpoint each SSL arm starts from (its
    method, from the name's first word), its validation accuracy beside the mean of random initialisations,
    and whether it beats the best of them."""
    from medimg.evaluate.tables import markdown_table
    from medimg.ssl.methods import METHODS

    def method(c: SSLCheck) -> str:
        first = Path(c.checkpoint).name.split("-")[0]
        return METHODS[first].name if first in METHODS else Path(c.checkpoint).name

    return markdown_table([{"target": d, "pretrained with": method(c), "checkpoint": c.val_accuracy,
                            "random init (mean)": c.random_accuracy_mean, "above the best random": c.beats_random}
                           for d, c in checks.items()], floatfmt=".3f")


def check_path(checkpoint, target: str) -> Path:
    """Where a checkpoint's check for ``target`` is kept: beside it, ``<checkpoint stem>.check-<target>.json``
    (a small file, committed with a study's results, while the checkpoint is not)."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.check-{target}.json")


def read_check(checkpoint, target: str) -> SSLCheck | None:
    path = check_path(checkpoint, target)
    return SSLCheck.from_dict(json.loads(path.read_text())) if path.is_file() else None


def _probe_on_validation(network: Network) -> tuple[float, float, float]:
    """``(val accuracy, val log loss, C)`` of the linear probe on ``network``'s features."""
    from medimg.probe.features import extract_features
    from medimg.probe.linear_knn import LinearProbe

    features = extract_features(network)
    probe = LinearProbe(max_train_images=network.max_train_images, split_seed=network.split_seed,
                        random_state=network.seed).fit(features)
    accuracy = float(np.mean(probe.predict_proba(features.x["val"]).argmax(1) == features.y["val"]))
    return accuracy, float(probe.val_log_loss_[probe.C_]), float(probe.C_)


def check_ssl_checkpoint(network: Network, random_networks: list[Network]) -> SSLCheck:
    """The check of a self-supervised checkpoint: ``network`` is the one an arm's first seed starts from (its
    ``weights`` the ``.safetensors``), ``random_networks`` one per seed of the same target, size and training cap
    at random initialisation (the random-initialisation arm's networks). Features are cached
    (:mod:`medimg.probe.features`). Raises :class:`MedimgError` for a network whose weights are no file (which
    arms start from a checkpoint is the caller's to know)."""
    if network.weight_file is None:
        raise MedimgError(f"the check reads a self-supervised checkpoint file, not the {network.weights} weights")
    accuracy, loss, C = _probe_on_validation(network)
    random = [_probe_on_validation(n) for n in random_networks]
    return SSLCheck(target=network.dataset, checkpoint=network.weight_file.name, C=C,
                    val_accuracy=accuracy, val_loss=loss, seeds=tuple(n.seed for n in random_networks),
                    random_val_accuracy=tuple(r[0] for r in random), random_val_loss=tuple(r[1] for r in random))
