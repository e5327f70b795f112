"""A finished run directory back in memory: the trained network, its preprocessing and its data.

The network is rebuilt with exactly the options it was trained with (input channels, and the
TensorFlow padding of the imported TFLite MobileNet or whatever an SSL checkpoint recorded),
then ``best.ckpt`` is loaded strictly, so a mismatch fails instead of loading half a model.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import timm
import torch
from torch import nn

from medimg.finetune.config import FinetuneConfig
from medimg.data import PreparedData, Preprocess
from medimg.errors import MedimgError
from medimg.finetune.runs import read_predictions, read_run


@dataclass
class LoadedRun:
    """A trained model (eval mode) with everything needed to feed it the run's images."""

    run_dir: Path
    model: nn.Module
    config: FinetuneConfig
    preprocess: Preprocess
    classes: list[str]
    data: PreparedData  # the target dataset, as the run saw it
    metrics: dict

    def predictions(self) -> pd.DataFrame:
        return read_predictions(self.run_dir)

    def positions(self, ids) -> np.ndarray:
        """Positions of image ``ids`` in ``data.decoded``."""
        return image_positions(self.data, ids, self.run_dir)

    def inputs(self, positions) -> torch.Tensor:
        """Model inputs (N, C, H, W) for the images at ``positions``."""
        images = self.data.decoded.images[np.asarray(positions)]
        return torch.stack([self.preprocess(torch.from_numpy(np.array(im)).permute(2, 0, 1)) for im in images])


def image_positions(data: PreparedData, ids, run_dir) -> np.ndarray:
    """Positions of image ``ids`` in ``data.decoded`` (the data of the run in ``run_dir``)."""
    where = {id_: i for i, id_ in enumerate(data.decoded.ids)}
    missing = [i for i in ids if i not in where]
    if missing:
        raise MedimgError(f"{len(missing)} image ids (e.g. {missing[0]!r}) are not in {data.config.dataset}: "
                          f"pick ids from {Path(run_dir) / 'predictions.csv'}")
    return np.array([where[i] for i in ids], dtype=np.int64)


def load_run(run_dir) -> LoadedRun:
    """Load a finished fine-tuning run: model from ``best.ckpt``, config, preprocessing and data."""
    run = read_run(run_dir)
    run_dir, config, metrics, data = run.path, run.settings, run.metrics, run.prepared_data()
    classes = list(data.classes)
    pre = metrics["preprocess"]
    preprocess = Preprocess(**{**pre, "mean": tuple(pre["mean"]), "std": tuple(pre["std"])})
    in_chans = config.in_chans(data.decoded.channels)
    assert in_chans == preprocess.in_chans, "metrics.json and config.json disagree on input channels"

    model = timm.create_model(config.arch, pretrained=False, num_classes=len(classes), in_chans=in_chans,
                              **architecture_kwargs(metrics["weight_source"]))
    checkpoint = run_dir / "best.ckpt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    try:
        model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()}, strict=True)
    except RuntimeError as err:
        why = str(err).splitlines()[0][:120]
        raise MedimgError(f"{checkpoint} does not fit a {config.arch} with {in_chans} input channels ({why}): "
                          f"was the run written by another medimg version?") from None
    return LoadedRun(run_dir=run_dir, model=model.eval(), config=config, preprocess=preprocess, classes=classes,
                     data=data, metrics=metrics)


def architecture_kwargs(weight_source: dict) -> dict:
    """Extra timm options the network was created with, which depend on where its weights came from."""
    if weight_source["kind"] == "tflite-import":
        from medimg.models.tflite_import import TIMM_KWARGS

        return dict(TIMM_KWARGS)  # TensorFlow "SAME" padding
    if weight_source["kind"] == "ssl-checkpoint":
        return dict((weight_source.get("meta") or {}).get("timm_kwargs", {}))
    return {}
