# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keys made on the nodes: node_keys on the host, fleet.issue_from_csrs on the controller, installer
with certificates only. Real crypto (ECDSA for speed); the flow is the one the roles run."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import stat

import pytest

from ansible_collections.crdb.tls.plugins.module_utils import (authority, certsdir, fileio, fleet, installer,
                                                               node_keys, pki, rules, stamp)
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

SANS = ["n1.example.com", "127.0.0.1"]


def signer_pem(pki_dir, role="ca"):
    return fileio.read_file(authority.paths(pki_dir, role)["signer"]).decode("ascii")


def issuers(pki_dir, layout):
    out = {"ca": signer_pem(pki_dir)}
    if layout == "split_ca":
        out["client_ca"] = signer_pem(pki_dir, "client_ca")
    return out


def make_pki(pki_dir, layout):
    authority.ensure(pki_dir, "ca", key_type="ecdsa")
    if layout == "split_ca":
        authority.ensure(pki_dir, "client_ca", key_type="ecdsa")


def node_round(pki_dir, certs_dir, layout="standard", users=("root",), now=None, rotate=None, renew_before="30d",
               **kwargs):
    """One run of the role: keys and CSRs on the node, signing on the controller, install on the node."""
    wanted = node_keys.wanted(layout=layout, hosts=SANS, users=list(users))
    made = node_keys.ensure(certs_dir, wanted, issuers=issuers(pki_dir, layout), key_type="ecdsa",
                            renew_before=renew_before, rotate=rotate, now=now, **kwargs)
    issued = fleet.issue(pki_dir, layout, nodes={"n1": {"sans": SANS}}, users=list(users), key_location="node",
                         csrs={"n1": made["csrs"]}, renew_before=renew_before, now=now)
    src = issued["hosts"]["n1"]["dir"]
    certs = dict((n, fileio.read_file(os.path.join(src, n))) for n in stamp.shipped_names(src))
    installed = installer.install(certs_dir, certs, {}, layout=layout, expected_hosts=SANS)
    return made, issued, installed


def private_key_files(root):
    found = []
    for base, _dirs, files in os.walk(root):
        for name in files:
            if b"PRIVATE KEY" in fileio.read_file(os.path.join(base, name)):
                found.append(os.path.relpath(os.path.join(base, name), root))
    return found


@pytest.mark.parametrize("layout", ["standard", "split_node", "split_ca"])
def test_first_run_then_nothing_to_do(pki_dir, certs_dir, layout):
    make_pki(pki_dir, layout)
    made, issued, installed = node_round(pki_dir, certs_dir, layout)
    expected = set(rules.layout_files(layout)) - set(rules.CA_ROLES.values()) | {"client.root.crt"}
    assert set(made["csrs"]) == expected
    assert all(v.startswith("-----BEGIN CERTIFICATE REQUEST-----") for v in made["csrs"].values())
    assert set(made["keys_written"]) == set(node_keys.pending_key_name(rules.key_name(n)) for n in expected)
    assert made["changed"] and issued["changed"] and installed["changed"]
    # Only certificates on the controller; the keys are in place on the node, the pending names gone.
    assert sorted(private_key_files(pki_dir)) == sorted(
        os.path.basename(authority.paths(pki_dir, r)["key"]) for r in (["ca", "client_ca"] if layout == "split_ca"
                                                                       else ["ca"]))
    names = set(os.listdir(certs_dir))
    assert set(rules.key_name(n) for n in expected) <= names
    assert not [n for n in names if n.startswith(node_keys.PENDING_PREFIX)]
    report = certsdir.inspect(certs_dir, layout=layout, expected_hosts=SANS)
    assert report["problems"] == []
    for name in expected:
        assert stat.S_IMODE(os.stat(os.path.join(certs_dir, rules.key_name(name))).st_mode) == 0o600
    # Second run: no CSR, no key, no new certificate, nothing installed.
    made2, issued2, installed2 = node_round(pki_dir, certs_dir, layout)
    assert made2["csrs"] == {} and made2["keys_written"] == [] and not made2["changed"], made2["reasons"]
    assert not issued2["changed"] and issued2["issued_count"] == 0
    assert not installed2["changed"]
    assert all(c["status"] == "valid" for c in made2["certificates"].values())


