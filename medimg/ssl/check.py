"""Is a SimCLR checkpoint worth more than random weights? Checked before the SSL arms are read.

The check is the MedMNIST+ linear probe (Doerrich et al. 2025; :class:`~medimg.probe.linear_knn.LinearProbe`) of the
checkpoint's frozen features, fitted on the target's training split and scored on its **validation** split
(never test), beside the same probe of the same network at random initialisation, one per seed of the arm
(the scratch arm's initial networks). A checkpoint that does not beat random features has learned nothing
useful for that target within its budget, and the SSL claim cannot be tested with it.

Two rules decide "beats random features" (``SSLCheck.rule``):

- :data:`PAIRED` (a checkpoint with a learning curve since issue #30): the check **is** the curve's last point
  (:func:`check_from_curve`): the probe's C chosen by cross-validation on the training split, every network read
  under the batch-norm rule (:mod:`medimg.probe.batchnorm`), and the paired two-level bootstrap
  (:func:`medimg.evaluate.stats.beats_references`) against the random seeds on the same validation images: the same
  numbers and the same rule as the curves, the crossing table and the summary;
- :data:`BEST_SEED` (checks made before): above the best of the random seeds, C chosen on validation.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from medimg.errors import MedimgError
from medimg.probe.features import Network


PAIRED = "paired bootstrap"  # the rule of curves and checks since issue #30 (medimg.evaluate.stats.beats_references)
BEST_SEED = "above the best seed"  # the rule of checks and curves before it


@dataclass(frozen=True)
class SSLCheck:
    """Validation accuracy and log loss of the linear probe on a checkpoint's features and on random ones.

    ``random_val_accuracy`` and ``random_val_loss`` hold one value per seed (random init differs by seed).
    ``rule`` says how "beats random features" is decided (:data:`PAIRED` or :data:`BEST_SEED`); under
    :data:`PAIRED` the check also holds the test's ``difference`` (the checkpoint's accuracy minus the seeds'
    mean), its one-sided 95% lower bound ``low``, the checkpoint accuracy's 95% bootstrap ``interval`` over the
    validation images and the curve ``step`` it was read at.
    """

    target: str
    checkpoint: str
    C: float  # the checkpoint probe's chosen inverse regularisation
    val_accuracy: float
    val_loss: float
    seeds: tuple[int, ...]
    random_val_accuracy: tuple[float, ...]
    random_val_loss: tuple[float, ...]
    rule: str = BEST_SEED
    difference: float | None = None
    low: float | None = None
    interval: tuple[float, ...] | None = None
    step: int | None = None

    @property
    def random_accuracy_mean(self) -> float:
        return float(np.mean(self.random_val_accuracy))

    @property
    def beats_random(self) -> bool:
        """Under :data:`PAIRED`: the paired test's lower bound is above 0; under :data:`BEST_SEED`: the validation
        accuracy is above the best random initialisation's."""
        if self.rule == PAIRED:
            return self.low > 0
        return self.val_accuracy > max(self.random_val_accuracy)

    def verdict(self) -> str:
        """One sentence for the book, in the words of its rule."""
        if self.rule == PAIRED:
            low, high = self.interval
            measured = (f"{self.val_accuracy:.3f} [{low:.3f}, {high:.3f}] against {self.random_accuracy_mean:.3f} on "
                        f"average over {len(self.seeds)} random initialisations; difference {self.difference:+.3f}, "
                        f"one-sided 95% lower bound {self.low:+.3f}")
            if self.beats_random:
                return (f"The checkpoint's features beat random ones on {self.target}'s validation split by the paired "
                        f"test ({measured}).")
            return (f"The checkpoint's features do **not** beat random ones on {self.target}'s validation split by "
                    f"the paired test ({measured}): within its budget its pretraining gave this target nothing the "
                    f"test can tell from random features, so the SSL arm tests that budget.")
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

    paired = any(c.rule == PAIRED for c in checks.values())

    def row(target: str, c: SSLCheck) -> dict:
        out = {"target": target, "pretrained with": method(c), "checkpoint": c.val_accuracy,
               "random init (mean)": c.random_accuracy_mean}
        if not paired:  # every check by the best seed: the table as before issue #30
            return dict(out, **{"above the best random": c.beats_random})
        return dict(out, difference=c.difference, **{"lower bound": c.low, "beats random (paired test)": (
            c.beats_random if c.rule == PAIRED else f"{'yes' if c.beats_random else 'no'} (best seed)")})

    return markdown_table([row(d, c) for d, c in checks.items()], floatfmt=".3f")


