# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The certs-dir validator (certsdir.py): every problem names its file."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import pwd
import re

import pytest

from ansible_collections.crdb.tls.plugins.module_utils import certsdir, fileio, pki
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

HOSTS = ["n1.example.com", "10.0.0.1"]


def _standard(certs_dir, ca, mk, node_kwargs=None):
    """ca.crt, node.crt/.key and client.root.crt/.key, as `cockroach cert` would make them."""
    mk.install_ca(certs_dir, "ca.crt", ca)
    node, node_key, _spec = mk.leaf(ca, "node", hosts=HOSTS, **(node_kwargs or {}))
    mk.install(certs_dir, "node.crt", node, node_key)
    root, root_key, _spec = mk.leaf(ca, "client", user="root")
    mk.install(certs_dir, "client.root.crt", root, root_key)
    return node, node_key


def _problems(certs_dir, **kwargs):
    return certsdir.inspect(certs_dir, **kwargs)["problems"]


def _only(problems, pattern):
    """The one problem, matching ``pattern`` in full."""
    assert len(problems) == 1, problems
    assert re.fullmatch(pattern, problems[0]), problems[0]


def test_clean_standard_dir(certs_dir, ca, mk):
    _standard(certs_dir, ca, mk)
    report = certsdir.inspect(certs_dir, expected_hosts=HOSTS, min_remaining="30d", layout="standard")
    assert report["problems"] == []
    assert report["skipped"] == []
    assert report["layout"] == "standard"
    entries = dict((e["file"], e) for e in report["entries"])
    assert sorted(entries) == ["ca.crt", "client.root.crt", "node.crt"]
    assert entries["node.crt"]["usage"] == "Node" and entries["node.crt"]["key_file"] == "node.key"
    assert entries["node.crt"]["notes"] == "num certs: 1, addresses: n1.example.com,10.0.0.1"
    assert entries["client.root.crt"]["notes"] == "num certs: 1, user: root"
    assert entries["ca.crt"]["usage"] == "CA" and entries["ca.crt"]["key_file"] == ""
    assert all(e["error"] == "" for e in entries.values())


def test_missing_certs_dir(tmp_path):
    missing = str(tmp_path / "nope")
    assert _problems(missing) == ["%s: the certs dir does not exist" % missing]


def test_unrecognised_name(certs_dir, ca, mk):
    _standard(certs_dir, ca, mk)
    mk.install_ca(certs_dir, "ca.old.crt", ca)
    mk.write(os.path.join(certs_dir, "README.txt"), b"notes", 0o644)
    report = certsdir.inspect(certs_dir)
    assert report["skipped"] == ["ca.old.crt"]
    # CockroachDB logs a bad filename and skips it: a warning, not a refusal
    assert report["problems"] == []
    _only(report["warnings"], r"ca\.old\.crt: 'ca\.old\.crt' is not a file name CockroachDB recognises; it would be "
                              r"skipped .*")


def test_bad_user_in_file_name(certs_dir, ca, mk):
    _standard(certs_dir, ca, mk)
    cert, key, _spec = mk.leaf(ca, "client", user="root")
    mk.install(certs_dir, "client.Root.crt", cert, key)
    # the loader takes any name; the SQL user "Root" is not a principal of a CN=root cert
    report = certsdir.inspect(certs_dir)
    _only(report["problems"], r"client\.Root\.crt: principals \[root\] do not include 'Root': CockroachDB would not "
                              r"authenticate it as Root")
    _only(report["warnings"], r"client\.Root\.crt: user in file name 'client\.Root\.crt' 'Root' is not a valid "
                              r"CockroachDB SQL user name: has upper case 'R'.*; it loads, and serves only through a "
                              r"principal map")


def test_garbage_cert(certs_dir, ca, mk):
    _standard(certs_dir, ca, mk)
    mk.write(os.path.join(certs_dir, "client.bob.crt"), b"garbage\n", 0o644)
    report = certsdir.inspect(certs_dir)
    _only(report["problems"], r"client\.bob\.crt: no certificates found \(no PEM block\)")
    entry = [e for e in report["entries"] if e["file"] == "client.bob.crt"][0]
    assert "no certificates found" in entry["error"]
    assert report["verdict"]["load"]["ok"] is True and report["verdict"]["clients"]["bob"]["ok"] is False


def test_non_certificate_block(certs_dir, ca, mk):
    _node, node_key = _standard(certs_dir, ca, mk)
    with open(os.path.join(certs_dir, "node.crt"), "ab") as handle:
        handle.write(pki.private_key_pem(node_key))
    _only(_problems(certs_dir), r"node\.crt: PEM block 2 is 'EC PRIVATE KEY'; CockroachDB accepts only "
                                r"CERTIFICATE blocks in a certificate file")
    assert certsdir.inspect(certs_dir)["verdict"] == {"load": {"ok": False, "error": _problems(certs_dir)[0]}}


def test_missing_key(certs_dir, ca, mk):
    _standard(certs_dir, ca, mk)
    os.unlink(os.path.join(certs_dir, "client.root.key"))
    _only(_problems(certs_dir), r"client\.root\.crt: key client\.root\.key is missing")


def test_mismatched_key(certs_dir, ca, mk):
    _standard(certs_dir, ca, mk)
    mk.write(os.path.join(certs_dir, "client.root.key"), pki.private_key_pem(mk.ec()), 0o600)
    _only(_problems(certs_dir), r"client\.root\.crt: tls\.X509KeyPair fails: key client\.root\.key does not match the "
                                r"certificate")


def test_unreadable_key(certs_dir, ca, mk):
    _standard(certs_dir, ca, mk)
    mk.write(os.path.join(certs_dir, "node.key"), b"nope", 0o600)
    _only(_problems(certs_dir), r"node\.crt: tls\.X509KeyPair fails: node\.key: no PEM PRIVATE KEY block found")


def test_key_mode_0644(certs_dir, ca, mk):
    _standard(certs_dir, ca, mk)
    os.chmod(os.path.join(certs_dir, "node.key"), 0o644)
    _only(_problems(certs_dir), r"node\.crt: key node\.key: mode 0644 exceeds -rwx------ \(CockroachDB refuses group "
                                r"or world access to keys\)")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_root_owned_0640_key_and_process_group(certs_dir, ca, mk):
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:  # pragma: no cover
        pytest.skip("no user 'nobody' on this host")
    _standard(certs_dir, ca, mk)
    key = os.path.join(certs_dir, "node.key")
    os.chown(key, 0, nobody.pw_gid)
    os.chmod(key, 0o640)
    assert _problems(certs_dir, process_user="nobody") == []
    assert _problems(certs_dir, process_user=str(nobody.pw_uid)) == []
    # the default process user is the certs dir's owner (root here, gid 0): not the key's group
    _only(_problems(certs_dir), r"node\.crt: key node\.key: mode 0640 exceeds -rwx------; 0740 is allowed only for a "
                                r"root-owned key whose group is the cockroach process's gid "
                                r"\(key gid %d, process gid 0\)" % nobody.pw_gid)
    assert _problems(certs_dir, process_group=str(nobody.pw_gid)) == []
    with pytest.raises(CrdbTlsError, match=r"process_user 'no-such-user-x': no such user on this host"):
        certsdir.inspect(certs_dir, process_user="no-such-user-x")


def test_ca_key_in_certs_dir(certs_dir, ca, mk):
    _standard(certs_dir, ca, mk)
    mk.write(os.path.join(certs_dir, "ca.key"), pki.private_key_pem(ca.key), 0o600)
    mk.write(os.path.join(certs_dir, "ca-client.key"), pki.private_key_pem(ca.key), 0o600)
    assert _problems(certs_dir) == [
        "ca-client.key: a CA key in the certs dir; CockroachDB never reads it there and it must not be on the node",
        "ca.key: a CA key in the certs dir; CockroachDB never reads it there and it must not be on the node"]


def test_node_cert_from_another_ca(certs_dir, ca, other_ca, mk):
    _standard(certs_dir, ca, mk)
    node, key, _spec = mk.leaf(other_ca, "node", hosts=HOSTS)
    mk.install(certs_dir, "node.crt", node, key)
    assert _problems(certs_dir) == [
        "node.crt: server side: does not verify against ca.crt as serverAuth: certificate signed by unknown authority "
        "(issuer CN=Other CA,O=Cockroach is not among the trusted roots: CN=Cockroach CA,O=Cockroach)",
        "node.crt: node-to-node client side: does not verify against ca.crt as clientAuth: certificate signed by "
        "unknown authority (issuer CN=Other CA,O=Cockroach is not among the trusted roots: CN=Cockroach CA,O=Cockroach)"]


