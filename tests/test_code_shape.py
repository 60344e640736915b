"""The code keeps the shape a newcomer can read: no module over 500 lines, no function over 80.

A function's length runs from its ``def`` line to its last line, without its docstring (the
Google-style docstrings with examples that public functions carry should not count against
them); a nested function counts inside its parent too. Exempt are argument-parser builders,
recognised by a rule rather than a list: the name starts with ``build_``, ``add_`` or ``_add_``,
ends with ``parser``, ``arguments`` or ``options``, and the body calls ``add_argument`` or
``add_parser`` (a builder is one long list of options, and splitting it only scatters them).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80

#: Known offenders (a module's path relative to src/, a function as path:name), each with the
#: work that removes it. Keep this empty where possible.
KNOWN_OFFENDERS: set[str] = set()  # keep it empty: split a long module or function instead

_BUILDER_NAME = re.compile(r"^_?(build|add)_\w*(parser|arguments|options)$")


def _docstring_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    first = function.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        if isinstance(first.value.value, str):
            return first.end_lineno - first.lineno + 1
    return 0


def function_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from ``def`` to the function's end, less its docstring."""
    return function.end_lineno - function.lineno + 1 - _docstring_lines(function)


def is_parser_builder(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """An argparse builder by name (build_/add_ ... parser/arguments/options) and by body."""
    calls = {
        node.func.attr
        for node in ast.walk(function)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    return bool(_BUILDER_NAME.match(function.name)) and bool(calls & {"add_argument", "add_parser"})


def long_functions(source: str) -> dict[str, int]:
    """The functions of ``source`` over MAX_FUNCTION_LINES (builders exempt), with their length."""
    found = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = function_lines(node)
            if length > MAX_FUNCTION_LINES and not is_parser_builder(node):
                found[node.name] = length
    return found


def offenders() -> dict[str, int]:
    """Every module over MAX_MODULE_LINES and long function in the package, with its length."""
    found = {}
    for path in sorted((SOURCE / "ferkit").rglob("*.py")):
        name = path.relative_to(SOURCE).as_posix()
        source = path.read_text()
        lines = len(source.splitlines())
        if lines > MAX_MODULE_LINES:
            found[name] = lines
        for function, length in long_functions(source).items():
            found[f"{name}:{function}"] = length
    return found


def _function(lines: int, name: str = "work", docstring: int = 0, body: str = "x = 1") -> str:
    doc = ['    """', *["    text"] * max(docstring - 2, 0), '    """'] if docstring else []
    return "\n".join([f"def {name}(parser):", *doc, *[f"    {body}"] * (lines - 1 - len(doc))])


def test_a_long_function_is_found_and_its_docstring_does_not_count():
    assert long_functions(_function(MAX_FUNCTION_LINES)) == {}
    assert long_functions(_function(MAX_FUNCTION_LINES + 1)) == {"work": MAX_FUNCTION_LINES + 1}
    assert long_functions(_function(MAX_FUNCTION_LINES + 30, docstring=30)) == {}


def test_only_a_parser_builder_that_builds_a_parser_is_exempt():
    builder = _function(200, name="build_command_parser", body='parser.add_argument("--x")')
    assert long_functions(builder) == {}
    named_only = _function(200, name="build_command_parser")
    assert long_functions(named_only) == {"build_command_parser": 200}
    builds_only = _function(200, name="make_things", body='parser.add_argument("--x")')
    assert long_functions(builds_only) == {"make_things": 200}


def test_no_long_modules_or_functions():
    found = offenders()
    new = {name: lines for name, lines in found.items() if name not in KNOWN_OFFENDERS}
    assert new == {}, (
        f"modules over {MAX_MODULE_LINES} lines or functions over {MAX_FUNCTION_LINES} "
        f"(name: lines): {new}; split them along a natural seam"
    )
    gone = set(KNOWN_OFFENDERS) - set(found)
    assert gone == set(), f"no longer too long: {sorted(gone)}; remove from KNOWN_OFFENDERS"
