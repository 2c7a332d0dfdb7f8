"""Host side of the deny list: the source format, the layout the builder chooses, the file
format round trip, multiset deltas, colliding fingerprints, and the `fare denylist` commands."""
import hashlib

import pytest

import denylist_testkit as kit
from clikit import fails
from host_tools import cli
from host_tools.common import ecsign, signedfile
from host_tools.issuing import denylist_build as db
from host_tools.issuing.issuer import IssuerStore
from validator import denylist as dl
from validator import signedfile as sf

NOW = kit.NOW
DAY = kit.DAY


# ---- source files ------------------------------------------------------------------------------

def test_source_lines_in_every_accepted_form():
    cred = "00112233445566778899aabbccddeeff"
    got = db.parse_source([
        "kind,id,expiry",
        "# a comment line",
        "",
        "account,42",
        "account, 0x10 ,  # hex, spaces, trailing comment and an empty expiry",
        "ACCOUNT,18446744073709551615,1750000000",
        "credential,%s,2025-07-01" % cred,
        "credential,%s,2025-07-01T12:30Z" % cred.upper().replace("FF", "FE"),
    ])
    assert got == {
        (dl.TAG_ACCOUNT, (42).to_bytes(8, "big")): 0,
        (dl.TAG_ACCOUNT, (16).to_bytes(8, "big")): 0,
        (dl.TAG_ACCOUNT, b"\xff" * 8): 1750000000,
        (dl.TAG_CREDENTIAL, bytes.fromhex(cred)): 1751328000,
        (dl.TAG_CREDENTIAL, bytes.fromhex(cred[:-2] + "fe")): 1751328000 + 12 * 3600 + 1800,
    }


@pytest.mark.parametrize("line,msg", [
    ("account", "expected kind,id"),
    ("account,1,2,3", "expected kind,id"),
    ("user,1", "unknown kind"),
    ("account,-1", "out of range"),
    ("account,18446744073709551616", "out of range"),
    ("account,12x", "not a number"),
    ("credential,00112233", "16 bytes"),
    ("credential,zz112233445566778899aabbccddeeff", "not hex"),
    ("account,1,tomorrow", "bad expiry"),
])
def test_source_errors_name_the_line(line, msg):
    with pytest.raises(db.SourceError) as e:
        db.parse_source(["account,1", line], "ids.csv")
    assert "ids.csv:2:" in str(e.value) and msg in str(e.value)


def test_an_id_listed_twice_keeps_the_later_expiry_and_never_beats_all():
    got = db.parse_source(["account,1,100", "account,1,300", "account,1,200",
                           "account,2,100", "account,2", "account,2,500"])
    assert got[kit.account(1)] == 300
    assert got[kit.account(2)] == 0


def test_source_written_and_read_back(tmp_path):
    ents = kit.population(50, 50, expiring_every=2)
    db.write_source(ents, tmp_path / "s.csv")
    assert db.read_source(tmp_path / "s.csv") == ents


# ---- layout and false-positive rate -------------------------------------------------------------

@pytest.mark.parametrize("n,bits", [(0, (0, 0)), (8, (0, 0)), (9, (1, 0)), (8192, (10, 0)),
                                    (8193, (10, 1)), (1_000_000, (10, 7)),
                                    (8 << 19, (10, 9))])
def test_layout_keeps_sub_buckets_near_eight_entries(n, bits):
    assert db.choose_bits(n) == bits
    g, s = bits
    assert n <= 8 << (g + s)
    m = db.ListModel(4, g, s, 0, bytes(8), [])
    assert m.fp_rate(n) <= 8 / 2 ** 24 < 1e-6        # per lookup of an unlisted id
    assert 4 * ((1 << g) + 1) <= 4100                 # the index the reader keeps in RAM


def test_too_many_entries_for_one_list():
    with pytest.raises(ValueError):
        db.choose_bits((8 << 19) + 1)   # 4.2M: more than the largest push carries


def test_width_is_four_only_when_something_expires():
    ents = kit.population(30, 30)
    _, m3, _ = kit.Operator().full(ents, 1)
    ents[kit.account(7)] = NOW + DAY
    data, m4, _ = kit.Operator().full(ents, 1)
    assert (m3.width, m4.width) == (3, 4)
    _, info = db.describe(data)
    assert info["width"] == 4 and info["count"] == 61


def test_encode_decode_round_trip_and_sizes():
    ents = kit.population(3000, 1000, expiring_every=5)
    data, model, _ = kit.Operator().full(ents, 9)
    h, m2 = db.read_list(data)
    assert h.version == 9 and m2.keys == model.keys and m2.salt == model.salt
    assert len(signedfile.unseal(data)[1]) == dl.list_body_size(4, model.gbits, model.sbits,
                                                                model.count)
    assert len(data) / model.count < 4.8     # (index and count tables weigh more when small)


def test_overfull_sub_bucket_is_refused():
    m = db.ListModel(3, 0, 0, 0, bytes(8), sorted(range(256, 256 * 257, 256)))
    with pytest.raises(db.BucketOverflow):
        m.encode()