def test_no_key_material_in_results(pki_dir, certs_dir):
    make_pki(pki_dir, "standard")
    made, issued, installed = node_round(pki_dir, certs_dir)
    text = repr(made) + repr(issued) + repr(installed)
    assert "PRIVATE KEY" not in text
    key_pem = fileio.read_file(os.path.join(certs_dir, "node.key")).decode("ascii")
    body = "".join(key_pem.splitlines()[1:-1])
    assert body[:40] not in text


def test_renewal_keeps_the_key(pki_dir, certs_dir):
    make_pki(pki_dir, "standard")
    node_round(pki_dir, certs_dir)
    key_before = fileio.read_file(os.path.join(certs_dir, "node.key"))
    cert_before = fileio.read_file(os.path.join(certs_dir, "node.crt"))
    # A window of 99.99% of the lifetime (1831d with back-dating): every certificate just issued is due.
    made, _issued, installed = node_round(pki_dir, certs_dir, renew_before="99.99%")
    assert "node.crt" in made["csrs"] and made["keys_written"] == []
    assert any(re.search(r"node\.crt expires on .*: \d+d left of \d+d, inside the 99\.99% \(\d+d\) window", r)
               for r in made["reasons"]), made["reasons"]
    assert fileio.read_file(os.path.join(certs_dir, "node.key")) == key_before
    assert fileio.read_file(os.path.join(certs_dir, "node.crt")) != cert_before
    assert installed["changed"]


def test_rotation_on_request_swaps_key_and_cert_together(pki_dir, certs_dir):
    make_pki(pki_dir, "standard")
    node_round(pki_dir, certs_dir)
    key_before = fileio.read_file(os.path.join(certs_dir, "node.key"))
    made = node_keys.ensure(certs_dir, node_keys.wanted(layout="standard", hosts=SANS), key_type="ecdsa",
                            issuers=issuers(pki_dir, "standard"), rotate=["node.crt"])
    assert made["keys_written"] == [".crdb-tls-next.node.key"]
    assert any("rotation requested" in r for r in made["reasons"])
    # Until the certificate comes, the old pair stays in place and still matches.
    assert fileio.read_file(os.path.join(certs_dir, "node.key")) == key_before
    assert certsdir.inspect(certs_dir, layout="standard")["problems"] == []
    pending = os.path.join(certs_dir, ".crdb-tls-next.node.key")
    assert stat.S_IMODE(os.stat(pending).st_mode) == 0o600
    # A second call while waiting reuses the waiting key (no new one), and asks again.
    again = node_keys.ensure(certs_dir, node_keys.wanted(layout="standard", hosts=SANS), key_type="ecdsa",
                             issuers=issuers(pki_dir, "standard"), rotate=["node.crt"])
    assert again["keys_written"] == []
    assert pki.public_key_bytes(pki.csr_public_key(again["csrs"]["node.crt"].encode(), "again")) == \
        pki.public_key_bytes(pki.csr_public_key(made["csrs"]["node.crt"].encode(), "first"))
    waiting = fileio.read_file(pending)
    issued = fleet.issue(pki_dir, "standard", nodes={"n1": {"sans": SANS}}, users=[], key_location="node",
                         csrs={"n1": made["csrs"]})
    src = issued["hosts"]["n1"]["dir"]
    installer.install(certs_dir, {"node.crt": fileio.read_file(os.path.join(src, "node.crt"))}, {},
                      layout="standard")
    assert fileio.read_file(os.path.join(certs_dir, "node.key")) == waiting
    assert not os.path.exists(pending)
    assert certsdir.inspect(certs_dir, layout="standard")["problems"] == []


