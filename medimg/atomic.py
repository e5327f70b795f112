"""Writing result files: atomically (a reader sees the old file or the whole new one, never a half-written one),
and only from the process that writes (:func:`is_main_process`)."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path, mode: int = 0o644):
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block finishes.

    ``mode`` is applied before the rename: safetensors and mkstemp write 0600 whatever the umask,
    and results are meant to be shared.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def is_main_process() -> bool:
    """Whether this process is the one that writes results: rank 0 however it was launched (and a process nothing launched).

    Every launcher's rank variables must be 0 or unset: torchrun's ``RANK``; SLURM's ``SLURM_PROCID`` when it
    launched several tasks (``SLURM_NTASKS`` > 1); Lightning's ``NODE_RANK`` and ``LOCAL_RANK``.
    """
    env = os.environ
    ranks = [env.get("RANK"), env.get("NODE_RANK"), env.get("LOCAL_RANK")]
    if int(env.get("SLURM_NTASKS", "1")) > 1:
        ranks.append(env.get("SLURM_PROCID"))
    return all(r in (None, "", "0") for r in ranks)