def test_each_full_list_gets_a_fresh_salt_unless_given():
    op = kit.Operator()
    ents = kit.population(20, 0)
    a, b = op.full(ents, 1)[1], op.full(ents, 1)[1]
    assert a.salt != b.salt
    assert op.full(ents, 1, salt=b"\x01" * 8)[1].salt == b"\x01" * 8


# ---- deltas -------------------------------------------------------------------------------------

def test_diff_is_a_multiset_difference():
    base = db.ListModel(4, 0, 0, 0, bytes(8), [1, 2, 2, 2, 5])
    new = db.ListModel(4, 0, 0, 0, bytes(8), [2, 3, 5, 5])
    assert db.diff(base, new) == [(1, dl.OP_REMOVE), (2, dl.OP_REMOVE), (2, dl.OP_REMOVE),
                                  (3, dl.OP_ADD), (5, dl.OP_ADD)]


def test_delta_needs_a_newer_version():
    op = kit.Operator()
    base = op.full(kit.population(10, 0), 5)[0]
    with pytest.raises(ValueError):
        op.delta(base, 5, add={kit.account(1): 0})


def test_delta_records_and_promised_result():
    op = kit.Operator()
    ents = kit.population(500, 100)
    base, m1, _ = op.full(ents, 1)
    data, m2, rep = op.delta(base, 2, add={kit.account(1): 0},
                             remove={kit.account(kit.account_id(3)): 0})
    assert (rep["adds"], rep["removes"], rep["count"]) == (1, 1, 600)
    h, info = db.describe(data)
    assert (h.kind, info["base_version"], info["result_count"]) == (sf.DENYLIST_DELTA, 1, 600)
    assert info["result_digest"] == hashlib.sha256(m2.encode()).hexdigest()
    assert info["salt"] == m1.salt.hex()


def test_removing_an_id_the_base_lacks_is_an_error():
    op = kit.Operator()
    base = op.full(kit.population(10, 0), 1)[0]
    with pytest.raises(db.SourceError, match="not in the base"):
        op.delta(base, 2, remove={kit.account(10**9): 0})


def test_removing_an_expired_entry_is_quietly_done():
    op = kit.Operator()
    ents = {kit.account(1): NOW + DAY, kit.account(2): 0}
    base = op.full(ents, 1)[0]
    _, m2, rep = op.delta(base, 2, created=NOW + 2 * DAY, remove={kit.account(1): 0})
    assert rep["pruned_expired"] == 1 and m2.count == 1


def _colliding_accounts(salt):
    """Two account ids whose 24-bit fingerprints are equal under `salt` (a list of at most 8
    entries has no bucket bits, so they share the whole stored key): a birthday search."""
    seen = {}
    n = 0
    while True:
        fp = dl.hash_id(dl.TAG_ACCOUNT, salt, n.to_bytes(8, "big"))[3:6]
        if fp in seen:
            return seen[fp], n
        seen[fp] = n
        n += 1


def test_colliding_ids_are_two_entries_and_removing_one_keeps_the_other(tmp_path):
    """Fingerprint collisions among listed ids never cause a false negative: each id is its own
    entry, a delta removes one entry, and the reader still denies the other."""
    salt = b"\x05" * 8
    a, b = _colliding_accounts(salt)
    op = kit.Operator()
    ents = {kit.account(a): NOW + 3 * DAY, kit.account(b): NOW + 9 * DAY}
    base, m1, _ = op.full(ents, 1, salt=salt)
    assert m1.count == 2 and m1.keys[0] >> 8 == m1.keys[1] >> 8
    with pytest.raises(db.SourceError, match="shares its fingerprint"):
        op.delta(base, 2, remove={kit.account(a): 0})
    data, m2, _ = op.delta(base, 2, remove={kit.account(a): NOW + 3 * DAY})
    assert m2.count == 1
    lst = dl.DenyList(str(tmp_path / "deny"))
    (tmp_path / "b.fvs").write_bytes(base)
    (tmp_path / "d.fvs").write_bytes(data)
    assert lst.install(str(tmp_path / "b.fvs"), op.keys, NOW) == dl.OK
    assert lst.denied_account(a, NOW + 5 * DAY)          # b's entry still denies
    assert lst.install(str(tmp_path / "d.fvs"), op.keys, NOW) == dl.OK
    assert lst.denied_account(b, NOW + 5 * DAY)
    assert lst.denied_account(b, NOW + 8 * DAY)
    assert not lst.denied_account(b, NOW + 10 * DAY)     # ... until b's own expiry


# ---- the CLI ------------------------------------------------------------------------------------

def _key_file(tmp_path):
    key = ecsign.new_key()
    p = tmp_path / "op.pem"
    p.write_bytes(key.to_pem())
    return key, str(p)