def test_new_ca_requests_again_with_the_same_key(pki_dir, certs_dir):
    make_pki(pki_dir, "standard")
    node_round(pki_dir, certs_dir, users=())
    key_before = fileio.read_file(os.path.join(certs_dir, "node.key"))
    authority.ensure(pki_dir, "ca", key_type="ecdsa", force=True)
    made, _issued, _installed = node_round(pki_dir, certs_dir, users=())
    assert any("not signed by the current CA" in r for r in made["reasons"])
    assert made["keys_written"] == []
    assert fileio.read_file(os.path.join(certs_dir, "node.key")) == key_before
    assert certsdir.inspect(certs_dir, layout="standard")["problems"] == []


def test_missing_key_is_remade_and_a_drifted_mode_fixed(pki_dir, certs_dir):
    make_pki(pki_dir, "standard")
    node_round(pki_dir, certs_dir)
    os.unlink(os.path.join(certs_dir, "client.root.key"))
    os.chmod(os.path.join(certs_dir, "node.key"), 0o644)
    made, _issued, _installed = node_round(pki_dir, certs_dir)
    assert set(made["csrs"]) == {"client.root.crt"}
    assert "node.key: mode is 0644, want 0600" in made["reasons"]
    assert stat.S_IMODE(os.stat(os.path.join(certs_dir, "node.key")).st_mode) == 0o600
    assert certsdir.inspect(certs_dir, layout="standard")["problems"] == []


def test_check_mode_writes_nothing(pki_dir, tmp_path):
    make_pki(pki_dir, "standard")
    missing = str(tmp_path / "nothing-yet")
    made = node_keys.ensure(missing, node_keys.wanted(layout="standard", hosts=SANS), key_type="ecdsa",
                            check_mode=True)
    assert made["changed"] and made["csrs"] == {} and not os.path.exists(missing)
    assert made["certificates"]["node.crt"]["status"] == "requested"
    os.mkdir(missing, 0o700)
    made = node_keys.ensure(missing, node_keys.wanted(layout="standard", hosts=SANS), key_type="ecdsa",
                            check_mode=True)
    assert made["changed"] and os.listdir(missing) == []


def test_key_type_change_makes_a_new_key(pki_dir, certs_dir):
    make_pki(pki_dir, "standard")
    node_round(pki_dir, certs_dir, users=())
    made = node_keys.ensure(certs_dir, node_keys.wanted(layout="standard", hosts=SANS), key_type="ecdsa",
                            key_size=384, issuers=issuers(pki_dir, "standard"))
    assert "key type changes from ECDSA P-256 to ECDSA P-384" in made["reasons"]
    assert made["keys_written"] == [".crdb-tls-next.node.key"]


def test_root_owned_keys_get_0640(pki_dir, certs_dir):
    if os.geteuid() != 0:
        pytest.skip("needs root to give keys to root with another group")
    make_pki(pki_dir, "standard")
    made = node_keys.ensure(certs_dir, node_keys.wanted(layout="standard", hosts=SANS), key_type="ecdsa",
                            key_owner="root", key_group="1")
    st = os.stat(os.path.join(certs_dir, made["keys_written"][0]))
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 0, 1)


def test_install_refuses_a_certificate_no_host_key_matches(pki_dir, certs_dir, ca, mk):
    make_pki(pki_dir, "standard")
    node_round(pki_dir, certs_dir, users=())
    stranger, _key, _spec = mk.leaf(ca, "node", hosts=SANS)
    before = sorted(os.listdir(certs_dir))
    with pytest.raises(CrdbTlsError, match=r"refusing to install node.crt into .*: it comes without its key and no "
                                           r"key on the host matches it \(node.key does not match it; "
                                           r"\.crdb-tls-next\.node\.key is missing\)"):
        installer.install(certs_dir, {"node.crt": pki.certificates_pem([stranger])}, {}, layout="standard")
    assert sorted(os.listdir(certs_dir)) == before


