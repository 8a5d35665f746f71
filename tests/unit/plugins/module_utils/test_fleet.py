# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fleet.issue: a whole fleet's certificates in one call, with real crypto (ECDSA for speed)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os

import pytest

from ansible_collections.crdb.tls.plugins.module_utils import authority, fleet, ledger, pki, rules
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

NODES = {
    "n1": {"sans": ["n1.example.com", "127.0.0.1"]},
    "n2": {"sans": ["n2.example.com", "10.0.0.2"]},
}

NODE_FILES = {
    "standard": {"ca.crt", "node.crt", "node.key"},
    "split_node": {"ca.crt", "node.crt", "node.key", "client.node.crt", "client.node.key"},
    "split_ca": {"ca.crt", "ca-client.crt", "node.crt", "node.key", "client.node.crt", "client.node.key"},
}


def make_pki(pki_dir, layout="standard"):
    authority.ensure(pki_dir, "ca", key_type="ecdsa")
    if layout == "split_ca":
        authority.ensure(pki_dir, "client_ca", key_type="ecdsa")
    return pki_dir


def issue(pki_dir, layout="standard", **kwargs):
    kwargs.setdefault("nodes", NODES)
    kwargs.setdefault("users", ["root", "app"])
    kwargs.setdefault("node_users", ["root"])
    kwargs.setdefault("key_type", "ecdsa")
    return fleet.issue(pki_dir, layout, **kwargs)


def files_of(directory):
    return set(n for n in os.listdir(directory) if not n.startswith("."))


def tree(root):
    """{relative path: bytes} of every file under ``root``."""
    out = {}
    for base, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(base, name)
            with open(path, "rb") as handle:
                out[os.path.relpath(path, root)] = handle.read()
    return out


def cert_of(path):
    with open(path, "rb") as handle:
        return pki.load_certificates(handle.read(), path)


def key_of(path):
    with open(path, "rb") as handle:
        return pki.load_private_key(handle.read(), path)


def trust(pki_dir, role="ca"):
    return cert_of(authority.paths(pki_dir, role)["bundle"])


def index_lines(pki_dir, role="ca"):
    return ledger.read_index(authority.paths(pki_dir, role)["index"])


# --------------------------------------------------------------------------- layouts

@pytest.mark.parametrize("layout", ["standard", "split_node", "split_ca"])
def test_each_layout_writes_the_right_files(pki_dir, layout):
    make_pki(pki_dir, layout)
    result = issue(pki_dir, layout)
    assert result["changed"]
    for host in NODES:
        directory = fleet.issued_dir(pki_dir, host)
        assert result["hosts"][host]["dir"] == directory
        assert files_of(directory) == NODE_FILES[layout] | {"client.root.crt", "client.root.key"}
        assert os.stat(directory).st_mode & 0o777 == 0o700
        for name in files_of(directory):
            mode = os.stat(os.path.join(directory, name)).st_mode & 0o777
            assert mode == (rules.KEY_MODE if name.endswith(".key") else rules.CERT_MODE), name
        node = cert_of(os.path.join(directory, "node.crt"))[0]
        assert pki.keys_match(node, key_of(os.path.join(directory, "node.key")))
        assert pki.verify_chain(node, [], trust(pki_dir, "ca")) is None
        for host_name in NODES[host]["sans"]:
            assert pki.host_covered(node, host_name)
        if layout == "standard":
            assert pki.common_name(node) == "node"
            assert set(pki.ekus(node)) == {"serverAuth", "clientAuth"}
        else:
            assert pki.ekus(node) == ["serverAuth"]
            client_node = cert_of(os.path.join(directory, "client.node.crt"))[0]
            assert pki.common_name(client_node) == "node"
            assert pki.keys_match(client_node, key_of(os.path.join(directory, "client.node.key")))
            role = "client_ca" if layout == "split_ca" else "ca"
            assert pki.verify_chain(client_node, [], trust(pki_dir, role)) is None
        if layout == "split_ca":
            with open(os.path.join(directory, "ca-client.crt"), "rb") as handle:
                with open(authority.paths(pki_dir, "client_ca")["bundle"], "rb") as bundle:
                    assert handle.read() == bundle.read()
        assert set(result["hosts"][host]["fingerprints"]) >= {"node.crt"}

    client_role = "client_ca" if layout == "split_ca" else "ca"
    for user in ("root", "app"):
        directory = fleet.user_dir(pki_dir, user)
        assert result["users"][user]["dir"] == directory
        assert files_of(directory) == {"ca.crt", "client.%s.crt" % user, "client.%s.key" % user}
        cert = cert_of(os.path.join(directory, "client.%s.crt" % user))[0]
        assert pki.common_name(cert) == user
        assert pki.ekus(cert) == ["clientAuth"]
        assert pki.keys_match(cert, key_of(os.path.join(directory, "client.%s.key" % user)))
        assert pki.verify_chain(cert, [], trust(pki_dir, client_role)) is None
        # Clients verify the servers with ca.crt, whatever the layout.
        with open(os.path.join(directory, "ca.crt"), "rb") as handle:
            with open(authority.paths(pki_dir, "ca")["bundle"], "rb") as bundle:
                assert handle.read() == bundle.read()
    # app is not a node user: its certificate stays out of the node dirs.
    assert not os.path.exists(os.path.join(fleet.issued_dir(pki_dir, "n1"), "client.app.crt"))


