# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plan and apply one certificate in a certs dir (issuance.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import stat

import pytest

from cryptography.hazmat.primitives import serialization

from ansible_collections.crdb.tls.plugins.module_utils import authority, issuance, ledger, pki, rules
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

HOSTS = ["n1.example.com", "10.0.0.1"]


def _spec(profile="node", hosts=None, **kwargs):
    if profile == "client" and "user" not in kwargs:
        kwargs["user"] = "root"
    if profile in ("node", "node_server", "ui") and hosts is None:
        hosts = HOSTS
    return pki.build_spec(profile, hosts=hosts, **kwargs)


def _plan(certs_dir, spec, ca, **kwargs):
    kwargs.setdefault("key_type", "ecdsa")
    return issuance.plan(certs_dir, spec, ca, **kwargs)


def _ensure(certs_dir, spec, ca, **kwargs):
    return issuance.apply(_plan(certs_dir, spec, ca, **kwargs))


def _read(certs_dir, name):
    with open(os.path.join(certs_dir, name), "rb") as handle:
        return handle.read()


def _write(certs_dir, name, data):
    with open(os.path.join(certs_dir, name), "wb") as handle:
        handle.write(data)


def _chain(certs_dir, name="node.crt"):
    return pki.load_certificates(_read(certs_dir, name), name)


def _key(certs_dir, name="node.key"):
    return pki.load_private_key(_read(certs_dir, name), name)


def _mode(certs_dir, name):
    return stat.S_IMODE(os.stat(os.path.join(certs_dir, name)).st_mode)


def test_fresh_issue_then_no_change(certs_dir, ca):
    spec = _spec()
    plan = _plan(certs_dir, spec, ca)
    assert plan.reasons == ["node.key is missing", "node.crt is missing"]
    assert plan.changed and sorted(f[0] for f in plan.files) == ["node.crt", "node.key"]
    assert os.listdir(certs_dir) == []  # planning writes nothing
    issuance.apply(plan)
    assert sorted(os.listdir(certs_dir)) == ["node.crt", "node.key"]
    assert _mode(certs_dir, "node.crt") == 0o644 and _mode(certs_dir, "node.key") == 0o600
    chain = _chain(certs_dir)
    assert len(chain) == 1 and pki.keys_match(chain[0], _key(certs_dir))
    assert pki.verify_chain(chain[0], [], [ca.certificate]) is None
    assert pki.drift(chain[0], spec) == []
    result = plan.result()
    assert result["issued"] is True and result["files_written"] == ["node.crt", "node.key"]
    assert result["fingerprint_sha256"] == pki.fingerprint(chain[0])
    assert result["cert_file"] == os.path.join(certs_dir, "node.crt")

    again = _plan(certs_dir, spec, ca)
    assert again.changed is False and again.reasons == [] and again.files == []
    assert again.issued is None
    assert pki.fingerprint(again.certificate) == pki.fingerprint(chain[0])
    assert again.result()["changed"] is False


def _remove(name):
    def damage(certs_dir, ctx):
        os.unlink(os.path.join(certs_dir, name))
    return damage


def _garbage(name):
    def damage(certs_dir, ctx):
        _write(certs_dir, name, b"this is not PEM\n")
    return damage


def _other_key(certs_dir, ctx):
    _write(certs_dir, "node.key", pki.private_key_pem(ctx["mk"].ec()))


def _nothing(certs_dir, ctx):
    pass


# name, damage, plan kwargs, expected reasons (regexes, in order), new key expected, settles after apply
REASONS = [
    ("cert missing", _remove("node.crt"), {}, [r"node\.crt is missing"], True, True),
    ("key missing", _remove("node.key"), {}, [r"node\.key is missing"], True, True),
    ("cert unreadable", _garbage("node.crt"), {},
     [r"node\.crt is unreadable: {dir}/node\.crt: no PEM block found \(is this a certificate file\?\)"], True, True),
    ("key unreadable", _garbage("node.key"), {},
     [r"node\.key is unreadable: {dir}/node\.key: not a readable PEM private key \(.*\)"], True, True),
    ("key mismatch", _other_key, {}, [r"node\.key does not match node\.crt"], True, True),
    ("SAN drift", _nothing, {"spec": {"hosts": HOSTS + ["n2.example.com"]}},
     [r"node\.crt: SANs differ \(missing n2\.example\.com\)"], True, True),
    ("profile drift", _nothing, {"spec": {"profile": "node_server"}},
     [r"node\.crt: common name is 'node', want 'n1\.example\.com'",
      r"node\.crt: extended key usage is serverAuth,clientAuth, want serverAuth \(profile node_server\)"], True, True),
    ("key type", _nothing, {"key_type": "rsa", "key_size": 2048},
     [r"key type changes from ECDSA P-256 to RSA 2048"], True, True),
    ("renew_before", _nothing, {"renew_before": "99%"},
     [r"node\.crt expires on \d{4}-\d\d-\d\d \d\d:\d\d UTC: \d+d left of \d+d, inside the 99% \(\d+d\) window"],
     True, False),
    ("forced", _nothing, {"force": True}, [r"forced"], True, False),
    ("OCSP URL", _nothing, {"spec": {"ocsp_url": "http://ocsp.example.com/"}},
     [r"node\.crt: OCSP URL is absent, want \['http://ocsp\.example\.com/'\]"], True, True),
]


