"""The promises around the code: pins that agree, README's two commands, CI running README's tests."""
import re
import tomllib

import yaml

from conftest import REPO


def _pins(lines):
    return {re.split(r"[=<>!~ ]", d, maxsplit=1)[0].lower(): d.replace(" ", "") for d in lines}


def test_environment_yml_has_pyproject_pins():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = _pins(project["dependencies"] + sum(project["optional-dependencies"].values(), []))
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == wanted
    assert wanted["torch"] == "torch==2.14.1" and wanted["torchvision"] == "torchvision==0.29.1"
    assert wanted["jupyter-book"] == "jupyter-book>=1,<2"


def test_constraints_agree_with_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    frozen = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().splitlines()
                  if "==" in line and not line.startswith("#"))
    frozen = {k.lower().replace("_", "-"): v for k, v in frozen.items()}
    for dep in project["dependencies"]:
        name, _, version = dep.partition("==")
        if version:
            assert frozen[name.lower()] == version, dep


def test_readme_commands_and_ci():
    readme = (REPO / "README.md").read_text()
    commands = re.findall(r"^```(?:bash|sh)\n(.*?)```", readme, flags=re.S | re.M)
    assert any("make test" in c for c in commands) and any("make study" in c for c in commands)
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci
