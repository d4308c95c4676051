"""The house rules of the source tree, read from the imports (ast, nothing is executed)."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Installed package -> folder of the repository (pyproject.toml's package-dir).
FOLDERS = {"monge.v1": "proto/monge/v1", "monge.solvers": "solvers", "monge.server": "server",
           "monge.client": "client"}
# The command line is the one place that joins the client library to the server.
JOINS_CLIENT_AND_SERVER = {"client/cli.py"}


def modules():
    """{module name: (path relative to ROOT, parsed tree)} of every hand-written module."""
    found = {}
    for package, folder in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name.endswith(("_pb2.py", "_pb2_grpc.py")):
                continue
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join((package, *parts))
            found[name] = (path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(), str(path)))
    return found


def imported(name, tree, *, top_level_only=False):
    """The modules a module imports (absolute names; `from a import b` yields a and a.b)."""
    package = name if tree_is_package(name) else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def tree_is_package(name):
    folder = FOLDERS.get(name)
    if folder:
        return True
    for package, folder in FOLDERS.items():
        if name.startswith(package + "."):
            return (ROOT / folder / name[len(package) + 1:].replace(".", "/") / "__init__.py").exists()
    return False


def test_the_server_never_imports_the_client():
    wrong = sorted(f"{path} imports {target}" for name, (path, tree) in modules().items()
                   if name.startswith("monge.server") for target in imported(name, tree)
                   if target == "monge.client" or target.startswith("monge.client."))
    assert not wrong, wrong


def test_the_client_library_never_imports_the_server():
    wrong = sorted(f"{path} imports {target}" for name, (path, tree) in modules().items()
                   if name.startswith("monge.client") and path not in JOINS_CLIENT_AND_SERVER
                   for target in imported(name, tree)
                   if target == "monge.server" or target.startswith("monge.server."))
    assert not wrong, wrong


def test_solvers_and_the_schema_import_neither_half():
    wrong = sorted(f"{path} imports {target}" for name, (path, tree) in modules().items()
                   if name.startswith(("monge.solvers", "monge.v1")) for target in imported(name, tree)
                   if target.startswith(("monge.server", "monge.client")))
    assert not wrong, wrong


def test_grpc_codes_are_written_by_name():
    """No `code=13`: the server's gRPC codes are the names in server/errors.py."""
    import re

    wrong = []
    for name, (path, _tree) in modules().items():
        if name.startswith("monge.server"):
            for number, line in enumerate((ROOT / path).read_text().splitlines(), 1):
                if re.search(r"\b(code|error_code)\s*(=|==|!=)\s*\d", line):
                    wrong.append(f"{path}:{number}: {line.strip()}")
    assert not wrong, wrong


def test_one_status_enumeration():
    """Solvers report `monge.solvers.status.Status`; no other enum of stop reasons."""
    wrong = [f"{path}: class {node.name}" for name, (path, tree) in modules().items()
             if name.startswith("monge.solvers") for node in ast.walk(tree)
             if isinstance(node, ast.ClassDef) and node.name.endswith("Status") and name != "monge.solvers.status"]
    assert not wrong, wrong


def test_no_import_circles():
    """No module reaches itself through imports, counting those inside functions (which
    only hide a circle). `from package import module` is an edge to the module alone."""
    found = modules()
    edges = {}
    for name, (_path, tree) in found.items():
        package = name if tree_is_package(name) else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                for alias in node.names:
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in found else base)
        edges[name] = sorted(t for t in targets if t in found and t != name)

    circles, state = [], {}

    def visit(module, trail):
        state[module] = "open"
        for target in edges[module]:
            if state.get(target) == "open":
                circles.append(" -> ".join(trail[trail.index(target):] + [target]))
            elif target not in state:
                visit(target, trail + [target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not circles, circles
