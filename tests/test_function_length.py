"""No function in r1lab/ is longer than 80 lines: a long loop becomes named steps, each testable
alone (as torchtune's recipes: a loop calls named steps). Counted from ``def`` (decorators
excluded) to the function's last line, docstring and comments included."""
import ast
from pathlib import Path

import r1lab

MAX_LINES = 80
PACKAGE = Path(r1lab.__file__).parent
# functions still over the limit, "<path relative to r1lab/>:<qualified name>": remove an entry
# when its function is split (the test fails on an entry that no longer needs to be here)
EXCEPTIONS: set[str] = set()


def long_functions() -> dict[str, int]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        stack = [(node, "") for node in tree.body]
        while stack:
            node, prefix = stack.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{node.name}"
                stack += [(child, f"{name}.") for child in ast.iter_child_nodes(node)]
                lines = node.end_lineno - node.lineno + 1
                if not isinstance(node, ast.ClassDef) and lines > MAX_LINES:
                    found[f"{path.relative_to(PACKAGE)}:{name}"] = lines
            else:
                stack += [(child, prefix) for child in ast.iter_child_nodes(node)]
    return found


def test_no_function_in_r1lab_is_over_80_lines():
    found = long_functions()
    too_long = {k: v for k, v in found.items() if k not in EXCEPTIONS}
    assert not too_long, f"functions over {MAX_LINES} lines (split them into named steps): {too_long}"
    assert not EXCEPTIONS - set(found), f"no longer over {MAX_LINES} lines, drop from EXCEPTIONS: {EXCEPTIONS - set(found)}"