def test_rotation_bundle_trusts_both(certs_dir, ca, other_ca, mk):
    """ca.crt = new CA + old CA: certs of either verify (CA rotation without downtime)."""
    _standard(certs_dir, ca, mk)
    mk.install_ca(certs_dir, "ca.crt", other_ca, ca)
    assert _problems(certs_dir) == []


def _split_ca(certs_dir, ca, client_ca, mk, client_signer=None):
    mk.install_ca(certs_dir, "ca.crt", ca)
    mk.install_ca(certs_dir, "ca-client.crt", client_ca)
    node, key, _spec = mk.leaf(ca, "node_server", hosts=HOSTS)
    mk.install(certs_dir, "node.crt", node, key)
    cnode, ckey, _spec = mk.leaf(client_ca, "node_client")
    mk.install(certs_dir, "client.node.crt", cnode, ckey)
    root, rkey, _spec = mk.leaf(client_signer or client_ca, "client", user="root")
    mk.install(certs_dir, "client.root.crt", root, rkey)


def test_split_ca_clean(certs_dir, ca, client_ca, mk):
    _split_ca(certs_dir, ca, client_ca, mk)
    report = certsdir.inspect(certs_dir, layout="split_ca")
    assert report["problems"] == []
    assert certsdir.inspect(certs_dir)["layout"] == "split_ca"


def test_client_cert_verified_against_ca_client(certs_dir, ca, client_ca, mk):
    _split_ca(certs_dir, ca, client_ca, mk, client_signer=ca)
    _only(_problems(certs_dir), r"client\.root\.crt: does not verify against ca-client\.crt as clientAuth: certificate "
                                r"signed by unknown authority \(issuer CN=Cockroach CA,O=Cockroach is not among the "
                                r"trusted roots: CN=Cockroach Client CA,O=Cockroach\)")
    # without ca-client.crt the same client cert verifies against ca.crt (and client.node.crt then fails)
    os.unlink(os.path.join(certs_dir, "ca-client.crt"))
    _only(_problems(certs_dir), r"client\.node\.crt: node-to-node client side: does not verify against ca\.crt as "
                                r"clientAuth: .*issuer CN=Cockroach Client CA,O=Cockroach is not among.*")


def test_split_node_without_cn_node_is_fine(certs_dir, ca, mk):
    mk.install_ca(certs_dir, "ca.crt", ca)
    node, key, spec = mk.leaf(ca, "node_server", hosts=HOSTS)
    assert pki.common_name(node) == "n1.example.com"
    mk.install(certs_dir, "node.crt", node, key)
    cnode, ckey, _spec = mk.leaf(ca, "node_client")
    mk.install(certs_dir, "client.node.crt", cnode, ckey)
    report = certsdir.inspect(certs_dir, layout="split_node")
    assert report["problems"] == [] and report["layout"] == "split_node"
    # the same node.crt without client.node.crt: CockroachDB needs CN=node and clientAuth from it
    os.unlink(os.path.join(certs_dir, "client.node.crt"))
    os.unlink(os.path.join(certs_dir, "client.node.key"))
    assert _problems(certs_dir) == [
        "node.crt: node-to-node client side: does not verify against ca.crt as clientAuth: incompatible key usage: "
        "CN=n1.example.com,O=Cockroach does not allow clientAuth (extended key usage serverAuth)"]


def test_client_node_cert_with_other_cn(certs_dir, ca, mk):
    _standard(certs_dir, ca, mk)
    cert, key, _spec = mk.leaf(ca, "client", user="crdb")
    mk.install(certs_dir, "client.node.crt", cert, key)
    assert _problems(certs_dir) == [
        "client.node.crt: node-to-node RPC: principals [crdb] include neither 'node' nor 'root' (node-to-node RPC "
        "needs one; or set node_cert_dn)"]
    # with the principal map CockroachDB's --cert-principal-map gives, it is accepted
    assert _problems(certs_dir, identity={"principal_map": {"crdb": "node"}}) == []


def test_client_cert_as_node_crt(certs_dir, ca, mk):
    _standard(certs_dir, ca, mk)
    cert, key, _spec = mk.leaf(ca, "node_client")
    mk.install(certs_dir, "node.crt", cert, key)
    _only(_problems(certs_dir), r"node\.crt: server side: does not verify against ca\.crt as serverAuth: incompatible "
                                r"key usage: CN=node,O=Cockroach does not allow serverAuth \(extended key usage "
                                r"clientAuth\)")


