"""The examples in the package's docstrings run and print what they say (every module with a ``>>>`` line)."""

import doctest
import importlib
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "gpuvalid"
MODULES = sorted(".".join(p.relative_to(PKG.parent).with_suffix("").parts)
                 for p in PKG.rglob("*.py") if ">>> " in p.read_text(encoding="utf-8"))


def test_some_modules_have_examples():
    assert len(MODULES) >= 4, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name.removesuffix(".__init__"))
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0 and result.failed == 0, f"{name}: {result.failed} of {result.attempted} failed"