@pytest.mark.parametrize("damage, kwargs, expected, new_key, settles",
                         [r[1:] for r in REASONS], ids=[r[0] for r in REASONS])
def test_regeneration_reasons(certs_dir, ca, mk, damage, kwargs, expected, new_key, settles):
    kwargs = dict(kwargs)
    spec_kwargs = {"lifetime": "10d"}
    spec_kwargs.update(kwargs.pop("spec", {}))
    _ensure(certs_dir, _spec(lifetime="10d"), ca)
    old_cert, old_key = _read(certs_dir, "node.crt"), _read(certs_dir, "node.key")
    damage(certs_dir, {"mk": mk})
    spec = _spec(**spec_kwargs)
    plan = _plan(certs_dir, spec, ca, **kwargs)
    assert len(plan.reasons) == len(expected), plan.reasons
    for reason, pattern in zip(plan.reasons, expected):
        assert re.fullmatch(pattern.replace("{dir}", re.escape(certs_dir)), reason), reason
    assert plan.issued is not None
    issuance.apply(plan)
    assert _read(certs_dir, "node.crt") != old_cert
    assert (_read(certs_dir, "node.key") != old_key) is new_key
    leaf = _chain(certs_dir)[0]
    assert pki.keys_match(leaf, _key(certs_dir))
    assert pki.drift(leaf, spec) == []
    assert pki.verify_chain(leaf, [], [ca.certificate]) is None
    if "key_type" in kwargs:
        assert pki.key_spec_of(_key(certs_dir)) == ("rsa", 2048)
    replan = _plan(certs_dir, spec, ca, **kwargs)
    assert (replan.reasons == []) is settles


def test_not_signed_by_current_ca_after_rotation(certs_dir, pki_dir):
    authority.ensure(pki_dir, key_type="ecdsa")
    first = authority.load(pki_dir, "ca")
    _ensure(certs_dir, _spec(), first)
    authority.ensure(pki_dir, key_type="ecdsa", force=True)
    second = authority.load(pki_dir, "ca")
    plan = _plan(certs_dir, _spec(), second)
    assert plan.reasons == ["node.crt is not signed by the current CA CN=Cockroach CA,O=Cockroach "
                            "(issuer CN=Cockroach CA,O=Cockroach)"]
    issuance.apply(plan)
    leaf = _chain(certs_dir)[0]
    assert pki.issued_by(leaf, second.certificate) and not pki.issued_by(leaf, first.certificate)
    # the rotation bundle still trusts it through the new root
    assert pki.verify_chain(leaf, [], second.roots) is None


def test_reuse_key_keeps_the_key(certs_dir, ca):
    _ensure(certs_dir, _spec(), ca)
    old_key, old_cert = _read(certs_dir, "node.key"), _read(certs_dir, "node.crt")
    plan = _plan(certs_dir, _spec(hosts=HOSTS + ["n9"]), ca, reuse_key=True)
    assert plan.reasons == ["node.crt: SANs differ (missing n9)"]
    assert [f[0] for f in plan.files] == ["node.crt"]
    issuance.apply(plan)
    assert _read(certs_dir, "node.key") == old_key
    assert _read(certs_dir, "node.crt") != old_cert
    assert pki.keys_match(_chain(certs_dir)[0], _key(certs_dir))
    # ... but not a key of the wrong type
    plan = _plan(certs_dir, _spec(hosts=HOSTS + ["n9"]), ca, reuse_key=True, key_size=384)
    assert plan.reasons == ["key type changes from ECDSA P-256 to ECDSA P-384"]
    issuance.apply(plan)
    assert pki.key_spec_of(_key(certs_dir)) == ("ecdsa", 384)