def test_controller_refuses_bad_csrs(pki_dir, certs_dir):
    make_pki(pki_dir, "standard")
    made = node_keys.ensure(certs_dir, node_keys.wanted(layout="standard", hosts=SANS), key_type="ecdsa")
    nodes = {"n1": {"sans": SANS}}
    with pytest.raises(CrdbTlsError, match="host n1 sent a CSR for ui.crt, which it does not get"):
        fleet.issue(pki_dir, "standard", nodes=nodes, users=[], key_location="node",
                    csrs={"n1": {"ui.crt": made["csrs"]["node.crt"]}})
    with pytest.raises(CrdbTlsError, match="host n1: CSR for node.crt: not a valid PEM certificate signing request"):
        fleet.issue(pki_dir, "standard", nodes=nodes, users=[], key_location="node",
                    csrs={"n1": {"node.crt": "garbage"}})
    with pytest.raises(CrdbTlsError, match="csrs names n9, not in nodes"):
        fleet.issue(pki_dir, "standard", nodes=nodes, users=[], key_location="node", csrs={"n9": {}})
    with pytest.raises(CrdbTlsError, match="key_location node: pkcs8 would put a private key in the PKI dir"):
        fleet.issue(pki_dir, "standard", nodes=nodes, users=[], key_location="node", pkcs8=True)
    assert not os.path.exists(os.path.join(pki_dir, "issued"))


def test_csr_names_are_not_trusted(pki_dir, certs_dir):
    """The controller certifies the CSR's key with the inventory's names, not the CSR's."""
    make_pki(pki_dir, "standard")
    evil = node_keys.ensure(certs_dir, node_keys.wanted(layout="standard", hosts=["evil.example.com"]),
                            key_type="ecdsa")
    issued = fleet.issue(pki_dir, "standard", nodes={"n1": {"sans": SANS}}, users=[], key_location="node",
                         csrs={"n1": evil["csrs"]})
    cert = pki.load_certificates(fileio.read_file(os.path.join(issued["hosts"]["n1"]["dir"], "node.crt")), "x")[0]
    assert sorted(pki.san_strings(cert)) == sorted(SANS)


def test_switch_from_controller_keys_removes_keys_from_the_pki_dir(pki_dir, certs_dir):
    make_pki(pki_dir, "standard")
    fleet.issue(pki_dir, "standard", nodes={"n1": {"sans": SANS}}, users=["root"], key_type="ecdsa")
    assert "node.key" in os.listdir(fleet.issued_dir(pki_dir, "n1"))
    made, issued, _installed = node_round(pki_dir, certs_dir)
    assert "node.key removed: keys are made on the hosts (key_location node)" in issued["hosts"]["n1"]["reasons"]
    assert [f for f in private_key_files(pki_dir) if f.startswith(os.path.join("issued", "n1"))] == []


def test_client_hosts_get_their_own_dir(pki_dir, tmp_path):
    make_pki(pki_dir, "split_ca")
    user_dir = str(tmp_path / "app-certs")
    os.mkdir(user_dir, 0o700)
    wanted = node_keys.wanted(layout="split_ca", users=["app"], purpose="client")
    assert [role for _spec, role in wanted] == ["client_ca"]
    made = node_keys.ensure(user_dir, wanted, key_type="ecdsa", issuers=issuers(pki_dir, "split_ca"))
    assert set(made["csrs"]) == {"client.app.crt"}
    issued = fleet.issue(pki_dir, "split_ca", nodes={}, users=["app"], key_location="node",
                         client_csrs={"c1": made["csrs"]})
    src = issued["clients"]["c1"]["dir"]
    assert src == fleet.client_dir(pki_dir, "c1")
    assert sorted(os.listdir(src)) == ["ca.crt", "client.app.crt"]
    certs = dict((n, fileio.read_file(os.path.join(src, n))) for n in stamp.shipped_names(src))
    installer.install(user_dir, certs, {}, layout="split_ca", purpose="client")
    again = node_keys.ensure(user_dir, wanted, key_type="ecdsa", issuers=issuers(pki_dir, "split_ca"))
    assert again["csrs"] == {} and not again["changed"], again["reasons"]
    leaf = pki.load_certificates(certs["client.app.crt"], "x")[0]
    client_ca = authority.load(pki_dir, "client_ca")
    assert pki.issued_by(leaf, client_ca.certificate)
    assert "client.app.key" in os.listdir(user_dir)


