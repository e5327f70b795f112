"""Writing result files: atomically (a reader sees the old file or the whole new one, never a half-written one),
only from the process that writes (:func:`is_main_process`), and one writer per run folder (:func:`run_lock`).

A run folder's lock: ``with run_lock(folder):`` takes an exclusive ``flock`` on ``folder/.medimg-lock`` (made if
missing, with the folder), writes the holder's process id, host and start time into it, and keeps it until the block ends. A second process
asking for the same folder is refused at once, in one line naming the holder: "runs/x is being written by process
4242 on host (started 09:14): wait for it to finish or choose another --out". The operating system releases a
``flock`` when its process ends however it ends, so a lock file left by a killed process is stale by construction:
the next run takes it over (and says so). The folder holds nothing else of the lock's: a folder made only for the
lock is removed again if the block fails before writing anything into it.
"""
from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from medimg.errors import MedimgError, environment_errors, warn


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


# --- one writer per run folder --------------------------------------------------------------------------------------

LOCK_NAME = ".medimg-lock"
_HELD: set[str] = set()  # folders this process holds the lock of (a second run_lock on one is a no-op)


def holder(folder: Path) -> dict:
    """What the lock file of ``folder`` says of the process that wrote it ({} when there is none or it is unreadable)."""
    try:
        return json.loads((Path(folder) / LOCK_NAME).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(who: dict) -> str:
    started = time.strftime("%H:%M", time.localtime(who["started"])) if "started" in who else "at an unknown time"
    return (f"process {who.get('pid', '?')}{' on ' + who['host'] if who.get('host') else ''} "
            f"(started {started}{', ' + who['command'] if who.get('command') else ''})")


@contextmanager
def run_lock(folder, *, option: str = "--out", command: str | None = None):
    """Hold ``folder``'s lock for the block (see the module's text); refuse with :class:`MedimgError` while another
    process holds it. ``option`` names how the user chose the folder, for the fix; ``command`` is shown to whoever
    finds the folder locked."""
    import fcntl

    folder = Path(folder)
    key = os.path.realpath(folder)
    if key in _HELD:  # this process holds it already (the command line takes it before loading torch)
        yield folder
        return
    made = not folder.exists()
    path = folder / LOCK_NAME
    with environment_errors(folder, what="lock the run folder"):
        folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise MedimgError(f"{folder} is being written by {_describe(holder(folder))}: wait for it to finish "
                                  f"or choose another {option}") from None
            try:  # the file may have been removed (its holder finished) between our open and our lock: lock anew
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        stale = holder(folder)
        if stale.get("pid") and stale.get("pid") != os.getpid():
            warn(f"{folder} was locked by {_describe(stale)}, which ended without releasing it: taken over")
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(dict(pid=os.getpid(), host=socket.gethostname(), started=time.time(),
                                     command=command)).encode())
    _HELD.add(key)
    try:
        yield folder
    finally:
        _HELD.discard(key)
        try:
            os.unlink(path)
            if made and not any(folder.iterdir()):
                folder.rmdir()  # made for the lock alone, and nothing was written
        except OSError:
            pass
        os.close(fd)