def test_pkcs8_copy(certs_dir, ca):
    spec = _spec("client", user="maxroach")
    plan = _plan(certs_dir, spec, ca, pkcs8=True)
    assert sorted(f[0] for f in plan.files) == ["client.maxroach.crt", "client.maxroach.key",
                                                "client.maxroach.key.pk8"]
    issuance.apply(plan)
    der = _read(certs_dir, "client.maxroach.key.pk8")
    pk8 = serialization.load_der_private_key(der, password=None)
    key = _key(certs_dir, "client.maxroach.key")
    assert pki.public_key_bytes(pk8.public_key()) == pki.public_key_bytes(key.public_key())
    assert der == key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    assert _mode(certs_dir, "client.maxroach.key.pk8") == 0o600
    assert _plan(certs_dir, spec, ca, pkcs8=True).changed is False

    os.unlink(os.path.join(certs_dir, "client.maxroach.key.pk8"))
    plan = _plan(certs_dir, spec, ca, pkcs8=True)
    assert plan.reasons == ["client.maxroach.key.pk8 is missing or does not hold client.maxroach.key"]
    assert [f[0] for f in plan.files] == ["client.maxroach.key.pk8"]
    issuance.apply(plan)
    assert _read(certs_dir, "client.maxroach.key.pk8") == der


def test_pkcs8_mode_drift_is_fixed(certs_dir, ca):
    spec = _spec("client", user="maxroach")
    _ensure(certs_dir, spec, ca, pkcs8=True)
    os.chmod(os.path.join(certs_dir, "client.maxroach.key.pk8"), 0o644)
    plan = _plan(certs_dir, spec, ca, pkcs8=True)
    assert plan.reasons == ["client.maxroach.key.pk8: mode is 0644, want 0600"]
    issuance.apply(plan)
    assert _mode(certs_dir, "client.maxroach.key.pk8") == 0o600


def test_mode_drift_is_fixed_in_place(certs_dir, ca):
    _ensure(certs_dir, _spec(), ca)
    before = _read(certs_dir, "node.key"), _read(certs_dir, "node.crt")
    os.chmod(os.path.join(certs_dir, "node.key"), 0o644)
    os.chmod(os.path.join(certs_dir, "node.crt"), 0o600)
    plan = _plan(certs_dir, _spec(), ca)
    assert plan.reasons == ["node.crt: mode is 0600, want 0644", "node.key: mode is 0644, want 0600"]
    assert plan.changed and plan.files == [] and plan.issued is None
    issuance.apply(plan)
    assert _mode(certs_dir, "node.key") == 0o600 and _mode(certs_dir, "node.crt") == 0o644
    assert (_read(certs_dir, "node.key"), _read(certs_dir, "node.crt")) == before
    assert _plan(certs_dir, _spec(), ca).changed is False


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing file owners needs root")


@needs_root
def test_owner_and_group(certs_dir, ca):
    spec = _spec()
    _ensure(certs_dir, spec, ca, owner=65534, group=65534)
    for name in ("node.crt", "node.key"):
        st = os.stat(os.path.join(certs_dir, name))
        assert (st.st_uid, st.st_gid) == (65534, 65534)
    assert _mode(certs_dir, "node.key") == 0o600
    os.chown(os.path.join(certs_dir, "node.key"), 0, 0)
    plan = _plan(certs_dir, spec, ca, owner=65534, group=65534)
    assert plan.reasons == ["node.key: owner uid is 0, want 65534 (65534), group gid is 0, want 65534 (65534)"]
    issuance.apply(plan)
    st = os.stat(os.path.join(certs_dir, "node.key"))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 65534, 0o600)


@needs_root
def test_root_owned_group_readable_key(certs_dir, ca):
    """key_owner root + the cockroach group: 0640, the one group-readable mode CockroachDB accepts."""
    _ensure(certs_dir, _spec(), ca, owner=65534, group=65534, key_owner="root", key_group=65534)
    st = os.stat(os.path.join(certs_dir, "node.key"))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 65534, 0o640)
    assert rules.key_mode_problem(st.st_mode, st.st_uid, st.st_gid, 65534) is None


@needs_root
@pytest.mark.parametrize("key_group", ["root", 0, "0", None])
def test_root_owned_key_of_group_root_stays_0600(certs_dir, ca, key_group):
    """Group-readable is only worth it for the cockroach group; root's group gets 0600."""
    _ensure(certs_dir, _spec(), ca, key_owner="root", key_group=key_group)
    assert _mode(certs_dir, "node.key") == 0o600


