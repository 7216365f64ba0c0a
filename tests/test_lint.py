"""The package's docstrings and imports hold the line (style lesson 4): ruff's pydocstyle rules (numpy
convention), import order, bugbear and pyflakes pass on ``gpuvalid/`` (configured in ``pyproject.toml``), and every
public function that raises an exception itself says so in a numpydoc ``Raises`` section.

``python tests/test_lint.py gpuvalid/archive`` lists the undocumented raises under one folder.
"""

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "gpuvalid"


def _raised_names(fn: ast.AST) -> set[str]:
    """Exception classes raised by ``raise X(...)`` / ``raise X`` in ``fn``'s own body (not in nested defs;
    a bare ``raise``, re-raising a caught name, or raising X inside a ``try`` that catches X is not counted)."""

    def name_of(node) -> str | None:
        node = node.func if isinstance(node, ast.Call) else node
        return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None

    names, todo = set(), [(child, frozenset()) for child in ast.iter_child_nodes(fn)]
    while todo:
        node, caught = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Raise) and node.exc is not None:
            name = name_of(node.exc)
            if name and name[:1].isupper() and name not in caught:
                names.add(name)
        if isinstance(node, ast.Try):
            handled = set()
            for h in node.handlers:
                types = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type] if h.type else []
                handled |= {name_of(t) for t in types}
            todo += [(child, caught | handled) for child in node.body]
            todo += [(child, caught) for child in node.handlers + node.orelse + node.finalbody]
            continue
        todo += [(child, caught) for child in ast.iter_child_nodes(node)]
    return names


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def undocumented_raises(paths) -> list[str]:
    """``file:line name: X`` for each public function or method that raises X itself but whose docstring has
    no ``Raises`` section naming X."""
    out = []
    for path in sorted(p for base in paths for p in (Path(base).rglob("*.py") if Path(base).is_dir() else [Path(base)])):
        tree = ast.parse(path.read_text(encoding="utf-8"))

        def visit(node, prefix, in_function):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.ClassDef):
                    visit(child, f"{prefix}{child.name}.", in_function)
                elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    public = not child.name.startswith("_") or child.name == "__init__"
                    if public and not in_function:
                        doc = ast.get_docstring(child) or ""
                        head = re.search(r"^Raises\n-+\n", doc, re.M)        # the numpydoc header
                        section = doc[head.end():] if head else ""
                        for name in sorted(_raised_names(child)):
                            if name not in section:
                                out.append(f"{_shown(path)}:{child.lineno} {prefix}{child.name}: {name}")
                    visit(child, f"{prefix}{child.name}.", True)

        visit(tree, "", False)
    return out


def test_raises_are_documented():
    """A caller reads from the docstring which errors to expect (InputError for user data, ValueError for
    misuse, NotMeasurable for a section that cannot be measured)."""
    missing = undocumented_raises([PKG])
    assert not missing, "public functions raise without a Raises section:\n" + "\n".join(missing)


def test_checker_sees_a_missing_raises_section(tmp_path):
    """The checker itself: a raise without a Raises section is found, one with it is not, nested defs and
    private functions are not counted, nor a raise that its own ``try`` catches."""
    src = tmp_path / "m.py"
    src.write_text('def f(x):\n    """Do.\n\n    Raises\n    ------\n    ValueError\n        when x < 0.\n    """\n'
                   '    if x < 0:\n        raise ValueError("x")\n    raise KeyError(x)\n\n'
                   'def g():\n    """Do."""\n    def h():\n        raise TypeError\n    return h\n\n'
                   'def _p():\n    raise TypeError\n\n'
                   'def k():\n    """Do."""\n    try:\n        raise KeyError\n    except (KeyError, OSError):\n'
                   '        raise RuntimeError\n', encoding="utf-8")
    assert [m.split(" ", 1)[1] for m in undocumented_raises([src])] == ["f: KeyError", "k: RuntimeError"]


def test_ruff_passes_on_the_package():
    """ruff (the dev extra) with the rules of pyproject.toml: docstrings (numpy convention), imports, bugbear, pyflakes."""
    ruff = shutil.which("ruff") or (Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install -e .[dev] installs it)")
    done = subprocess.run([str(ruff), "check", "--no-cache", "gpuvalid"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


if __name__ == "__main__":
    print("\n".join(undocumented_raises(sys.argv[1:] or [PKG])))