@pytest.mark.parametrize("layout", ["standard", "split_ca"])
def test_second_call_changes_nothing(pki_dir, layout):
    make_pki(pki_dir, layout)
    issue(pki_dir, layout, ui_generate=True)
    before = tree(pki_dir)
    again = issue(pki_dir, layout, ui_generate=True)
    assert again["changed"] is False
    assert again["issued_count"] == 0
    assert all(not h["changed"] and h["reasons"] == [] for h in again["hosts"].values())
    assert all(not u["changed"] and u["reasons"] == [] for u in again["users"].values())
    assert tree(pki_dir) == before


def test_san_change_reissues_only_that_host(pki_dir):
    make_pki(pki_dir)
    first = issue(pki_dir)
    n2_before = tree(fleet.issued_dir(pki_dir, "n2"))
    users_before = tree(os.path.join(pki_dir, "issued", "_users"))
    nodes = dict(NODES)
    nodes["n1"] = {"sans": NODES["n1"]["sans"] + ["lb.example.com"]}
    second = issue(pki_dir, nodes=nodes)
    assert second["changed"] is True
    assert second["issued_count"] == 1
    assert second["hosts"]["n1"]["changed"] is True
    assert any("lb.example.com" in r and r.startswith("node.crt") for r in second["hosts"]["n1"]["reasons"]), \
        second["hosts"]["n1"]["reasons"]
    assert second["hosts"]["n2"] == dict(first["hosts"]["n2"], changed=False, reasons=[])
    assert not any(u["changed"] for u in second["users"].values())
    assert tree(fleet.issued_dir(pki_dir, "n2")) == n2_before
    assert tree(os.path.join(pki_dir, "issued", "_users")) == users_before
    node = cert_of(os.path.join(fleet.issued_dir(pki_dir, "n1"), "node.crt"))[0]
    assert pki.host_covered(node, "lb.example.com")
    assert second["hosts"]["n1"]["fingerprints"]["node.crt"] != first["hosts"]["n1"]["fingerprints"]["node.crt"]


def test_user_certs_are_the_same_in_every_node_dir(pki_dir):
    make_pki(pki_dir)
    issue(pki_dir, nodes=dict(NODES, n3={"sans": ["n3.example.com"]}), node_users=["root", "app"])
    for user in ("root", "app"):
        for suffix in (".crt", ".key"):
            name = "client.%s%s" % (user, suffix)
            with open(os.path.join(fleet.user_dir(pki_dir, user), name), "rb") as handle:
                wanted = handle.read()
            for host in ("n1", "n2", "n3"):
                path = os.path.join(fleet.issued_dir(pki_dir, host), name)
                with open(path, "rb") as handle:
                    assert handle.read() == wanted, path
                mode = os.stat(path).st_mode & 0o777
                assert mode == (0o600 if suffix == ".key" else 0o644)


