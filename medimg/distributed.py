"""Which process of a distributed (DDP) run this is, before and after Lightning starts the others.

Lightning's DDP on one machine (``--strategy ddp --devices N``) starts processes 1..N-1 by running the
same command again with ``LOCAL_RANK`` (and ``NODE_RANK``, ``WORLD_SIZE``) in their environment; torchrun
sets ``RANK``; SLURM sets ``SLURM_PROCID`` for every task it launches. Only process 0 prepares a run
directory, writes results and prints them: the others train their share and leave the files alone.
"""
from __future__ import annotations

import os


def is_main_process() -> bool:
    """Whether this process is the one that writes: rank 0 however it was launched (and a process nothing launched).

    Every launcher's rank variables must be 0 or unset: torchrun's ``RANK``; SLURM's ``SLURM_PROCID`` when it
    launched several tasks (``SLURM_NTASKS`` > 1); Lightning's ``NODE_RANK`` and ``LOCAL_RANK``.
    """
    env = os.environ
    ranks = [env.get("RANK"), env.get("NODE_RANK"), env.get("LOCAL_RANK")]
    if int(env.get("SLURM_NTASKS", "1")) > 1:
        ranks.append(env.get("SLURM_PROCID"))
    return all(r in (None, "", "0") for r in ranks)


def shard() -> tuple[int, int]:
    """(rank, world size) of the running process group, or (0, 1) when there is none."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