def test_bad_inputs_are_named():
    with pytest.raises(CrdbTlsError, match="hosts is empty"):
        node_keys.wanted(layout="standard", hosts=[])
    with pytest.raises(CrdbTlsError, match="hosts and ui_hosts are for a node's certs dir, not purpose client"):
        node_keys.wanted(layout="standard", hosts=SANS, users=["root"], purpose="client")
    with pytest.raises(CrdbTlsError, match="purpose client needs users"):
        node_keys.wanted(layout="standard", purpose="client")
    with pytest.raises(CrdbTlsError, match="nothing to keep"):
        node_keys.wanted()
    with pytest.raises(CrdbTlsError, match="'Root' is not a valid CockroachDB SQL user name"):
        node_keys.wanted(users=["Root"])
    with pytest.raises(CrdbTlsError, match="rotate names ui.crt, which this host does not keep"):
        node_keys.ensure("/nonexistent", node_keys.wanted(layout="standard", hosts=SANS), rotate=["ui.crt"])
    with pytest.raises(CrdbTlsError, match="issuers.ca: no PEM block found"):
        node_keys.ensure("/nonexistent", node_keys.wanted(layout="standard", hosts=SANS), issuers={"ca": "x"})


# --------------------------------------------------------------------------
# Interrupted rotations resume; links in the certs dir are refused
# --------------------------------------------------------------------------

def _public(csr):
    return pki.public_key_bytes(pki.csr_public_key(csr.encode(), "csr"))


def _install_issued(pki_dir, certs_dir):
    src = fleet.issued_dir(pki_dir, "n1")
    certs = dict((n, fileio.read_file(os.path.join(src, n))) for n in stamp.shipped_names(src))
    return installer.install(certs_dir, certs, {}, layout="standard", expected_hosts=SANS)


def test_a_rotation_cut_short_before_the_install_resumes_on_the_next_run(pki_dir, certs_dir):
    make_pki(pki_dir, "standard")
    node_round(pki_dir, certs_dir, users=())
    old_key = fileio.read_file(os.path.join(certs_dir, "node.key"))
    wanted = node_keys.wanted(layout="standard", hosts=SANS)
    made = node_keys.ensure(certs_dir, wanted, key_type="ecdsa", issuers=issuers(pki_dir, "standard"),
                            rotate=["node.crt"])
    fleet.issue(pki_dir, "standard", nodes={"n1": {"sans": SANS}}, users=[], key_location="node",
                csrs={"n1": made["csrs"]})
    issued_cert = fileio.read_file(os.path.join(fleet.issued_dir(pki_dir, "n1"), "node.crt"))
    # The run stops here (before the install). The next run does not ask for a rotation again:
    # the key waiting for that certificate is kept and asked for, not dropped.
    again = node_keys.ensure(certs_dir, wanted, key_type="ecdsa", issuers=issuers(pki_dir, "standard"))
    assert any("the rotation begun earlier goes on with the key waiting in .crdb-tls-next.node.key" in r
               for r in again["reasons"]), again["reasons"]
    assert _public(again["csrs"]["node.crt"]) == _public(made["csrs"]["node.crt"])
    assert again["keys_written"] == []
    # The controller keeps the certificate it signed for that key; the install moves key and cert in together.
    fleet.issue(pki_dir, "standard", nodes={"n1": {"sans": SANS}}, users=[], key_location="node",
                csrs={"n1": again["csrs"]})
    assert fileio.read_file(os.path.join(fleet.issued_dir(pki_dir, "n1"), "node.crt")) == issued_cert
    _install_issued(pki_dir, certs_dir)
    assert fileio.read_file(os.path.join(certs_dir, "node.key")) != old_key
    assert not os.path.exists(os.path.join(certs_dir, ".crdb-tls-next.node.key"))
    assert certsdir.inspect(certs_dir, layout="standard", expected_hosts=SANS)["problems"] == []
    settled = node_keys.ensure(certs_dir, wanted, key_type="ecdsa", issuers=issuers(pki_dir, "standard"))
    assert settled["csrs"] == {} and settled["changed"] is False