def test_cli_build_show_delta(tmp_path, capsys):
    key, pem = _key_file(tmp_path)
    keys = {4: (ecsign.public_bytes(key), 0)}
    src = tmp_path / "ids.csv"
    src.write_text("account,1\naccount,2,%d\ncredential,%s\n" % (NOW + 5 * DAY, "ab" * 16))
    sign = ["--key", pem, "--key-id", "4", "--created", str(NOW)]
    assert cli.main(["denylist", "build", str(src), "--version", "7", "-o",
                     str(tmp_path / "v7.fvs")] + sign) == 0
    assert "3 entries" in capsys.readouterr().out
    opkey = ["--operator-key", "4:" + ecsign.public_bytes(key).hex()]
    assert cli.main(["denylist", "show", str(tmp_path / "v7.fvs"), "--now", str(NOW), *opkey,
                     "--check", "account:1", "--check", "account:3",
                     "--check", "credential:" + "ab" * 16]) == 0
    out = capsys.readouterr().out
    assert "version          7" in out and "count            3" in out
    assert "account:1 DENIED" in out and "account:3 not listed" in out
    assert "credential:%s DENIED" % ("ab" * 16) in out

    new = tmp_path / "new.csv"
    new.write_text("account,2,%d\naccount,9\n" % (NOW + 5 * DAY))
    assert cli.main(["denylist", "delta", str(tmp_path / "v7.fvs"), str(new), "--version", "8",
                     "-o", str(tmp_path / "d8.fvs"), "--write-full", str(tmp_path / "v8.fvs")]
                    + sign) == 0
    assert "+1 -2" in capsys.readouterr().out
    add = tmp_path / "add.csv"
    add.write_text("account,10\n")
    rm = tmp_path / "rm.csv"
    rm.write_text("account,9\n")
    assert cli.main(["denylist", "delta", str(tmp_path / "v8.fvs"), "--add", str(add),
                     "--remove", str(rm), "--version", "9", "-o", str(tmp_path / "d9.fvs")]
                    + sign) == 0
    capsys.readouterr()
    assert cli.main(["denylist", "show", str(tmp_path / "d9.fvs"), *opkey]) == 0
    out = capsys.readouterr().out
    assert "base_version     8" in out and "adds             1" in out

    # the reader takes v7, then both deltas, and ends with {2, 10}
    lst = dl.DenyList(str(tmp_path / "deny"))
    for f in ("v7", "d8", "d9"):
        assert lst.install(str(tmp_path / (f + ".fvs")), keys, NOW) == dl.OK, f
    assert lst.version == 9 and lst.count == 2
    assert [a for a in (1, 2, 9, 10) if lst.denied_account(a, NOW)] == [2, 10]


def test_cli_signs_with_the_issuer_directorys_operator_key(tmp_path, capsys):
    store = IssuerStore(tmp_path / "issuer")
    info = store.create_operator(key_id=12)
    src = tmp_path / "ids.csv"
    src.write_text("account,5\n")
    assert cli.main(["denylist", "build", str(src), "--version", "1", "-o",
                     str(tmp_path / "l.fvs"), "--issuer-dir", str(tmp_path / "issuer")]) == 0
    lst = dl.DenyList(str(tmp_path / "deny"))
    assert lst.install(str(tmp_path / "l.fvs"), store.operator_keys(), NOW) == dl.OK
    assert lst.key_id == info["key_id"] and lst.denied_account(5, NOW)


def test_cli_reports_source_errors_and_a_missing_key(tmp_path, capsys):
    src = tmp_path / "ids.csv"
    src.write_text("account,1\naccount,x\n")
    assert "ids.csv:2" in fails(capsys, "denylist", "build", src, "--version", "1",
                                "--issuer-dir", tmp_path / "none")
    src.write_text("account,1\n")
    assert "no operator key" in fails(capsys, "denylist", "build", src, "--version", "1",
                                      "--issuer-dir", tmp_path / "none")


def test_known_good_ids_steer_the_salt_away_from_false_positives():
    """A listed id's twin (same stored bits under a salt) is a false positive the back office
    can see coming: the builder draws another salt; a delta can only report it."""
    salt = b"\x05" * 8
    a, b = _colliding_accounts(salt)
    op = kit.Operator()
    listed = {kit.account(a): 0}
    good = [kit.account(b), kit.account(a)]          # a itself is listed: not a false positive
    _, m, _ = op.full(listed, 1, salt=salt)
    assert db.collisions(m, [kit.account(b)], NOW) == [kit.account(b)]
    data, m2, rep = db.build_list(listed, 1, op.key, op.key_id, NOW, known_good=good)
    assert m2.salt != salt and rep["known_good"] == 1 and rep["known_good_denied"] == 0
    assert not m2.denied(*kit.account(b), NOW) and m2.denied(*kit.account(a), NOW)
    base = op.full(listed, 1, salt=salt)[0]
    # (from an edit, the builder cannot tell a listed id from a twin: give only unlisted ids)
    _, _, rep = op.delta(base, 2, add={kit.account(9): 0}, known_good=[kit.account(b)])
    assert rep["known_good_denied"] == 1