@pytest.mark.parametrize("layout", ["standard", "split_ca"])
def test_ledger_has_one_line_per_issued_certificate(pki_dir, layout):
    make_pki(pki_dir, layout)
    result = issue(pki_dir, layout, ui_generate=True)
    roles = ["ca", "client_ca"] if layout == "split_ca" else ["ca"]
    rows = [row for role in roles for row in index_lines(pki_dir, role)]
    per_node = len(NODE_FILES[layout] & {"node.crt", "client.node.crt"}) + 1  # + ui.crt
    assert result["issued_count"] == len(NODES) * per_node + 2  # + root, app
    assert len(rows) == result["issued_count"]
    serials = [row[3] for row in rows]
    assert len(set(serials)) == len(serials)
    on_disk = set()
    for base, _dirs, names in os.walk(os.path.join(pki_dir, "issued")):
        for name in names:
            if name.endswith(".crt") and not name.startswith("ca"):
                on_disk.add(pki.serial_hex(cert_of(os.path.join(base, name))[0]))
    assert on_disk == set(serials)
    if layout == "split_ca":
        client_rows = index_lines(pki_dir, "client_ca")
        assert sorted(r[5].rsplit("CN=", 1)[1] for r in client_rows) == ["app", "node", "node", "root"]
    # A second run records nothing more.
    issue(pki_dir, layout, ui_generate=True)
    assert sum(len(index_lines(pki_dir, role)) for role in roles) == len(rows)


@pytest.mark.parametrize("layout", ["standard", "split_ca"])
def test_revoked_certificate_is_reissued_with_a_new_key(pki_dir, layout):
    make_pki(pki_dir, layout)
    first = issue(pki_dir, layout)
    role = rules.client_ca_role(layout)
    user_dir = fleet.user_dir(pki_dir, "root")
    old_cert = cert_of(os.path.join(user_dir, "client.root.crt"))[0]
    old_key = key_of(os.path.join(user_dir, "client.root.key"))
    n1_node_before = tree(fleet.issued_dir(pki_dir, "n1"))["node.crt"]
    app_before = tree(fleet.user_dir(pki_dir, "app"))
    ledger.revoke(authority.paths(pki_dir, role)["index"], serial=pki.serial_hex(old_cert), reason="keyCompromise")

    second = issue(pki_dir, layout)
    wanted = "client.root.crt: serial %s is revoked in the CA's index" % pki.serial_hex(old_cert)
    assert second["users"]["root"]["changed"] is True
    assert wanted in second["users"]["root"]["reasons"], second["users"]["root"]["reasons"]
    assert second["issued_count"] == 1
    new_cert = cert_of(os.path.join(user_dir, "client.root.crt"))[0]
    new_key = key_of(os.path.join(user_dir, "client.root.key"))
    assert new_cert.serial_number != old_cert.serial_number
    assert pki.public_key_bytes(new_key.public_key()) != pki.public_key_bytes(old_key.public_key())
    assert pki.keys_match(new_cert, new_key)
    # The nodes carrying root get the replacement; nothing else changes.
    for host in NODES:
        assert second["hosts"][host]["changed"] is True
        with open(os.path.join(fleet.issued_dir(pki_dir, host), "client.root.crt"), "rb") as handle:
            assert cert_of_bytes(handle.read()).serial_number == new_cert.serial_number
    assert tree(fleet.issued_dir(pki_dir, "n1"))["node.crt"] == n1_node_before
    assert tree(fleet.user_dir(pki_dir, "app")) == app_before
    assert not second["users"]["app"]["changed"]
    statuses = dict((row["serial"], row["status"]) for row in ledger.status(authority.paths(pki_dir, role)["index"]))
    assert statuses[pki.serial_hex(old_cert)] == "revoked"
    assert statuses[pki.serial_hex(new_cert)] == "valid"
    assert first["users"]["root"]["fingerprints"] != second["users"]["root"]["fingerprints"]
    # The replacement is not revoked: the next run changes nothing.
    assert issue(pki_dir, layout)["changed"] is False


