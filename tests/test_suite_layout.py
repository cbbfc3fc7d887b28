"""The suite's own rules: a test module never imports another test module (nor conftest.py, which
pytest loads itself); what several modules share is in tests/helpers.py or a conftest.py fixture."""

from __future__ import annotations

import ast

from tests.helpers import ROOT

TESTS = ROOT / "tests"


def _is_test_module(dotted: str) -> bool:
    last = dotted.rsplit(".", 1)[-1]
    return last.startswith("test_") or last == "conftest"


def forbidden_imports(source: str) -> list[str]:
    """The test modules (tests.test_x, test_x, .test_x, conftest) that ``source`` imports, at any depth
    (an import inside a function counts too)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if _is_test_module(a.name)]
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            if node.module and _is_test_module(node.module):
                found.append(module)
            elif node.module in (None, "tests"):  # from tests import test_x; from . import test_x
                found += [f"{module}.{a.name}".replace("..", ".") for a in node.names if _is_test_module(a.name)]
    return found


def test_the_check_finds_every_form_of_import():
    source = """
import tests.test_engine
from tests.test_tune import _crafted
from tests import test_console
from . import conftest
from .test_security import roles
def f():
    from tests.conftest import ROOT
from tests.helpers import recommend
import pytest
"""
    assert forbidden_imports(source) == ["tests.test_engine", "tests.test_tune", "tests.test_console", ".conftest",
                                         ".test_security", "tests.conftest"]


def test_no_test_module_imports_another():
    modules = sorted(TESTS.rglob("*.py"))
    assert len(modules) > 30
    offenders = {str(p.relative_to(ROOT)): bad for p in modules if (bad := forbidden_imports(p.read_text()))}
    assert offenders == {}, ("move what is shared into tests/helpers.py (functions) or tests/conftest.py "
                             f"(fixtures): {offenders}")
