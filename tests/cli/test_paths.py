"""Every path every command takes, tried wrong every way a user gets it wrong: a missing path, a file where a folder
is expected and the reverse, a path below a file, an unwritable place. Each is exit 2 with one line naming the path
and the fix, and nothing written. The table is the CLI's own (``medimg.cli.PATH_OPTIONS``): a new command's paths
join it, and the last test fails for a path-like option that is not in it."""
from __future__ import annotations

import pytest

from medimg.cli import PATH_OPTIONS, build_parser, main

UNWRITABLE = "/sys/medimg-out"  # refused even to root (the kernel's own file system)


def _valid(tmp_path) -> dict[str, str]:
    """A value for each kind of path that passes its check."""
    folder = tmp_path / "ok-folder"
    folder.mkdir(exist_ok=True)
    (tmp_path / "ok-file.bin").write_bytes(b"x")
    return {"input-dir": str(folder), "input-dir-or-name": "synthetic_grey", "input-file": str(tmp_path / "ok-file.bin"),
            "output-dir": str(tmp_path / "new-out"), "output-file": str(tmp_path / "new-out.safetensors")}


def _argv(command: str, paths: dict[str, str]) -> list[str]:
    """A command line of ``command`` whose path arguments are ``paths`` (dest -> value), otherwise minimal."""
    fixed = {"finetune": ["--method", "tl"]}.get(command, [])
    positional = {"describe": "dataset", "evaluate": "run_dir", "compare": "run_dirs", "gradcam": "run_dir",
                  "weights import-tflite": "file"}.get(command)
    argv = command.split() + ([paths[positional]] if positional else []) + fixed
    for dest, value in paths.items():
        if dest != positional:
            argv += [f"--{dest.replace('_', '-')}", value]
    return argv


def _bad_values(kind: str, tmp_path) -> dict[str, tuple[str, str]]:
    """case -> (the bad path, a word the message must hold)."""
    a_file = tmp_path / "a-file.txt"
    a_file.write_text("not a folder")
    a_folder = tmp_path / "a-folder"
    a_folder.mkdir(exist_ok=True)
    cases = {"missing": (str(tmp_path / "no" / "such"), "does not exist"),
             "below a file": (str(a_file / "inside"), "below")}
    if kind in ("input-dir", "input-dir-or-name"):
        cases["a file for a folder"] = (str(a_file), "is a file")
    if kind == "input-file":
        cases["a folder for a file"] = (str(a_folder), "is a folder")
    if kind == "output-dir":
        cases = {"an existing file": (str(a_file), "is an existing file"), "below a file": cases["below a file"],
                 "unwritable": (UNWRITABLE, "cannot be written")}
    if kind == "output-file":
        cases = {"an existing folder": (str(a_folder), "is a folder"), "below a file": cases["below a file"],
                 "unwritable": (UNWRITABLE + "/x.safetensors", "cannot be written")}
    return cases


TABLE = [(command, dest, kind) for command, options in PATH_OPTIONS.items() for dest, kind in options.items()]


@pytest.mark.parametrize("command, dest, kind", TABLE, ids=[f"{c}:{d}" for c, d, _ in TABLE])
def test_a_wrong_path_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, command, dest, kind):
    valid = _valid(tmp_path)
    for case, (bad, word) in _bad_values(kind, tmp_path).items():
        paths = {d: valid[k] for d, k in PATH_OPTIONS[command].items()}
        paths[dest] = bad
        before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
        code = main(_argv(command, paths))
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert code == 2, (case, err)
        assert len(lines) == 1 and lines[0].startswith("medimg: error: ") and "Traceback" not in err, (case, err)
        assert bad in lines[0] and word in lines[0], (case, lines[0])
        assert ": " in lines[0].removeprefix("medimg: error: "), f"{case}: no fix after the problem: {lines[0]}"
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before, f"{case} wrote something"


def test_every_path_like_argument_of_every_command_is_in_the_table():
    """Options and arguments that name files or folders are all checked: by their names (``--out``, ``run_dir``,
    ``file``, a dataset, which may be a folder, and any ``*_dir``, ``*_file``, ``*_path``). ``--weights`` is a keyword
    or a file, checked as a file when it looks like one (the last test)."""
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    names = ("out", "file", "dataset", "datasets", "intermediate")
    missing = []
    for name, command in sub.choices.items():
        commands = {name: command}
        nested = [a for a in command._actions if a.dest == "weights_command"]
        if nested:
            commands = {f"{name} {n}": c for n, c in nested[0].choices.items()}
        for full, p in commands.items():
            for action in p._actions:
                pathlike = action.dest in names or action.dest.endswith(("_dir", "_dirs", "_file", "_path"))
                if pathlike and action.dest not in PATH_OPTIONS.get(full, {}):
                    missing.append(f"{full} {action.dest}")
    assert missing == []


def test_an_unexpected_error_is_a_bug_report_of_one_line_with_its_traceback_kept(tmp_path, capsys, monkeypatch):
    import medimg.cli as cli

    def broken(args):
        raise ZeroDivisionError("division by zero")

    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(cli, "_cmd_datasets", broken)
    code = main(["datasets"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "internal error" in err and "ZeroDivisionError" in err and "test_paths.py" in err
    (log,) = tmp_path.glob("medimg-bug-*.log")
    assert "Traceback" in log.read_text() and str(log) in err


def test_a_weights_file_that_is_not_there_is_refused_before_anything_runs(tmp_path, capsys):
    code = main(["finetune", "--dataset", "synthetic_grey", "--method", "ssl", "--weights",
                 str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "--weights" in err and "does not exist" in err and not (tmp_path / "run").exists()