@pytest.mark.parametrize("layout", ["standard", "split_ca"])
def test_ocsp_urls_follow_the_signing_ca(pki_dir, layout):
    make_pki(pki_dir, layout)
    issue(pki_dir, layout, ocsp_url="http://ocsp.example.com:8888", client_ca_ocsp_url="http://ocsp.example.com:8889",
          ui_generate=True)
    client_url = "http://ocsp.example.com:8889" if layout == "split_ca" else "http://ocsp.example.com:8888"
    n1 = fleet.issued_dir(pki_dir, "n1")
    assert pki.ocsp_urls(cert_of(os.path.join(n1, "node.crt"))[0]) == ["http://ocsp.example.com:8888"]
    assert pki.ocsp_urls(cert_of(os.path.join(n1, "ui.crt"))[0]) == ["http://ocsp.example.com:8888"]
    assert pki.ocsp_urls(cert_of(os.path.join(n1, "client.root.crt"))[0]) == [client_url]
    assert pki.ocsp_urls(cert_of(os.path.join(fleet.user_dir(pki_dir, "app"), "client.app.crt"))[0]) == [client_url]
    if layout == "split_ca":
        assert pki.ocsp_urls(cert_of(os.path.join(n1, "client.node.crt"))[0]) == [client_url]
    # Without a client CA URL, every certificate carries ocsp_url; the change counts as drift.
    again = issue(pki_dir, layout, ocsp_url="http://ocsp.example.com:8888", ui_generate=True)
    assert again["changed"] is (layout == "split_ca")
    assert pki.ocsp_urls(cert_of(os.path.join(n1, "client.root.crt"))[0]) == ["http://ocsp.example.com:8888"]


def cert_of_bytes(data):
    return pki.load_certificates(data, "client.root.crt")[0]


# --------------------------------------------------------------------------- DB Console

def test_ui_generate_issues_a_ui_cert_per_node(pki_dir):
    make_pki(pki_dir)
    nodes = {"n1": {"sans": ["n1.example.com"], "ui_sans": ["console.example.com", "n1.example.com"]},
             "n2": {"sans": ["n2.example.com"]}}
    result = issue(pki_dir, nodes=nodes, ui_generate=True)
    for host, wanted in (("n1", ["console.example.com", "n1.example.com"]), ("n2", ["n2.example.com"])):
        directory = fleet.issued_dir(pki_dir, host)
        ui = cert_of(os.path.join(directory, "ui.crt"))[0]
        assert sorted(pki.san_strings(ui)) == sorted(wanted)
        assert pki.ekus(ui) == ["serverAuth"]
        assert pki.keys_match(ui, key_of(os.path.join(directory, "ui.key")))
        assert pki.verify_chain(ui, [], trust(pki_dir)) is None
        assert os.stat(os.path.join(directory, "ui.key")).st_mode & 0o777 == 0o600
        assert result["hosts"][host]["fingerprints"]["ui.crt"] == pki.fingerprint(ui)


@pytest.fixture
def public_ui(tmp_path, other_ca, mk):
    """A DB Console cert + key from an unrelated ("public") CA, written to files."""
    cert, key, _spec = mk.leaf(other_ca, "ui", hosts=["console.example.com", "*.db.example.com"])
    cert_path, key_path = str(tmp_path / "console.crt"), str(tmp_path / "console.key")
    mk.write(cert_path, pki.certificates_pem([cert]), 0o644)
    mk.write(key_path, pki.private_key_pem(key), 0o600)
    mk.write(str(tmp_path / "console-ca.crt"), pki.certificates_pem([other_ca.certificate]), 0o644)
    return cert, key, cert_path, key_path


def _ui_ca(cert_path):
    """The public CA's root beside the DB Console certificate (what becomes ca-ui.crt)."""
    return os.path.join(os.path.dirname(cert_path), "console-ca.crt")


