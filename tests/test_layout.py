"""The code's layering, checked from its imports (every import statement, also those inside
functions): nothing imports in a circle, and imports point one way.

Host tools (docs/design.md, "Layout"): `common` at the bottom; the jobs (`issuing`, `depot`,
`fleet`) use `common`; the back office uses the issuer's and the depot's tools; the simulator,
which plays every role, stands on top; `cli` sits above all. Firmware: `validator` imports only
itself (it knows nothing of pins), `drivers` only themselves and the reason codes, boards only
their own modules and the drivers (they know nothing of fares)."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> the packages it may import (besides itself)
HOST_ALLOWED = {
    "common": set(),
    "issuing": {"common"},
    "depot": {"common"},
    "fleet": {"common"},
    "backoffice": {"common", "issuing", "depot"},
    "sim": {"common", "issuing", "depot", "fleet", "backoffice"},
    "cli": {"common", "issuing", "depot", "fleet", "backoffice", "sim"},
}


def imports_of(path):
    """Absolute module names that `path` imports (from-imports give module.name too, so that
    `from pkg import module` counts as importing the module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            out.update(node.module + "." + a.name for a in node.names)
    return out


def host_modules():
    mods = {}
    for p in sorted((ROOT / "host_tools").rglob("*.py")):
        rel = p.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = p
    return mods


def firmware_modules():
    mods = {}
    for top in ("validator", "drivers"):
        for p in sorted((ROOT / "firmware" / top).glob("*.py")):
            mods[top if p.stem == "__init__" else top + "." + p.stem] = p
    return mods


def graph(mods):
    g = {}
    for name, path in mods.items():
        g[name] = {m for m in imports_of(path) if m in mods and m != name}
    return g


def cycles(g):
    """Every strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def package(mod):
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "cli"


@pytest.mark.parametrize("mods", [host_modules, firmware_modules], ids=["host", "firmware"])
def test_no_import_circles(mods):
    assert cycles(graph(mods())) == []


def test_host_imports_point_down():
    wrong = []
    for name, path in host_modules().items():
        if name == "host_tools":
            continue
        mine = package(name)
        assert mine in HOST_ALLOWED, "%s is in no known layer: add its package to HOST_ALLOWED" % name
        for m in imports_of(path):
            if not m.startswith("host_tools.") or m == "host_tools":
                continue
            theirs = package(m)
            if theirs != mine and theirs not in HOST_ALLOWED[mine]:
                wrong.append("%s imports %s" % (name, m))
    assert wrong == []


def test_firmware_layers():
    wrong = []
    for name, path in firmware_modules().items():
        for m in imports_of(path):
            top = m.split(".")[0]
            if name.startswith("validator") and top in ("drivers", "board", "machine", "pins"):
                wrong.append("%s imports %s" % (name, m))
            if name.startswith("drivers") and top == "validator" and m not in (
                    "validator", "validator.reasons"):
                wrong.append("%s imports %s" % (name, m))
    for path in sorted((ROOT / "boards").rglob("*.py")):
        for m in imports_of(path):
            if m.split(".")[0] == "validator":
                wrong.append("%s imports %s" % (path.relative_to(ROOT), m))
    assert wrong == []


def test_the_checks_see_a_circle_and_an_upward_import():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c"]]
    assert package("host_tools.issuing.issuer") == "issuing"
    assert "sim" not in HOST_ALLOWED["issuing"]