def rules_markdown(checks: dict[str, SSLCheck]) -> str:
    """How the checks in ``checks`` decided "beats random features", in the book's words: the paired test (and that
    the check is the curve's last point), the best seed (and that the curves may disagree), or each where both
    are present."""
    said = []
    if any(c.rule == PAIRED for c in checks.values()):
        said.append("a checkpoint beats random features when the paired test says so: a two-level bootstrap over "
                    "the validation images and the random seeds puts the one-sided 95% lower bound of its accuracy's "
                    "difference to the seeds' mean above 0. Such a check *is* the last point of the checkpoint's "
                    "learning curve (the probe's C chosen by cross-validation on the training split, every network "
                    "read under one batch-norm rule), so the check and the curve never disagree")
    if any(c.rule != PAIRED for c in checks.values()):
        mark = " (marked *best seed*)" if said else ""
        said.append(f"a check made before issue #30{mark} counts a checkpoint as beating random features when it is "
                    "above the *best* of them; its curve may have probed at another size, so near the line the two "
                    "can disagree")
    text = "; ".join(said) + "."
    return text[0].upper() + text[1:] if said else ""


def check_from_curve(curve, target: str, checkpoint: str, seeds) -> SSLCheck | None:
    """The check of ``checkpoint`` (its file name) for ``target``, read from its learning curve (``curve``:
    :func:`medimg.ssl.curve.read_curve`) at its last point: the lead probe's rows (the linear probe) under the batch-norm rule, the
    checkpoint's beside the random initialisations of ``seeds``, decided by the paired test on the validation
    images they share (:data:`PAIRED`). None where the curve cannot say it: no paired rows (a curve before issue
    #30), no such target, or random references of other seeds."""
    from medimg.evaluate.stats import beats_references
    from medimg.probe.batchnorm import RULE
    from medimg.probe.protocols import lead_probe

    linear = lead_probe().name
    if curve is None or "correct" not in curve or not curve["correct"].notna().any():
        return None
    rows = curve[(curve.target == target) & (curve.protocol == linear) & (curve.bn == RULE)]
    points = rows[rows.kind == "checkpoint"].sort_values("step", kind="stable")
    random = rows[rows.kind == "random"].sort_values("seed", kind="stable")
    if points.empty or sorted(int(s) for s in random.seed) != sorted(int(s) for s in seeds):
        return None
    last = points.iloc[-1]
    n = int(last.n_val)
    references = np.stack([unpack_bits(c, n) for c in random.correct])
    test = beats_references(unpack_bits(last.correct, n), references)
    return SSLCheck(target=target, checkpoint=checkpoint, C=float(last.setting), val_accuracy=float(last.val_accuracy),
                    val_loss=float(last.val_log_loss), seeds=tuple(int(s) for s in random.seed),
                    random_val_accuracy=tuple(float(a) for a in random.val_accuracy),
                    random_val_loss=tuple(float(a) for a in random.val_log_loss), rule=PAIRED,
                    difference=test["difference"], low=test["low"], interval=(float(last.val_low), float(last.val_high)),
                    step=int(last.step))


def pack_bits(correct) -> str:
    """A 0/1 vector (which validation images a network got right) as hex bits, a curve's ``correct`` column
    (:func:`unpack_bits` reads it back)."""
    return np.packbits(np.asarray(correct, dtype=bool)).tobytes().hex()


def unpack_bits(text: str, n: int) -> np.ndarray:
    """:func:`pack_bits` read back: ``(n,)`` bool."""
    return np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))[:int(n)].astype(bool)


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