def test_client_cert_of_wrong_user(certs_dir, ca, mk):
    _standard(certs_dir, ca, mk)
    cert, key, _spec = mk.leaf(ca, "client", user="alice")
    mk.install(certs_dir, "client.bob.crt", cert, key)
    _only(_problems(certs_dir), r"client\.bob\.crt: principals \[alice\] do not include 'bob': CockroachDB would not "
                                r"authenticate it as bob")
    assert certsdir.inspect(certs_dir)["verdict"]["clients"]["bob"] == {
        "ok": False, "user": "alice", "error": _problems(certs_dir)[0][len("client.bob.crt: "):]}


def test_expected_host_missing(certs_dir, ca, mk):
    _standard(certs_dir, ca, mk)
    _only(_problems(certs_dir, expected_hosts=["n1.example.com", "db9.example.com"]),
          r"node\.crt: server side: does not verify against ca\.crt as serverAuth for db9\.example\.com: certificate is "
          r"not valid for db9\.example\.com \(its DNS SANs: n1\.example\.com\)")
    with pytest.raises(CrdbTlsError, match=r"expected host 'bad_host' is neither"):
        certsdir.inspect(certs_dir, expected_hosts=["bad_host"])


def test_expected_ui_host(certs_dir, ca, other_ca, mk):
    _standard(certs_dir, ca, mk)
    ui, key, _spec = mk.leaf(other_ca, "ui", hosts=["console.example.com"])
    mk.install(certs_dir, "ui.crt", ui, key)
    assert _problems(certs_dir, expected_ui_hosts=["console.example.com"]) == []
    _only(_problems(certs_dir, expected_ui_hosts=["admin.example.com"]),
          r"ui\.crt: DB Console: does not verify against ca\.crt as serverAuth for admin\.example\.com: certificate is "
          r"not valid for admin\.example\.com \(its DNS SANs: console\.example\.com\)")


def test_ui_cert_from_another_ca_is_fine(certs_dir, ca, other_ca, mk):
    _standard(certs_dir, ca, mk)
    ui, key, _spec = mk.leaf(other_ca, "ui", hosts=["console.example.com"])
    mk.install(certs_dir, "ui.crt", ui, key)
    report = certsdir.inspect(certs_dir)
    assert report["problems"] == []
    assert [e["usage"] for e in report["entries"] if e["file"] == "ui.crt"] == ["UI"]


def test_intermediates(certs_dir, org_root, intermediate, mk):
    mk.install_ca(certs_dir, "ca.crt", org_root)
    node, key, _spec = mk.leaf(intermediate, "node", hosts=HOSTS)
    mk.install(certs_dir, "node.crt", node, key, chain=[intermediate.certificate])
    report = certsdir.inspect(certs_dir)
    assert report["problems"] == []
    assert [e["notes"] for e in report["entries"] if e["file"] == "node.crt"] == [
        "num certs: 2, addresses: n1.example.com,10.0.0.1"]
    # the intermediate missing: the node cannot send it
    mk.install(certs_dir, "node.crt", node, key)
    unknown = ("does not verify against ca.crt as %s: certificate signed by unknown authority (issuer CN=Org "
               "Intermediate CA,O=Org is not among the trusted roots: CN=Org Root CA,O=Cockroach)")
    assert _problems(certs_dir) == ["node.crt: server side: " + unknown % "serverAuth",
                                    "node.crt: node-to-node client side: " + unknown % "clientAuth"]


def test_intermediates_out_of_order(certs_dir, org_root, intermediate, mk):
    mk.install_ca(certs_dir, "ca.crt", org_root)
    node, key, _spec = mk.leaf(intermediate, "node", hosts=HOSTS)
    mk.install(certs_dir, "node.crt", node, key, chain=[org_root.certificate, intermediate.certificate])
    # Go builds the chain from an unordered pool: only the leaf's position matters
    report = certsdir.inspect(certs_dir, expected_hosts=HOSTS)
    assert report["problems"] == [] and report["verdict"]["node"] == {"ok": True, "error": ""}


def test_expiring_within_min_remaining(certs_dir, ca, mk):
    node, _key = _standard(certs_dir, ca, mk, node_kwargs={"lifetime": "10d"})
    assert _problems(certs_dir, min_remaining="9d") == []
    _only(_problems(certs_dir, min_remaining="30d"),
          r"node\.crt: expires on %s, within min_remaining \(30d\)"
          % re.escape(pki.not_after(node).strftime("%Y/%m/%d %H:%M")))