def test_provided_ui_cert_goes_to_every_node(pki_dir, public_ui):
    make_pki(pki_dir)
    cert, _key, cert_path, key_path = public_ui
    result = issue(pki_dir, ui_ca_src=_ui_ca(cert_path), ui_cert_src=cert_path, ui_key_src=key_path,
                   ui_sans=["console.example.com", "n1.db.example.com"])
    with open(cert_path, "rb") as c, open(key_path, "rb") as k:
        cert_pem, key_pem = c.read(), k.read()
    for host in NODES:
        directory = fleet.issued_dir(pki_dir, host)
        with open(os.path.join(directory, "ui.crt"), "rb") as handle:
            assert pki.fingerprint(pki.load_certificates(handle.read(), "ui.crt")[0]) == pki.fingerprint(cert)
        assert pki.keys_match(cert, key_of(os.path.join(directory, "ui.key")))
        assert os.stat(os.path.join(directory, "ui.key")).st_mode & 0o777 == 0o600
        assert "ui.crt updated" in result["hosts"][host]["reasons"]
    assert cert_pem and key_pem
    again = issue(pki_dir, ui_ca_src=_ui_ca(cert_path), ui_cert_src=cert_path, ui_key_src=key_path, ui_sans=["console.example.com"])
    assert again["changed"] is False


def test_provided_ui_key_mismatch_is_refused(pki_dir, public_ui, tmp_path, mk):
    make_pki(pki_dir)
    _cert, _key, cert_path, _key_path = public_ui
    other_key = str(tmp_path / "other.key")
    mk.write(other_key, pki.private_key_pem(mk.ec()), 0o600)
    with pytest.raises(CrdbTlsError) as exc:
        issue(pki_dir, ui_ca_src=_ui_ca(cert_path), ui_cert_src=cert_path, ui_key_src=other_key)
    assert other_key in str(exc.value) and cert_path in str(exc.value)
    assert "does not match" in str(exc.value)
    assert not os.path.exists(os.path.join(pki_dir, "issued"))


def test_provided_ui_expired_is_refused(pki_dir, tmp_path, other_ca, mk):
    make_pki(pki_dir)
    past = pki.utcnow() - datetime.timedelta(days=10)
    cert, key, _spec = mk.leaf(other_ca, "ui", hosts=["console.example.com"], lifetime="1d", now=past)
    cert_path, key_path = str(tmp_path / "old.crt"), str(tmp_path / "old.key")
    mk.write(cert_path, pki.certificates_pem([cert]), 0o644)
    mk.write(key_path, pki.private_key_pem(key), 0o600)
    with pytest.raises(CrdbTlsError) as exc:
        issue(pki_dir, ui_ca_src=_ui_ca(cert_path), ui_cert_src=cert_path, ui_key_src=key_path)
    assert cert_path in str(exc.value) and "expired" in str(exc.value)
    assert not os.path.exists(os.path.join(pki_dir, "issued"))


def test_provided_ui_sans_must_cover_ui_sans(pki_dir, public_ui):
    make_pki(pki_dir)
    _cert, _key, cert_path, key_path = public_ui
    with pytest.raises(CrdbTlsError) as exc:
        issue(pki_dir, ui_ca_src=_ui_ca(cert_path), ui_cert_src=cert_path, ui_key_src=key_path,
              ui_sans=["console.example.com", "admin.example.org"])
    message = str(exc.value)
    assert cert_path in message and "admin.example.org" in message
    assert "console.example.com" not in message.split("(it has", maxsplit=1)[0].split("cover")[1]
    assert not os.path.exists(os.path.join(pki_dir, "issued"))


