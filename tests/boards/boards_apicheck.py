"""What the esp32 port of MicroPython provides, read from the PyPI stub packages installed in the
venv (micropython-esp32-stubs, generated from the ESP32_GENERIC firmware itself, and the
micropython-stdlib-stubs it depends on), and a checker that holds source files to it.

A module exists on the esp32 port when the esp32 stubs have it, or when the stdlib stubs have it
and the esp32 stubs have its `u` alias (`uos.pyi` = "from os import *": the firmware has `os`).
A name in a module counts when
- the esp32 stub of the module defines it (functions, classes, constants, re-exports), or
- the module comes from the stdlib stubs (which start from CPython's typeshed) and the name is
  marked as MicroPython's there (a docstring from MicroPython's documentation, or
  @mp_available), or, for modules that are the same Python/extmod code on every port (not os,
  sys, time), the unix port's real module has it too.
"""
import ast
import functools
import json
import subprocess
from importlib.metadata import distribution
from pathlib import Path

from mpharness import MICROPYTHON

# Modules whose contents differ from port to port: only the stubs' MicroPython marks count.
PORT_SPECIFIC = {"os", "sys", "time"}


def _stub_files(dist_name, prefix=""):
    dist = distribution(dist_name)
    out = {}
    for f in dist.files:
        s = str(f)
        if not s.endswith(".pyi") or not s.startswith(prefix):
            continue
        rel = s[len(prefix):-4]
        name = rel[:-len("/__init__")] if rel.endswith("/__init__") else rel
        out[name.replace("/", ".")] = Path(dist.locate_file(f))
    return out


_ALL = {}


def _stub_files_any():
    """Every stub module of both packages, private helpers (_mpy_shed) included."""
    if not _ALL:
        _ALL.update(_stub_files("micropython-stdlib-stubs"))
        _ALL.update(_stub_files("micropython-esp32-stubs"))
    return _ALL


class StubModule:
    """Names defined by one stub module: {name: node}, star imports resolved."""

    def __init__(self, index, name, path):
        self.name = name
        self.path = path
        self.tree = ast.parse(path.read_text())
        self.names = {}
        self.imports = {}  # name -> module it is imported from (to follow class bases)
        self.index = index
        self._collect(self.tree.body)

    def _collect(self, body):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                # overloads repeat a name; keep a documented definition if there is one
                old = self.names.get(node.name)
                if old is None or not _documented(old):
                    self.names[node.name] = node
            elif isinstance(node, ast.Assign):
                for t in node.targets:
                    if isinstance(t, ast.Name):
                        self.names.setdefault(t.id, node)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                self.names.setdefault(node.target.id, node)
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.name == "*":
                        self._star(node)
                    elif alias.asname or node.level:
                        self.names.setdefault(alias.asname or alias.name, node)
                    elif node.module:
                        self.imports[alias.name] = node.module
            elif isinstance(node, ast.If):
                self._collect(node.body)
                self._collect(node.orelse)

    def _star(self, node):
        if node.level:
            base = self.name if self.path.name == "__init__.pyi" else self.name.rsplit(".", 1)[0]
            mod = base + ("." + node.module if node.module else "")
        else:
            mod = node.module
        other = self.index.module(mod)
        if other is None:
            return
        for k, v in other.names.items():
            if not k.startswith("_"):
                self.names.setdefault(k, v)


def _documented(node):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        if ast.get_docstring(node):
            return True
        for d in node.decorator_list:
            target = d.func if isinstance(d, ast.Call) else d
            if isinstance(target, ast.Name) and target.id == "mp_available":
                return True
        return False
    return True  # constants and re-exports