def test_expired(certs_dir, ca, mk):
    past = pki.utcnow() - datetime.timedelta(days=10)
    node, _key = _standard(certs_dir, ca, mk, node_kwargs={"lifetime": "2d", "now": past})
    expired = "CN=node,O=Cockroach expired on %s" % pki.not_after(node).strftime("%Y-%m-%d %H:%M UTC")
    assert _problems(certs_dir) == [
        "node.crt: server side: does not verify against ca.crt as serverAuth: " + expired,
        "node.crt: node-to-node client side: does not verify against ca.crt as clientAuth: " + expired]


def test_expired_ca_in_bundle(certs_dir, ca, mk):
    _standard(certs_dir, ca, mk)
    old_key = mk.ec()
    old = pki.generate_ca(old_key, "Old CA", lifetime="1d", now=pki.utcnow() - datetime.timedelta(days=5))
    mk.write(os.path.join(certs_dir, "ca.crt"), pki.certificates_pem([ca.certificate, old]), 0o644)
    # harmless while another root verifies (right after a CA rotation): a warning
    report = certsdir.inspect(certs_dir)
    assert report["problems"] == []
    _only(report["warnings"], r"ca\.crt: CN=Old CA,O=Cockroach expired on %s \(certificate 2\)"
          % re.escape(pki.not_after(old).strftime("%Y-%m-%d %H:%M UTC")))


def test_layout_files_missing(certs_dir, ca, mk):
    _standard(certs_dir, ca, mk)
    assert _problems(certs_dir, layout="split_ca") == [
        "ca-client.crt: missing (required by the split_ca layout)",
        "client.node.crt: missing (required by the split_ca layout)"]
    with pytest.raises(CrdbTlsError, match=r"unknown layout 'weird'"):
        certsdir.inspect(certs_dir, layout="weird")


def test_no_ca_to_verify(certs_dir, ca, mk):
    _standard(certs_dir, ca, mk)
    os.unlink(os.path.join(certs_dir, "ca.crt"))
    assert _problems(certs_dir) == ["node.crt: server side: no ca.crt in the certs dir to verify it",
                                    "node.crt: node-to-node client side: no ca-client.crt or ca.crt in the certs dir "
                                    "to verify it",
                                    "client.root.crt: no ca-client.crt or ca.crt in the certs dir to verify it"]


def test_interrupted_journal_pending(certs_dir, ca, mk):
    _standard(certs_dir, ca, mk)
    tmp = ".crdb-tls.node.crt.0123456789ab.tmp"
    mk.write(os.path.join(certs_dir, tmp), b"x", 0o600)
    mk.write(os.path.join(certs_dir, fileio.JOURNAL_NAME), json.dumps([[tmp, "node.crt"]]).encode(), 0o600)
    _only(_problems(certs_dir), r"node\.crt: an interrupted update left %s pending; the next crdb\.tls write "
                                r"completes it" % re.escape(tmp))


def test_format_table_like_cockroach_cert_list(certs_dir, ca, mk):
    node, _key = _standard(certs_dir, ca, mk)
    mk.write(os.path.join(certs_dir, "client.bob.crt"), b"garbage\n", 0o644)
    report = certsdir.inspect(certs_dir)
    lines = certsdir.format_table(report).splitlines()
    assert lines[0] == "Certificate directory: %s" % certs_dir
    header = [c.strip() for c in lines[1].split("|")]
    assert header == ["Usage", "Certificate File", "Key File", "Expires", "Notes", "Error"]
    assert set(lines[2].replace("-+-", "")) == {" ", "-"}
    rows = dict((r[1], r) for r in ([c.strip() for c in line.split("|")] for line in lines[3:-1]))
    assert lines[-1] == "(4 rows)"
    assert rows["node.crt"] == ["Node", "node.crt", "node.key", pki.not_after(node).strftime("%Y/%m/%d %H:%M"),
                                "num certs: 1, addresses: n1.example.com,10.0.0.1", ""]
    assert rows["ca.crt"][:3] == ["CA", "ca.crt", ""] and rows["ca.crt"][4] == "num certs: 1"
    assert rows["client.root.crt"][4] == "num certs: 1, user: root"
    assert rows["client.bob.crt"][0] == "Client" and "no certificates found" in rows["client.bob.crt"][5]
    # columns line up
    assert len(set(line.index("|") for line in lines[1:-1] if "|" in line)) == 1