def test_provided_ui_must_chain_to_a_root(pki_dir, public_ui, tmp_path, other_ca, mk):
    """A public ui.crt is verified as Go verifies a server: up to a root, its intermediates given, serverAuth."""
    make_pki(pki_dir)
    _cert, _key, cert_path, key_path = public_ui
    # not in the system trust store, and no ca-ui root given: refused before anything is written
    with pytest.raises(CrdbTlsError) as exc:
        issue(pki_dir, ui_cert_src=cert_path, ui_key_src=key_path, ui_sans=["console.example.com"])
    assert "%s: as serverAuth for console.example.com: certificate signed by unknown authority" % cert_path \
        in str(exc.value) and "(checked against the system trust store)" in str(exc.value)
    assert not os.path.exists(os.path.join(pki_dir, "issued"))
    # an intermediate missing from the file: refused against the right root too
    inter = mk.make_intermediate(other_ca, "Public Issuing CA")
    cert, key, _spec = mk.leaf(inter, "ui", hosts=["console.example.com"])
    mk.write(cert_path, pki.certificates_pem([cert]), 0o644)
    mk.write(key_path, pki.private_key_pem(key), 0o600)
    with pytest.raises(CrdbTlsError, match="issuer CN=Public Issuing CA,O=Org is not among the trusted roots"):
        issue(pki_dir, ui_cert_src=cert_path, ui_key_src=key_path, ui_ca_src=_ui_ca(cert_path))
    mk.write(cert_path, pki.certificates_pem([cert, inter.certificate]), 0o644)
    issue(pki_dir, ui_cert_src=cert_path, ui_key_src=key_path, ui_ca_src=_ui_ca(cert_path))
    # no SAN at all: a browser could not match it
    bare, bare_key, _spec = mk.leaf(other_ca, "node_client")
    mk.write(cert_path, pki.certificates_pem([bare]), 0o644)
    mk.write(key_path, pki.private_key_pem(bare_key), 0o600)
    with pytest.raises(CrdbTlsError, match="has no SAN"):
        issue(pki_dir, ui_cert_src=cert_path, ui_key_src=key_path, ui_ca_src=_ui_ca(cert_path))


def test_ui_generate_and_provided_exclude_each_other(pki_dir, public_ui):
    make_pki(pki_dir)
    _cert, _key, cert_path, key_path = public_ui
    with pytest.raises(CrdbTlsError, match="exclude each other"):
        issue(pki_dir, ui_generate=True, ui_cert_src=cert_path, ui_key_src=key_path)
    with pytest.raises(CrdbTlsError, match="go together"):
        issue(pki_dir, ui_cert_src=cert_path)


# --------------------------------------------------------------------------- bad input, check mode

def test_bad_san_is_refused_before_anything_is_written(pki_dir):
    make_pki(pki_dir)
    before = tree(pki_dir)
    nodes = {"a1": {"sans": ["a1.example.com"]}, "n9": {"sans": ["bad_name"]}}
    with pytest.raises(CrdbTlsError) as exc:
        issue(pki_dir, nodes=nodes)
    assert "bad_name" in str(exc.value)
    assert tree(pki_dir) == before
    assert not os.path.exists(os.path.join(pki_dir, "issued"))


def test_bad_user_and_missing_sans_are_refused(pki_dir):
    make_pki(pki_dir)
    with pytest.raises(CrdbTlsError, match="'Root'"):
        issue(pki_dir, users=["Root"], node_users=[])
    with pytest.raises(CrdbTlsError, match="node n3 has no SANs"):
        issue(pki_dir, nodes={"n3": {}})
    assert not os.path.exists(os.path.join(pki_dir, "issued"))


def test_missing_ca_is_refused(pki_dir):
    with pytest.raises(CrdbTlsError, match="create the CA first"):
        issue(pki_dir)
    make_pki(pki_dir, "standard")
    with pytest.raises(CrdbTlsError, match="client_ca"):
        issue(pki_dir, "split_ca")