def test_the_controller_signs_again_when_the_waiting_key_changed(pki_dir, certs_dir):
    make_pki(pki_dir, "standard")
    node_round(pki_dir, certs_dir, users=())
    wanted = node_keys.wanted(layout="standard", hosts=SANS)
    made = node_keys.ensure(certs_dir, wanted, key_type="ecdsa", issuers=issuers(pki_dir, "standard"),
                            rotate=["node.crt"])
    fleet.issue(pki_dir, "standard", nodes={"n1": {"sans": SANS}}, users=[], key_location="node",
                csrs={"n1": made["csrs"]})
    first = fileio.read_file(os.path.join(fleet.issued_dir(pki_dir, "n1"), "node.crt"))
    # The waiting key is lost (a restore, an operator): a new one is made and its CSR differs.
    os.unlink(os.path.join(certs_dir, ".crdb-tls-next.node.key"))
    redo = node_keys.ensure(certs_dir, wanted, key_type="ecdsa", issuers=issuers(pki_dir, "standard"),
                            rotate=["node.crt"])
    assert _public(redo["csrs"]["node.crt"]) != _public(made["csrs"]["node.crt"])
    fleet.issue(pki_dir, "standard", nodes={"n1": {"sans": SANS}}, users=[], key_location="node",
                csrs={"n1": redo["csrs"]})
    second = fileio.read_file(os.path.join(fleet.issued_dir(pki_dir, "n1"), "node.crt"))
    assert second != first
    _install_issued(pki_dir, certs_dir)
    assert certsdir.inspect(certs_dir, layout="standard", expected_hosts=SANS)["problems"] == []


def test_an_install_cut_short_after_its_commit_leaves_nothing_to_do_by_hand(pki_dir, certs_dir):
    make_pki(pki_dir, "standard")
    node_round(pki_dir, certs_dir, users=())
    wanted = node_keys.wanted(layout="standard", hosts=SANS)
    made = node_keys.ensure(certs_dir, wanted, key_type="ecdsa", issuers=issuers(pki_dir, "standard"),
                            rotate=["node.crt"])
    fleet.issue(pki_dir, "standard", nodes={"n1": {"sans": SANS}}, users=[], key_location="node",
                csrs={"n1": made["csrs"]})
    pending = os.path.join(certs_dir, ".crdb-tls-next.node.key")
    waiting = fileio.read_file(pending)
    # What a crash between the commit and the removal of the hidden name leaves: both names, one key.
    with open(pending, "rb") as keep:
        saved = keep.read()
    _install_issued(pki_dir, certs_dir)
    fileio.atomic_write(pending, saved, 0o600)
    after = node_keys.ensure(certs_dir, wanted, key_type="ecdsa", issuers=issuers(pki_dir, "standard"))
    assert ".crdb-tls-next.node.key removed: node.key serves (it is node.key already)" in after["reasons"]
    assert after["csrs"] == {} and not os.path.exists(pending)
    assert fileio.read_file(os.path.join(certs_dir, "node.key")) == waiting


def test_a_linked_key_is_refused_never_adopted(pki_dir, certs_dir, tmp_path):
    make_pki(pki_dir, "standard")
    os.makedirs(certs_dir, exist_ok=True)
    secret = tmp_path / "root-only.key"
    secret.write_bytes(pki.private_key_pem(pki.generate_key("ecdsa", 256)))
    os.chmod(str(secret), 0o600)
    before = (secret.read_bytes(), stat.S_IMODE(os.stat(str(secret)).st_mode), os.stat(str(secret)).st_uid)
    os.symlink(str(secret), os.path.join(certs_dir, "node.key"))
    wanted = node_keys.wanted(layout="standard", hosts=SANS)
    with pytest.raises(CrdbTlsError, match=r"^file %s is a symbolic link: refusing to use it"
                       % os.path.join(certs_dir, "node.key").replace(".", r"\.")):
        node_keys.ensure(certs_dir, wanted, key_type="ecdsa", issuers=issuers(pki_dir, "standard"), owner=65534)
    assert (secret.read_bytes(), stat.S_IMODE(os.stat(str(secret)).st_mode), os.stat(str(secret)).st_uid) == before
    assert sorted(os.listdir(certs_dir)) == ["node.key"]
