"""The house rules a reader relies on: no import cycles, small modules and functions, key codes in one table."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("worldengine", "nodes")
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60


def _modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        parent = module.split(".") if is_package else module.split(".")[:-1]
        parent = parent[:len(parent) - (node.level - 1)]
        base = ".".join(parent + ([node.module] if node.module else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def import_graph(known: set[str]) -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its body (lazy imports included)."""
    graph = {}
    for module, path in _modules():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                targets.update(_resolve(module, path.name == "__init__.py", node))
        graph[module] = {t for t in targets if t in known and t != module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    return found


def test_no_import_cycles():
    known = {module for module, _ in _modules()}
    graph = import_graph(known)
    # a package importing its own submodules (its public face) is not a cycle of the design
    for module in graph:
        graph[module] = {t for t in graph[module] if not module.startswith(t + ".")}
    assert _cycles(graph) == []


def test_modules_and_functions_are_small():
    too_long = []
    for module, path in _modules():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{module}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{module}.{node.name}: {length} lines")
    assert too_long == []


def test_no_docstring_points_outside_the_repository():
    outside = re.compile(r"DESIGN(\.md)?\s*§|ENGINE_SPEC|\.\./shared")
    hits = [module for module, path in _modules() if outside.search(path.read_text())]
    assert hits == []


def test_web_key_codes_are_generated_from_the_python_table():
    import importlib.util
    spec = importlib.util.spec_from_file_location("gen_keycodes", ROOT / "tools" / "gen_keycodes.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert (ROOT / "web" / "keycodes.js").read_text() == generator.render(), "run python tools/gen_keycodes.py"
    assert "KEY_CODES" in (ROOT / "web" / "live_input.js").read_text()