def test_check_mode_writes_nothing(pki_dir):
    make_pki(pki_dir)
    before = tree(pki_dir)
    result = issue(pki_dir, check_mode=True, ui_generate=True)
    assert result["changed"] is True
    assert result["issued_count"] == 0
    assert result["hosts"]["n1"]["changed"] and result["users"]["app"]["changed"]
    assert tree(pki_dir) == before
    assert sorted(os.listdir(pki_dir)) == sorted(set(p.split(os.sep)[0] for p in before))

    # On an issued fleet, check mode reports exactly what a SAN change would do.
    issue(pki_dir, ui_generate=True)
    before = tree(pki_dir)
    nodes = dict(NODES, n2={"sans": NODES["n2"]["sans"] + ["lb.example.com"]})
    result = issue(pki_dir, nodes=nodes, check_mode=True, ui_generate=True)
    assert result["changed"] and result["hosts"]["n2"]["changed"] and not result["hosts"]["n1"]["changed"]
    assert any("lb.example.com" in r for r in result["hosts"]["n2"]["reasons"])
    assert tree(pki_dir) == before


# --------------------------------------------------------------------------- thread pool

def test_worker_count_does_not_change_the_result(tmp_path):
    nodes = dict(("n%d" % i, {"sans": ["n%d.example.com" % i, "10.0.0.%d" % i]}) for i in range(1, 7))
    sets = []
    for workers in (1, 4):
        pki_dir = str(tmp_path / ("pki-%d" % workers))
        os.mkdir(pki_dir, 0o700)
        make_pki(pki_dir, "split_node")
        result = issue(pki_dir, "split_node", nodes=nodes, workers=workers, ui_generate=True)
        assert result["issued_count"] == len(nodes) * 3 + 2
        layout = {}
        for host in nodes:
            directory = fleet.issued_dir(pki_dir, host)
            layout[host] = files_of(directory)
            for cert_name in ("node.crt", "client.node.crt", "ui.crt", "client.root.crt"):
                leaf = cert_of(os.path.join(directory, cert_name))[0]
                assert pki.keys_match(leaf, key_of(os.path.join(directory, rules.key_name(cert_name))))
                assert pki.verify_chain(leaf, [], trust(pki_dir)) is None
            assert pki.host_covered(cert_of(os.path.join(directory, "node.crt"))[0], nodes[host]["sans"][1])
        sets.append((layout, sorted(os.listdir(os.path.join(pki_dir, "issued")))))
        # Every key is distinct: no key was shared between threads.
        keys = set()
        for host in nodes:
            for name in ("node.key", "client.node.key", "ui.key"):
                with open(os.path.join(fleet.issued_dir(pki_dir, host), name), "rb") as handle:
                    keys.add(handle.read())
        assert len(keys) == len(nodes) * 3
    assert sets[0] == sets[1]


# --------------------------------------------------------------------------- renewal windows per kind

def _fps(result):
    out = {}
    for host, info in result["hosts"].items():
        for name, fp in info["fingerprints"].items():
            out[(host, name)] = fp
    for user, info in result["users"].items():
        for name, fp in info["fingerprints"].items():
            out[("_users/" + user, name)] = fp
    return out


def test_renewal_windows_per_kind(pki_dir):
    """Certificates valid 40 days (41 with back-dating): a 99% window renews them, a 10% one does not; each kind
    on its own."""
    make_pki(pki_dir)
    first = _fps(issue(pki_dir, ui_generate=True, lifetime="40d"))
    assert set(n for _h, n in first) == {"node.crt", "ui.crt", "client.root.crt", "client.app.crt"}

    current = dict(first)

    def renewed(**kwargs):
        result = issue(pki_dir, ui_generate=True, lifetime="40d", **kwargs)
        after = _fps(result)
        names = sorted(set(key[1] for key in after if after[key] != current[key]))
        current.update(after)
        return names, result

    names, result = renewed(renew_before_by_kind={"node": "99%"})
    assert names == ["node.crt"]
    assert any("node.crt expires on" in r and "inside the 99% (40d) window" in r
               for r in result["hosts"]["n1"]["reasons"])
    assert renewed(renew_before_by_kind={"ui": "99%", "node": "10%"})[0] == ["ui.crt"]
    assert renewed(renew_before_by_kind={"client": "99%"})[0] == ["client.app.crt", "client.root.crt"]
    # The CA window never renews anything here.
    names, result = renewed(renew_before_by_kind={"ca": "99%"})
    assert names == [] and result["changed"] is False
    # renew_before is every kind's window unless the kind has its own; an empty one keeps it.
    assert renewed(renew_before="99%", renew_before_by_kind={"node": "10%", "ui": "10%", "client": ""})[0] == \
        ["client.app.crt", "client.root.crt"]