class Esp32Api:
    def __init__(self):
        self.esp32 = _stub_files("micropython-esp32-stubs")
        self.stdlib = _stub_files("micropython-stdlib-stubs", "stdlib/")
        self._mods = {}
        self._unix = {}

    def module(self, name):
        if name in self._mods:
            return self._mods[name]
        path = self.esp32.get(name) or self.stdlib.get(name)
        self._mods[name] = None
        if path is not None:
            self._mods[name] = StubModule(self, name, path)
        return self._mods[name]

    def has_module(self, name):
        if name in self.esp32:
            return True
        top = name.split(".")[0]
        return name in self.stdlib and ("u" + top) in self.esp32

    def has_name(self, module, name):
        if module + "." + name in self.esp32 and self.has_module(module + "." + name):
            return True  # a submodule
        stub = self.module(module)
        if stub is None:
            return False
        node = stub.names.get(name)
        if node is None:
            return False
        if module in self.esp32:
            return True  # generated from the esp32 firmware itself
        if _documented(node):
            return True
        if module in PORT_SPECIFIC:
            return False
        return name in self.unix_dir(module)

    def _stub_any(self, name):
        path = self.esp32.get(name) or self.stdlib.get(name)
        if path is None:
            path = _stub_files_any().get(name)
        if path is None:
            return None
        if name not in self._mods or self._mods[name] is None:
            self._mods[name] = StubModule(self, name, path)
        return self._mods[name]

    def class_members(self, module, cls, depth=0):
        """Names a class in a stub defines (with its bases, followed through the stubs'
        imports), or None if a base cannot be found (then its members cannot be checked)."""
        stub = self._stub_any(module)
        if stub is None or depth > 8:
            return None
        node = stub.names.get(cls)
        if node is None and cls in stub.imports:
            return self.class_members(stub.imports[cls], cls, depth + 1)
        if not isinstance(node, ast.ClassDef):
            return None
        out = set()
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                out.add(item.name)
            elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                out.add(item.target.id)
            elif isinstance(item, ast.Assign):
                out.update(t.id for t in item.targets if isinstance(t, ast.Name))
        for base in node.bases:
            if isinstance(base, ast.Name):
                inherited = self.class_members(module, base.id, depth + 1)
                if inherited is None:
                    return None
                out |= inherited
            else:
                return None
        return out

    def unix_dir(self, module):
        """dir() of the module on the real MicroPython unix port (empty if it has none)."""
        if module not in self._unix:
            code = ("import json\ntry:\n    import %s as m\n    print(json.dumps(dir(m)))\n"
                    "except ImportError:\n    print('[]')\n" % module)
            out = subprocess.run([MICROPYTHON, "-c", code], capture_output=True, text=True,
                                 timeout=60).stdout
            self._unix[module] = set(json.loads(out.strip().splitlines()[-1]))
        return self._unix[module]


@functools.lru_cache(maxsize=None)
def unix_has_module(name):
    code = "try:\n    import %s\n    print('yes')\nexcept ImportError:\n    print('no')\n" % name
    out = subprocess.run([MICROPYTHON, "-c", code], capture_output=True, text=True, timeout=60)
    return out.stdout.strip().endswith("yes")


# -- the checker -------------------------------------------------------------------------------

def _skipped_handlers(tree):
    """Nodes inside `except ImportError/AttributeError:` handlers: CPython fallbacks, by
    construction never run on MicroPython."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler) and node.type is not None:
            names = [node.type] if not isinstance(node.type, ast.Tuple) else node.type.elts
            if any(isinstance(n, ast.Name) and n.id in ("ImportError", "AttributeError")
                   for n in names):
                for stmt in node.body:
                    skip.update(id(n) for n in ast.walk(stmt))
    return skip


def check_source(api, source, filename, own, required=(), both_ports=False):
    """Problems (list of str) with the modules and attributes `source` uses. `own`: top-level
    module names that are ours; `required`: micropython-lib packages named by the manifest;
    `both_ports`: the module must also import on the unix port."""
    tree = ast.parse(source, filename)
    skip = _skipped_handlers(tree)
    problems = []
    bound = {}  # local name -> ("module", modname) or ("member", modname, name)

    def where(node):
        return "%s:%d" % (filename, node.lineno)

    def module_ok(mod, node):
        top = mod.split(".")[0]
        if top in own or top in required:
            return False  # ours or required: not checked against the port
        if not api.has_module(mod):
            problems.append("%s: module %r is not in the esp32 port" % (where(node), mod))
            return False
        if both_ports and not unix_has_module(mod):
            problems.append("%s: module %r is not in the unix port" % (where(node), mod))
        return True

    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if module_ok(alias.name, node):
                    if alias.asname:
                        bound[alias.asname] = ("module", alias.name)
                    else:
                        top = alias.name.split(".")[0]
                        bound[top] = ("module", top)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            if module_ok(node.module, node):
                for alias in node.names:
                    if not api.has_name(node.module, alias.name):
                        problems.append("%s: %s.%s is not in the esp32 port"
                                        % (where(node), node.module, alias.name))
                    else:
                        bound[alias.asname or alias.name] = ("member", node.module, alias.name)
    for node in ast.walk(tree):
        if id(node) in skip or not isinstance(node, ast.Attribute):
            continue
        chain = []
        cur = node
        while isinstance(cur, ast.Attribute):
            chain.append(cur.attr)
            cur = cur.value
        if not isinstance(cur, ast.Name) or cur.id not in bound:
            continue
        chain.reverse()
        kind = bound[cur.id]
        if kind[0] == "module":
            mod, i = kind[1], 0
            while i < len(chain) and api.has_module(mod + "." + chain[i]):
                mod, i = mod + "." + chain[i], i + 1  # a submodule (umqtt.simple)
            if i == len(chain):
                continue
            if not api.has_name(mod, chain[i]):
                problems.append("%s: %s.%s is not in the esp32 port" % (where(node), mod,
                                                                         chain[i]))
                continue
            cls, rest = chain[i], chain[i + 1:]
        else:
            mod, cls, rest = kind[1], kind[2], chain
        if rest:
            members = api.class_members(mod, cls)
            if members is not None and rest[0] not in members:
                problems.append("%s: %s.%s.%s is not in the esp32 port" % (where(node), mod, cls,
                                                                            rest[0]))
    return sorted(set(problems))