def test_ca_bundle_install(certs_dir, ca, other_ca):
    bundle = pki.certificates_pem([ca.certificate])
    plan = _plan(certs_dir, _spec(), ca, ca_bundle=("ca.crt", bundle))
    assert plan.reasons == ["node.key is missing", "node.crt is missing", "ca.crt is missing"]
    issuance.apply(plan)
    assert _read(certs_dir, "ca.crt") == bundle and _mode(certs_dir, "ca.crt") == 0o644
    assert _plan(certs_dir, _spec(), ca, ca_bundle=("ca.crt", bundle)).changed is False
    rotated = pki.certificates_pem([ca.certificate, other_ca.certificate])
    plan = _plan(certs_dir, _spec(), ca, ca_bundle=("ca.crt", rotated))
    assert plan.reasons == ["ca.crt differs from the CA's trust bundle"]
    assert [f[0] for f in plan.files] == ["ca.crt"]
    issuance.apply(plan)
    assert _read(certs_dir, "ca.crt") == rotated


def test_intermediates_follow_the_leaf(certs_dir, intermediate, org_root):
    signer = pki.load_ca(pki.certificates_pem([intermediate.certificate, org_root.certificate]),
                         pki.private_key_pem(intermediate.key), "chain.pem", "int.key")
    _ensure(certs_dir, _spec(), signer)
    chain = _chain(certs_dir)
    assert [pki.fingerprint(c) for c in chain[1:]] == [pki.fingerprint(intermediate.certificate)]
    assert pki.chain_order_problem(chain) is None
    assert pki.verify_chain(chain[0], chain[1:], [org_root.certificate]) is None
    assert _plan(certs_dir, _spec(), signer).changed is False
    # a node.crt without the intermediate is re-issued with it
    _write(certs_dir, "node.crt", pki.certificates_pem(chain[:1]))
    plan = _plan(certs_dir, _spec(), signer)
    assert plan.reasons == ["node.crt does not carry the CA's intermediates after the leaf"]
    issuance.apply(plan)
    assert len(_chain(certs_dir)) == 2


def test_ledger_record(certs_dir, pki_dir, ca):
    index = os.path.join(pki_dir, "ca.index.txt")
    plan = issuance.apply(_plan(certs_dir, _spec(), ca, index_path=index))
    rows = ledger.read_index(index)
    assert [r[3] for r in rows] == [pki.serial_hex(plan.issued)]
    assert rows[0][5] == "/O=Cockroach/CN=node"
    issuance.apply(_plan(certs_dir, _spec(), ca, index_path=index))
    assert len(ledger.read_index(index)) == 1
    forced = issuance.apply(_plan(certs_dir, _spec(), ca, index_path=index, force=True))
    assert [r[3] for r in ledger.read_index(index)] == [pki.serial_hex(plan.issued), pki.serial_hex(forced.issued)]


def test_public_key_from_csr(certs_dir, ca, mk):
    spec = _spec()
    key = mk.ec()
    public_key = pki.csr_public_key(pki.make_csr(spec, key), "node.csr")
    plan = _plan(certs_dir, spec, ca, public_key=public_key)
    assert plan.reasons == ["node.crt is missing"]
    assert [f[0] for f in plan.files] == ["node.crt"]
    issuance.apply(plan)
    assert os.listdir(certs_dir) == ["node.crt"]
    assert pki.keys_match(_chain(certs_dir)[0], key)
    assert _plan(certs_dir, spec, ca, public_key=public_key).changed is False
    other = mk.ec().public_key()
    plan = _plan(certs_dir, spec, ca, public_key=other)
    assert plan.reasons == ["node.crt does not carry the requested public key"]
    issuance.apply(plan)
    assert pki.public_key_bytes(_chain(certs_dir)[0].public_key()) == pki.public_key_bytes(other)


def test_missing_certs_dir_named(tmp_path, ca):
    missing = str(tmp_path / "no-such-dir")
    with pytest.raises(CrdbTlsError, match=r"^certs_dir %s does not exist" % re.escape(missing)):
        _plan(missing, _spec(), ca)


def test_diff_summary(certs_dir, ca):
    first = issuance.apply(_plan(certs_dir, _spec(), ca))
    plan = _plan(certs_dir, _spec(hosts=["n2"]), ca)
    diff = issuance.diff(plan)
    assert diff["before"]["sans"] == HOSTS and diff["after"]["sans"] == ["n2"]
    assert diff["before"]["serial"] == pki.serial_hex(first.issued)
    assert "BEGIN" not in repr(diff)  # no key material
