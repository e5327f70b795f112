"""The data stage: registry -> source -> decoded cache -> leakage-aware split -> torch datasets.

A dataset is a name (MedMNIST, a staged folder, a generated set) or a folder of images; what comes out is a
:class:`~medimg.data.pipeline.PreparedData` whose splits never share an image. May import only the shared
modules (errors, paths, atomic writes, record options): it knows nothing of models, training or the study.
Names are imported on first use, so ``medimg datasets`` does not pay for importing torch.
"""
from importlib import import_module

_EXPORTS = {
    "BalancePlan": "balance", "class_balance": "balance",
    "DecodedImages": "cache", "load_images": "cache",
    "describe": "summary", "format_description": "summary",
    "LineageCheck": "lineage", "check_lineage": "lineage",
    "DataConfig": "pipeline", "PreparedData": "pipeline", "prepare": "pipeline",
    "REGISTRY": "registry", "DatasetSpec": "registry", "Lineage": "registry", "get_spec": "registry",
    "DatasetSource": "records", "ImageRecord": "records", "open_dataset": "sources",
    "Split": "splits", "duplicate_groups": "splits", "make_split": "splits",
    "Augmentation": "transforms", "EpochSampler": "transforms", "ImageDataset": "transforms", "Preprocess": "transforms",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
