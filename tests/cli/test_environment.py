"""A bad environment as users meet it (issue #31): two processes given one --out, an unwritable or unreachable
cache, a full disk under the cache, a cache shared by several users. Each is a one-line error (exit 2) naming the
folder and the fix, with nothing half-written, or works."""
from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, assert_one_line_error, files_under, run_cli, write_user_folder
from medimg.cli import main

SCRATCH = ["--method", "scratch", "--arch", "resnet18", "--size", "32", "--no-progress"]


def _wait_for(predicate, proc, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_a_run_folder_is_locked_while_written_and_a_killed_holder_leaves_a_stale_lock(tmp_path):
    """Two real processes: the second finetune into the folder the first is training in is refused at once, with
    --force and --resume too; once the first is killed its lock is stale, and a run with --force takes it over. A
    folder whose results are not its config's run is refused by evaluate."""
    out = tmp_path / "run"
    args = ["finetune", "--dataset", "synthetic_colour", *SCRATCH, "--out", str(out)]
    first = subprocess.Popen([sys.executable, "-m", "medimg", *args, "--epochs", "200", "--patience", "300"],
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env=os.environ.copy())
    try:
        assert _wait_for(lambda: (out / "config.json").is_file(), first), first.stderr and first.stderr.read()
        config = (out / "config.json").read_text()
        seconds = time.perf_counter()
        refused = [subprocess.Popen([sys.executable, "-m", "medimg", *args, "--epochs", "1", *extra], cwd=REPO,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
                   for extra in ([], ["--force"], ["--resume"])]
        for proc in refused:
            stdout, stderr = proc.communicate(timeout=300)
            assert_one_line_error(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr),
                                  f"{out} is being written by process {first.pid}", "choose another --out")
        assert first.poll() is None, "the first run ended before the others asked"
        assert (out / "config.json").read_text() == config and not (out / "metrics.json").exists()
        print(f"\nthree refusals in {time.perf_counter() - seconds:.1f} s")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert json.loads((out / ".medimg-lock").read_text())["pid"] == first.pid  # left behind by the killed process
    again = run_cli(*args, "--epochs", "1", "--force")
    assert again.returncode == 0, again.stderr
    assert f"locked by process {first.pid}" in again.stderr and "taken over" in again.stderr
    assert not (out / ".medimg-lock").exists()
    assert run_cli("evaluate", str(out)).returncode == 0
    # results of another run than the folder's config (as two runs writing one folder left them) are refused
    config, metrics = (json.loads((out / name).read_text()) for name in ("config.json", "metrics.json"))
    assert len(config["identity"]) == 12 and config["identity"] == metrics["identity"]
    (out / "metrics.json").write_text(json.dumps(dict(metrics, identity="0123456789ab")))
    assert_one_line_error(run_cli("evaluate", str(out), "--force"), "metrics.json belongs to run 0123456789ab",
                          config["identity"], "--force")


@pytest.fixture
def scans(tmp_path):
    write_user_folder(tmp_path / "scans")
    return tmp_path / "scans"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_cache_is_refused_before_anything_is_decoded(scans, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o555)
    try:
        done = run_cli("describe", str(scans), env={"MEDIMG_CACHE_DIR": str(cache)})
    finally:
        cache.chmod(0o755)
    assert_one_line_error(done, f"cannot write the image cache in {cache}", "MEDIMG_CACHE_DIR")
    assert "decode" not in done.stderr and files_under(cache) == []


def test_a_cache_below_a_file_is_the_users_error_not_a_bug(scans, tmp_path):
    below = tmp_path / "a-file" / "cache"
    below.parent.write_text("not a folder")
    done = run_cli("describe", str(scans), env={"MEDIMG_CACHE_DIR": str(below)})
    assert_one_line_error(done, f"cannot write the image cache in {below} ({below.parent} is a file, not a folder)",
                          "move the file or set MEDIMG_CACHE_DIR to another folder")


@pytest.mark.parametrize("code, fix", [(errno.EROFS, "make it writable"), (errno.EACCES, "make it writable"),
                                       (errno.ENOTCONN, "a network mount may be down")])
def test_a_read_only_or_unreachable_cache_is_refused_before_decoding(scans, monkeypatch, capsys, cache_dir, code, fix):
    """A read-only file system, a folder of another user, a dead network mount: injected where the check first
    writes (this machine runs as root, which writes anywhere, and mounts nothing)."""
    import tempfile

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    decoded = []
    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    monkeypatch.setattr("medimg.data.cache._decode_all", lambda *a, **k: decoded.append(1))
    assert main(["describe", str(scans)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot write the image cache in {cache_dir} ({os.strerror(code).lower()}" in \
        err[0].lower() and fix in err[0] and "MEDIMG_CACHE_DIR" in err[0], err
    assert decoded == []


def test_a_full_disk_under_the_cache_says_so_with_the_room_needed_and_leaves_nothing(scans, monkeypatch, capsys,
                                                                                     cache_dir):
    """The disk fills while the entry's images are written (ENOSPC injected into numpy's save: this machine cannot
    mount a small file system without privileges)."""
    real_save = np.save

    def full(path, array, *args, **kwargs):
        real_save(path, array[: len(array) // 2], *args, **kwargs)  # half of it written, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(np, "save", full)
    assert main(["describe", str(scans), "--size", "32"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medimg: error: cannot write the image cache in "), err
    assert "no space left on device, 1 MB needed" in err[0] and "free space there or set MEDIMG_CACHE_DIR" in err[0]
    assert list((cache_dir / "images").iterdir()) == []  # no entry, no temporary folder


def test_a_shared_cache_is_readable_by_others_whatever_the_umask(scans, cache_dir):
    old = os.umask(0o077)
    try:
        assert main(["describe", str(scans), "--size", "32"]) == 0
    finally:
        os.umask(old)
    entry = next((cache_dir / "images").iterdir())
    assert stat.S_IMODE(entry.stat().st_mode) == 0o755
    for f in [*entry.iterdir(), *(cache_dir / "splits").iterdir()]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f
