"""What a result is and what produced it: its name, one hash of the record that decides it (:func:`identity`), and
its provenance (package versions, git commit, machine), saved beside every result.

Every product names itself through :func:`identity`: fine-tuning run directories
(:func:`medimg.finetune.runs.run_name`), probe runs (:func:`medimg.study.probe_runs.probe_name`), feature caches
(:func:`medimg.probe.features.feature_cache_path`) and self-supervised checkpoints
(:func:`medimg.study.arm_runs.arm_ssl_checkpoint`, :func:`medimg.study.pretraining.pretraining_runs`). The same
record finds its finished product instead of making it again.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path



def identity(record: dict, digits: int = 12) -> str:
    """The name of ``record`` (a JSON-able dict of every setting that changes a result): the first ``digits`` hex
    digits of the SHA-256 of its JSON with sorted keys (values JSON cannot hold, such as paths, as their text).
    Equal records give equal names on every machine and Python version; the digits of a name once committed must
    not change, or its products are no longer found."""
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:digits]


PACKAGES = ("medimg", "torch", "torchvision", "timm", "lightly", "pytorch-lightning", "numpy", "pillow",
            "scikit-learn", "scipy", "grad-cam", "medmnist", "safetensors")


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


# what a study writes into the checkout as it runs: changes there are results, not changes to what makes them
STUDY_OUTPUTS = ("results", "book", "_toc.yml")


def git_commit(repo: Path | None = None) -> dict:
    """The commit of the checkout medimg runs from, and whether it has uncommitted changes to tracked files other
    than the study's own outputs (:data:`STUDY_OUTPUTS`: a study rewrites ``results/``, ``book/`` and ``_toc.yml``
    while it runs, which would otherwise mark every run after its first as dirty)."""
    repo = repo or Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no", "--",
                                     ".", *(f":(exclude,top){p}" for p in STUDY_OUTPUTS)],
                                    capture_output=True, text=True, timeout=10).stdout.strip())
        return dict(commit=commit, dirty=dirty)
    except (OSError, subprocess.SubprocessError):
        return dict(commit=None, dirty=None)


def machine() -> dict:
    """The machine a result was made on; torch's threads and GPUs where the command uses torch (a command that reads
    results, such as ``evaluate`` or ``compare``, does not import it for this)."""
    info = dict(python=sys.version.split()[0], platform=platform.platform(), processor=platform.machine(),
                cpu_count=os.cpu_count())
    torch = sys.modules.get("torch")
    if torch is None:
        return info
    info.update(torch_threads=torch.get_num_threads(), cuda=torch.cuda.is_available())
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def provenance() -> dict:
    return dict(versions=package_versions(), git=git_commit(), machine=machine(),
                created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
