"""What a wheel of speechlm holds and declares: every subpackage, py.typed, the licence,
the core dependencies and the extras (serve, energy, llm, dev)."""
import ast
import importlib.metadata
import pathlib
import re
import sys

import tomllib

from speechlm.core.extras import EXTRAS

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_package_is_listed():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(cfg["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "speechlm").rglob("__init__.py")}
    assert found - listed == set(), "add these to [tool.setuptools] packages"
    assert "speechlm_kernels" in listed

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# imported by speechlm, installed by a declared dependency of theirs
TRANSITIVE = {"nltk": "espnet", "pydantic": "fastapi", "starlette": "fastapi", "pil": "matplotlib",
              "datasets": "trl"}
# installed by tools/setup.sh, not by pip metadata: espnet's own pins would replace torch
# and the catalogue's packages whose own dependency lists are wrong or need a compiler
# (tools/requirements/models.txt marks them "# --no-deps"; `speechlm models info` says so)
NOT_FROM_PIP = {"espnet"} | {
    _line.split("==")[0].strip().lower()
    for _line in (ROOT / "tools" / "requirements" / "models.txt").read_text().splitlines()
    if "# --no-deps" in _line and not _line.startswith("#")}


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]).lower()


def _declared() -> dict[str, str]:
    """normalised distribution name -> "core" or the extra that installs it."""
    out = {_name(r): "core" for r in PROJECT["dependencies"]}
    for extra, reqs in PROJECT["optional-dependencies"].items():
        for r in reqs:
            out.setdefault(_name(r), extra)
    return out


def _imports(path: pathlib.Path, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    # top level: the module body, also inside a module-level if/try, not in functions
    nodes = _outside_functions(tree) if top_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"speechlm", "speechlm_kernels", "__future__"}


def _outside_functions(node: ast.AST):
    yield node
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield from _outside_functions(child)


def test_core_has_no_server_ui_energy_or_unused_packages():
    core = {_name(r) for r in PROJECT["dependencies"]}
    assert core.isdisjoint({"gradio", "fastapi", "uvicorn", "python-multipart", "zeus",
                            "peft", "accelerate", "jiwer"})
    extras = {k: {_name(r) for r in v} for k, v in PROJECT["optional-dependencies"].items()}
    assert extras["serve"] == {"fastapi", "uvicorn", "python-multipart", "gradio"}
    assert extras["energy"] == {"zeus", "lowtime", "networkx", "scipy"}
    assert extras["llm"] == {"peft", "accelerate", "scikit-learn", "sacrebleu", "faiss-cpu", "trl",
                             "datasets"}
    assert {"speechlm", "pytest", "import-linter", "ruff"} <= extras["dev"]
    assert re.search(r"speechlm\[serve,energy,llm\]", " ".join(
        PROJECT["optional-dependencies"]["dev"]))


def test_every_third_party_import_is_declared():
    dists = importlib.metadata.packages_distributions()
    declared = _declared()
    undeclared = {}
    for path in (ROOT / "speechlm").rglob("*.py"):
        for module in _imports(path):
            dist = _name(dists.get(module, [module])[0])
            dist = TRANSITIVE.get(module.lower(), dist)
            if dist not in declared and dist not in NOT_FROM_PIP:
                undeclared.setdefault(dist, str(path.relative_to(ROOT)))
    assert undeclared == {}, "declare these in pyproject.toml (core or an extra)"


def test_modules_of_extras_are_imported_on_use():
    """Only the FastAPI app imports an extra at module level (the CLI checks first)."""
    top = {}
    for path in (ROOT / "speechlm").rglob("*.py"):
        hit = _imports(path, top_level_only=True) & set(EXTRAS)
        if hit and path != ROOT / "speechlm" / "serve" / "app.py":
            top[str(path.relative_to(ROOT))] = hit
    assert top == {}


def test_every_extra_package_names_its_extra():
    dists = importlib.metadata.packages_distributions()
    for extra in ("serve", "energy", "llm"):
        for req in PROJECT["optional-dependencies"][extra]:
            modules = {m for m, ds in dists.items() if _name(req) in {_name(d) for d in ds}}
            assert modules, f"{req} is not installed here (pip install -e '.[{extra}]')"
            assert any(EXTRAS.get(m) == extra for m in modules), (req, modules)


def test_py_typed_ships():
    assert (ROOT / "speechlm" / "py.typed").is_file()
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in cfg["tool"]["setuptools"]["package-data"]["speechlm"]


def test_licence_is_the_full_apache_2_text():
    text = (ROOT / "LICENSE").read_text()
    assert PROJECT["license"] == "Apache-2.0" and PROJECT["license-files"] == ["LICENSE"]
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text.splitlines()) > 190


def test_changelog_has_unreleased_and_this_version():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in text and f"## [{PROJECT['version']}]" in text