def test_renewal_window_bad_kind_or_duration(pki_dir):
    make_pki(pki_dir)
    with pytest.raises(CrdbTlsError, match=r"renewal window for 'nodes': not a kind of certificate "
                                           r"\(kinds: ca, node, client, ui\)"):
        issue(pki_dir, renew_before_by_kind={"nodes": "30d"})
    with pytest.raises(CrdbTlsError, match=r"renewal window for ui 'soon' is neither a duration nor a percentage "
                                           r"of the lifetime \(examples: 30d, 12h, 90m, 33%\)"):
        issue(pki_dir, renew_before_by_kind={"ui": "soon"})
    # A window that is always open is refused before anything is written, naming both values.
    with pytest.raises(CrdbTlsError, match=r"^renewal window for node 30d is not shorter than lifetime 720h: every "
                                           r"run would re-issue the certificate"):
        issue(pki_dir, lifetime="720h", renew_before="30d")
    with pytest.raises(CrdbTlsError, match=r"^renewal window for client '100%' would make every run re-issue"):
        issue(pki_dir, lifetime="2h", renew_before_by_kind={"client": "100%"})
    with pytest.raises(CrdbTlsError, match=r"^renewal window for ui 3h is not shorter than lifetime 2h"):
        issue(pki_dir, lifetime="2h", renew_before="33%", renew_before_by_kind={"ui": "3h"})
    assert not os.path.exists(os.path.join(pki_dir, fleet.ISSUED_DIR))


# --- issue 14: check mode tells the truth --------------------------------------------------------

def _tree(directory):
    out = {}
    for top, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(top, name)
            out[path] = os.lstat(path).st_mtime_ns
    return out


def test_check_mode_plans_a_first_deploy_without_the_pki_dir(tmp_path):
    pki_dir = str(tmp_path / "pki")
    result = issue(pki_dir, check_mode=True)
    assert not os.path.exists(pki_dir)
    assert result["changed"] is True and result["issued_count"] == 0
    for host in NODES:
        assert result["hosts"][host]["planned"] == ["ca.crt", "client.root.crt", "client.root.key", "node.crt",
                                                    "node.key"]
        assert "node.crt: not issued yet, no CA in %s yet (first deploy)" % pki_dir in result["hosts"][host]["reasons"]
    assert result["users"]["app"]["planned"] == ["ca.crt", "client.app.crt", "client.app.key"]
    headers = [d["before_header"] for d in result["diff"]]
    assert os.path.join(pki_dir, "issued", sorted(NODES)[0]) in headers


def test_check_mode_new_user_and_organisation_reach_every_node(pki_dir):
    make_pki(pki_dir)
    issue(pki_dir)
    before = _tree(pki_dir)
    result = issue(pki_dir, node_users=["root", "app"], check_mode=True)
    assert _tree(pki_dir) == before
    for host in NODES:
        out = result["hosts"][host]
        assert out["changed"] is True
        assert out["planned"] == ["client.app.crt", "client.app.key"], out
        assert "client.app.crt updated" in out["reasons"]
    result = issue(pki_dir, organization="Acme", check_mode=True)
    assert _tree(pki_dir) == before
    host = sorted(NODES)[0]
    assert "node.crt" in result["hosts"][host]["planned"]
    diff = [d for d in result["diff"] if d["before_header"].endswith("/" + host)][0]
    assert "node.crt: CN=node,O=Cockroach;" in diff["before"] and "node.crt: CN=node,O=Acme;" in diff["after"]
    # The real run then changes what the plan said.
    done = issue(pki_dir, organization="Acme")
    assert set(h for h in NODES if done["hosts"][h]["changed"]) == set(NODES)
