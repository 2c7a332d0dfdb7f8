"""Reads a board's manifest.py (MicroPython's manifest format) without a MicroPython checkout,
so that `fare deploy` copies exactly what a frozen build would freeze.

Understood: package(name, files=None, base_path="."), module(path, base_path="."),
require(name, ...), include(path) and metadata(...). Relative paths are relative to the
manifest's own folder, as in MicroPython's tools/manifestfile.py. Includes of the port's own
manifest ($(MPY_DIR)/...) are noted and skipped: the stock firmware already has those modules.
A package's data files (anything but .py, e.g. a table a module reads next to itself) are
deployed with it, also when `files` names its modules.
"""
import os
from dataclasses import dataclass, field
from pathlib import Path


class ManifestError(Exception):
    pass


@dataclass
class Manifest:
    files: list = field(default_factory=list)     # (source Path, target path on the device)
    data: list = field(default_factory=list)      # other files in the packages, same form
    requires: list = field(default_factory=list)  # micropython-lib packages, by name
    port_includes: list = field(default_factory=list)

    def modules(self):
        """Importable module names the manifest provides ("validator.app", "board", ...)."""
        out = set()
        for _, target in self.files:
            if target.endswith(".py"):
                name = target[:-3].replace("/", ".")
                if name.endswith(".__init__"):
                    name = name[:-len(".__init__")]
                out.add(name)
        return out


def read(path):
    path = Path(path).resolve()
    m = Manifest()
    _exec(path, m, set())
    return m


def _exec(path, m, seen):
    if path in seen:
        return
    seen.add(path)
    here = path.parent

    def resolve(p):
        return (here / p).resolve()

    def package(name, files=None, base_path=".", opt=None):
        base = resolve(base_path)
        root = base / name
        if not root.is_dir():
            raise ManifestError("%s: package %r not found in %s" % (path, name, base))
        if files is not None:
            for f in files:
                if not (root / f).is_file():
                    raise ManifestError("%s: package %r has no file %r" % (path, name, f))
                m.files.append((root / f, "%s/%s" % (name, f)))
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for f in sorted(filenames):
                src = Path(dirpath) / f
                if f.endswith(".py"):
                    if files is None:
                        m.files.append((src, src.relative_to(base).as_posix()))
                elif not f.startswith(".") and not f.endswith((".pyc", ".mpy")):
                    # data a module reads next to itself (a frozen build leaves these out)
                    m.data.append((src, src.relative_to(base).as_posix()))

    def module(name, base_path=".", opt=None):
        src = resolve(base_path) / name
        if not src.is_file():
            raise ManifestError("%s: module %r not found" % (path, str(src)))
        m.files.append((src, Path(name).name))

    def require(name, version=None, **kw):
        m.requires.append(name)

    def include(p, **kw):
        if "$(" in p:
            m.port_includes.append(p)
            return
        target = resolve(p)
        if target.is_dir():
            target = target / "manifest.py"
        _exec(target, m, seen)

    def metadata(**kw):
        pass

    code = path.read_text()
    g = {"package": package, "module": module, "require": require, "include": include,
         "metadata": metadata, "options": None}
    try:
        exec(compile(code, str(path), "exec"), g)
    except ManifestError:
        raise
    except Exception as e:  # noqa: BLE001 -- a broken manifest: say which and why
        raise ManifestError("%s: %s" % (path, e))
