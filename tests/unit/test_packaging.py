"""The one-file executable's recipe (roster.spec) and its entry point (server/entry.py).

PyInstaller finds modules by reading import statements, so a module loaded by name at run time
(``importlib.import_module``) is missing from the binary unless roster.spec names it; the binary
then fails only when that subcommand runs. The build itself is too slow for the suite (CI builds
and smoke-tests it in .ci/smoke-binary); these tests read the spec as text.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import pytest

from bench import cli as bench_cli
from server import entry, version

ROOT = Path(__file__).resolve().parents[2]


def _spec() -> ast.Module:
    return ast.parse((ROOT / "roster.spec").read_text(), filename="roster.spec")


def _call_args(tree: ast.Module, function: str) -> set[str]:
    """The string arguments of every call to ``function`` in ``tree``."""
    return {arg.value for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name) and node.func.id == function
            for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)}


def _named_in_spec(tree: ast.Module) -> set[str]:
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def _loaded_by_name(path: Path) -> set[str]:
    """Modules a source file loads with ``importlib.import_module("literal")``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return {node.args[0].value for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
            and node.args and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)}


def _covered(module: str, tree: ast.Module) -> bool:
    collected = _call_args(tree, "collect_submodules")
    parts = module.split(".")
    prefixes = {".".join(parts[:n]) for n in range(1, len(parts) + 1)}
    return module in _named_in_spec(tree) or bool(prefixes & collected)


def test_every_module_the_cli_loads_by_name_is_in_the_binary() -> None:
    tree = _spec()
    wanted = _loaded_by_name(ROOT / "server" / "cli.py") | set(bench_cli._MODULES.values())
    assert "bench.walbench" in wanted  # the scan above still sees bench/cli.py's loads
    missing = sorted(m for m in wanted if not _covered(m, tree))
    assert not missing, f"roster.spec neither names nor collects {missing}"


def test_every_package_of_the_project_is_collected() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*").rstrip(".") for p in
                project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages, "pyproject.toml lists no packages"
    missing = sorted(packages - _call_args(_spec(), "collect_submodules"))
    assert not missing, f"roster.spec does not collect {missing}"


def test_the_binary_carries_the_metadata_its_version_comes_from() -> None:
    assert version.DISTRIBUTION in _call_args(_spec(), "copy_metadata")


def test_the_spec_builds_from_the_entry_module() -> None:
    tree = _spec()
    scripts = {elt.value for node in ast.walk(tree) if isinstance(node, ast.Call)
               and isinstance(node.func, ast.Name) and node.func.id == "Analysis"
               and node.args and isinstance(node.args[0], ast.List)
               for elt in node.args[0].elts if isinstance(elt, ast.Constant)}
    assert scripts == {"server/entry.py"}
    assert (ROOT / "server" / "entry.py").is_file()


def test_plain_arguments_are_the_cli_not_the_interpreter() -> None:
    assert entry.interpreter_mode(["serve", "--port", "0"]) is None
    assert entry.interpreter_mode(["-m"]) is None  # argparse then explains the usage
    assert entry.interpreter_mode([]) is None


def test_dash_m_runs_only_roster_modules(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["roster"])
    assert entry.interpreter_mode(["-m", "json.tool"]) == 2
    assert "json.tool" in capsys.readouterr().err


def test_dash_m_runs_a_module_as_main_with_its_arguments(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["roster"])
    assert entry.interpreter_mode(["-m", "server", "config", "--port", "7123"]) == 0
    assert "port = 7123" in capsys.readouterr().out


def test_dash_c_runs_code_and_keeps_its_exit_code(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["roster"])
    code = "import sys; print(sys.argv[1:]); raise SystemExit(3)"
    assert entry.interpreter_mode(["-c", code, "a", "b"]) == 3
    assert capsys.readouterr().out.strip() == "['a', 'b']"
    assert entry.interpreter_mode(["-c", "raise SystemExit('bad')"]) == 1
    assert capsys.readouterr().err.strip() == "bad"
