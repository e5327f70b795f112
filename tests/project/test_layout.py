"""The house a newcomer walks: stages as packages that import only the stages below them (type-only imports
included), no import circle, few modules at the top, one table of arms and one of protocols that no one else
compares names against, one function naming every product, and templates that state their parameters once. Drawn
from the code itself (its syntax trees), not from a list."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "medimg"
SHARED = ("errors", "paths", "atomic", "record_options", "identity")
# the stages in the order data flows through them; each may import only those before it (and the shared modules)
STAGES = ("data", "models", "plots", "evaluate", "training", "probe", "ssl", "finetune", "compare", "explain", "study")
TOP = ("cli", "__main__")


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST) -> list[str]:
    """Every ``medimg`` module a file imports: at the top, inside a function, or only for a type checker (``if
    TYPE_CHECKING:``, an arrow all the same: the file names what it reads)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "medimg":
            assert node.level == 0
            out += [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.split(".")[0] == "medimg"]
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    return {m: {i for i in _imports(ast.parse(p.read_text())) if i in modules and i != m}
            for m, p in modules.items()}


def _floor(module: str) -> int:
    part = module.split(".")[1] if "." in module else ""
    if part in SHARED or part == "":
        return 0
    if part in STAGES:
        return 1 + STAGES.index(part)
    assert part in TOP, f"{module} is neither shared, a stage nor the command line: put it in a stage"
    return 1 + len(STAGES)


def test_at_most_eight_modules_at_the_top_and_every_stage_a_package_with_its_job():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 8, top
    assert {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"} == set(SHARED) | set(TOP)
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(STAGES)
    for stage in STAGES:
        doc = ast.get_docstring(ast.parse((PACKAGE / stage / "__init__.py").read_text()))
        assert doc and "import" in doc, f"medimg/{stage}/__init__.py must say its job and what it may import"


def test_no_import_runs_up_a_floor(graph):
    upward = sorted(f"{m} -> {i}" for m, imports in graph.items() for i in imports if _floor(i) > _floor(m))
    assert upward == []


def test_no_import_circle(graph):
    """Tarjan's strongly connected components of the module graph: every one is a single module."""
    index, low, stack, on, circles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert circles == []


def _name_comparisons(source: str, names: set[str]) -> list[str]:
    """Comparisons (``==``, ``!=``, ``in``, ``not in``) whose either side is one of ``names`` as a literal string
    (or a tuple, list or set of them)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                literals = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
                hits = [x.value for x in literals if isinstance(x, ast.Constant) and x.value in names]
                if hits:
                    found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def _template_code(path: Path) -> str:
    """A notebook's code cells as one Python source (IPython's ``%`` lines left out)."""
    cells = json.loads(path.read_text())["cells"]
    return "\n".join(line for c in cells if c["cell_type"] == "code"
                     for line in "".join(c["source"]).splitlines() if not line.lstrip().startswith("%"))


def _arm_and_method_names() -> set[str]:
    from medimg.finetune.arms import ARMS
    from medimg.ssl.methods import METHODS

    return set(ARMS) | set(METHODS)


def _protocol_names() -> set[str]:
    from medimg.probe.protocols import PROTOCOLS

    return set(PROTOCOLS) | {p.display for p in PROTOCOLS.values()}


def _template_names() -> set[str]:
    from medimg.study.templates import TEMPLATES

    return set(TEMPLATES)


# each table, the names only it may compare, and a line the check must see
TABLES = {
    "arms and methods": (("finetune/arms.py", "ssl/methods.py"), _arm_and_method_names, {"tl", "scratch", "simclr"},
                         'if m == "tl" or arm.method in ("ssl", "tl+ssl"): pass'),
    "protocols": (("probe/protocols.py",), _protocol_names, {"linear", "knn", "fine-tuning", "linear probe", "kNN"},
                  'if p == "linear" or row["protocol"] in ("knn", "kNN"): pass'),
    "templates": (("study/templates.py",), _template_names, {"finetune", "dataset_card", "summary"},
                  'if c.template == "finetune" or c.template in ("summary", "reproducibility"): pass'),
}


@pytest.mark.parametrize("table", TABLES)
def test_no_module_or_template_compares_the_names_of_a_table(table):
    """Arm and method names, protocol names (and the book's names for them) and template names are compared only in
    their tables: everyone else asks the table."""
    modules, names_of, known, example = TABLES[table]
    names = names_of()
    assert names >= known and _name_comparisons(example, names)  # the check sees them
    tables = {PACKAGE / m for m in modules}
    found = {str(p.relative_to(REPO)): hits for p in PACKAGE.rglob("*.py") if p not in tables
             if (hits := _name_comparisons(p.read_text(), names))}
    found |= {str(p.relative_to(REPO)): hits for p in (REPO / "notebooks").glob("*.ipynb")
              if (hits := _name_comparisons(_template_code(p), names))}
    assert found == {}


def test_one_function_hashes_every_identity():
    """sha256 of JSON (the identity recipe) appears once, in medimg.identity; every product names itself through it."""
    hashing = []
    for p in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("sha256") and "json.dumps" in ast.unparse(node):
                hashing.append(str(p.relative_to(REPO)))
    assert hashing == ["medimg/identity.py"]
    users = {p.relative_to(REPO).as_posix() for p in PACKAGE.rglob("*.py") if "import identity" in p.read_text()
             and "identity(" in p.read_text()}
    assert {"medimg/finetune/runs.py", "medimg/study/probe_runs.py", "medimg/probe/features.py",
            "medimg/ssl/config.py", "medimg/data/sources.py"} <= users
    # one function names every self-supervised checkpoint (SSLConfig.checkpoint_name), whoever asks for it: no
    # f-string elsewhere puts a method into a .safetensors name
    namers = [f"{p.relative_to(REPO)}:{node.lineno}" for p in PACKAGE.rglob("*.py")
              for node in ast.walk(ast.parse(p.read_text())) if isinstance(node, ast.JoinedStr)
              and ".safetensors" in ast.unparse(node) and "method" in ast.unparse(node)]
    assert namers == []
    assert "def checkpoint_name(" in (PACKAGE / "ssl" / "config.py").read_text()


def test_every_template_states_exactly_the_parameters_of_its_table():
    """The parameters cell of each template names the parameters :data:`TEMPLATE_PARAMETERS` gives it, in its order
    (plus where the driver writes it): the plan, the template and the rerun box cannot drift apart."""
    from medimg.study.parameters import CHAPTER_PARAMETERS, TEMPLATE_PARAMETERS
    from medimg.study.templates import TEMPLATES

    assert set(TEMPLATE_PARAMETERS) == set(TEMPLATES)
    for template, names in TEMPLATE_PARAMETERS.items():
        cells = json.loads((REPO / "notebooks" / f"{template}.ipynb").read_text())["cells"]
        (cell,) = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assigned = [t.id for node in ast.parse("".join(cell["source"])).body if isinstance(node, ast.Assign)
                    for t in node.targets]
        assert assigned == [*names, *CHAPTER_PARAMETERS], template


def test_every_template_hides_its_code():
    """A chapter shows its results before its code, and no plumbing: every code cell of a template but its
    parameters is folded (``hide-input``) or left out (``remove-input``) of the book."""
    hidden = {"parameters", "hide-input", "remove-input", "hide-cell", "remove-cell"}
    shown = {p.name: [i for i, c in enumerate(json.loads(p.read_text())["cells"])
                      if c["cell_type"] == "code" and not set(c["metadata"].get("tags", [])) & hidden]
             for p in (REPO / "notebooks").glob("*.ipynb")}
    assert {name: cells for name, cells in shown.items() if cells} == {}
