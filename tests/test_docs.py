"""The documentation stands on its own and says what the code does: no reference to files outside
the repository, every link resolves, the signed-file envelope as documented is the one the code
reads, and the shipped example configurations are accepted by the commands that read them."""
import re
import struct
from pathlib import Path

from host_tools.depot import depotconfig
from host_tools.issuing import config_build
from validator import signedfile as sf

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


def test_docs_cite_nothing_outside_the_repository():
    for p in DOCS:
        text = p.read_text()
        for outside in ("MISSION.md", "/work/", "../shared"):
            assert outside not in text, "%s cites %s" % (p.name, outside)


def test_every_relative_link_resolves():
    broken = []
    for p in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", p.read_text()):
            if "://" in target:
                continue
            if not (p.parent / target).exists():
                broken.append("%s -> %s" % (p.relative_to(ROOT), target))
    assert broken == []


def test_the_envelope_is_documented_as_the_code_reads_it():
    text = (ROOT / "docs" / "signed-files.md").read_text()
    rows = re.findall(r"^\| (\d+) \| (\d+) \| (\w+) \| (\w+) \|", text, re.M)
    fields = [(int(off), int(size), name) for off, size, name, _ in rows]
    assert [f[2] for f in fields] == ["magic", "kind", "key_id", "version", "created", "body_len"]
    widths = [struct.calcsize(">" + c) for c in ("4s", "B", "H", "I", "I", "I")]
    assert [f[1] for f in fields] == widths
    assert [f[0] for f in fields] == [sum(widths[:i]) for i in range(len(widths))]
    assert sum(widths) == sf.HEADER_SIZE == struct.calcsize(sf.HEADER) == 19
    assert "`%s`" % sf.HEADER in text and sf.MAGIC.decode() in text
    kinds = {int(code): name for code, name in
             re.findall(r"^\| (\d) \| [\w ]+ \| `(\w+)` \|", text, re.M)}
    assert kinds == sf.KIND_NAMES
    assert str(sf.SIG_SIZE) + " bytes" in text


def test_the_examples_are_accepted():
    settings = config_build.settings(config_build.load_source(ROOT / "examples" / "config.toml"))
    assert settings["line"] in settings["fares"]
    config_build.body(config_build.load_source(ROOT / "examples" / "config.toml"))
    cfg = depotconfig.load(ROOT / "examples" / "depot.toml")
    assert cfg.day.zone == "Asia/Shanghai" and cfg.day.day_start_hour == 4
    assert cfg.operator_key == str(ROOT / "examples" / "operator.json")
