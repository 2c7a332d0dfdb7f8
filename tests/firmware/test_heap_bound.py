"""After boot, no code path of the reader needs a free block over 1 KiB: the reader (validator.app
on the bench board, MicroPython) boots, its free heap is cut into holes of 1 KiB pinned apart
(boards/unix_sim/heapfrag.py), and then it decides taps and installs every kind of push through
its sync server (full deny lists of 5,000 and 50,000 entries, a delta, a key ring adding an issuer
key and building its table, a configuration). Every push must install and no tap may meet a
reader error."""
import json

from host_tools.issuing import denylist_build
from host_tools.common import signedfile as hsf
from host_tools.sim import simworld
from mpharness import compiled_tree, device_heap, run_mp
from validator import denylist as fw_denylist
from validator import signedfile as sf

T = 1795000000
DAY = 86400
HOLE = 1024
CONFIG = {"line": 5, "fares": {"5": {"adult": 180}}, "rules": {"passback_window": "0s"}}


def _accounts(first, n):
    return {(fw_denylist.TAG_ACCOUNT, fw_denylist.account_bytes(first + j)): 0 for j in range(n)}


def test_every_kind_of_push_and_taps_in_a_heap_cut_into_1k_holes(tmp_path):
    w = simworld.World(tmp_path / "world", T)
    w.add_issuer(1, T - DAY, T + 365 * DAY)
    w.add_issuer(2, T - DAY, T + 365 * DAY, in_ring=False)
    prov = w.provision_reader(1001, CONFIG)
    riders = [w.add_rider("r%d" % i, 100 + i, max_rides=10 ** 6, max_amount=10 ** 9)
              for i in range(12)]
    late = [w.add_rider("k2-%d" % i, 300 + i, key_id=2, max_rides=10 ** 6, max_amount=10 ** 9)
            for i in range(3)]
    files = tmp_path / "files"
    files.mkdir()

    def put(name, data):
        (files / name).write_bytes(data)
        return str(files / name)

    key, kid = w.operator_key, w.operator_kid
    small, _, _ = denylist_build.build_list(_accounts(10 ** 9, 5000), 1, key, kid, T)
    big_entries = _accounts(10 ** 10, 50_000)
    big, _, _ = denylist_build.build_list(big_entries, 2, key, kid, T)
    delta, _, _ = denylist_build.build_delta(big, 3, key, kid, add=_accounts(101, 1),
                                             remove=_accounts(10 ** 10, 100), created=T)
    w.key_entries[2] = w.issuers[2].entry(T - DAY, T + 365 * DAY)
    ring = w.keyring_file()
    config = w.config_file(dict(CONFIG, fares={"5": {"adult": 200}}))
    pushes = [("denylist", put("small.fvs", small)), ("denylist", put("big.fvs", big)),
              ("denylist_delta", put("delta.fvs", delta)), ("keyring", put("ring.fvs", ring)),
              ("config", put("config.fvs", config))]
    assert len(big) > 150_000

    steps = []
    for k, (kind, path) in enumerate(pushes):
        for i in range(8):
            r = riders[(8 * k + i) % len(riders)]
            steps.append(["qr", r.wallet.ride_code(T)])
        steps.append(["qr", late[k % 3].wallet.ride_code(T)])
        steps.append(["qr", "FV1:not a code"])
        steps.append(["push", kind, path])
        steps.append(["info"])
    for r in riders[:4] + late:
        steps.append(["qr", r.wallet.ride_code(T)])
    script = tmp_path / "script.jsonl"
    script.write_text("".join(json.dumps(s) + "\n" for s in steps))
    spec = {"flash": str(tmp_path / "flash.img"), "log": str(tmp_path / "log.img"),
            "blocks": 512, "prov": str(prov), "t": T, "script": str(script)}
    (tmp_path / "spec.json").write_text(json.dumps(spec))

    heap = device_heap(("validator.app", "validator.sync", "validator.denylist_update",
                        "validator.keyring", "validator.config", "validator.p256",
                        "validator.triplog", "validator.riderstate", "validator.policy",
                        "app_bench", "heapfrag"))
    out = run_mp("import heapbound_main", heap=heap, args=[tmp_path / "spec.json", HOLE],
                 path=compiled_tree(), timeout=600)
    got = json.loads(out.strip().splitlines()[-1])
    print("heap cut into 1 KiB holes:", got)
    assert got["largest_after_cut"] <= HOLE
    assert [(kind, st) for kind, st, _ in got["installs"]] == [
        ("denylist", "OK"), ("denylist", "OK"), ("denylist_delta", "OK"), ("keyring", "OK"),
        ("config", "OK")], got["installs"]
    assert got["versions"] == [3, 2, 2]
    assert got["fault"] is None and got["errors"] == 0
    taps = got["taps"]
    # accepted (OK, or ALREADY_VALIDATED: the day's clock stands still), issuer 2's riders once
    # its key was pushed; before that UNKNOWN_KEY; the garbage code MALFORMED; nothing else (no
    # READER_ERROR)
    accepted = taps.pop("OK", 0) + taps.pop("1", 0)
    assert (accepted, taps) == (40 + 1 + 3 + 4, {"12": 4, "10": 5}), got["taps"]
