# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""stamp.py: a recorded pass of install's controller check, and when it stops counting."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import stat

from ansible_collections.crdb.tls.plugins.module_utils import authority, certsdir, fleet, pki, stamp

LAYOUT = "standard"
NODES = {
    "n1": {"sans": ["n1.example.com", "127.0.0.1"]},
    "n2": {"sans": ["n2.example.com", "10.0.0.2"]},
}


def make_pki(pki_dir):
    authority.ensure(pki_dir, "ca", key_type="ecdsa")
    return pki_dir


def issue(pki_dir):
    fleet.issue(pki_dir, LAYOUT, nodes=NODES, users=["root", "app"], node_users=["root"], key_type="ecdsa")


def role_params(host):
    """The parameters the node role's install task passes for ``host``."""
    return dict(expected_hosts=NODES[host]["sans"], expected_ui_hosts=[], layout=LAYOUT, purpose="node")


def stamped(directory, **params):
    return stamp.matches(directory, stamp.shipped_names(directory), **params)


def read_record(directory):
    with open(os.path.join(directory, stamp.STAMP_NAME)) as handle:
        return json.load(handle)


def test_fleet_records_the_install_check_of_every_set(pki_dir):
    issue(make_pki(pki_dir))
    for host in NODES:
        directory = fleet.issued_dir(pki_dir, host)
        assert stamped(directory, **role_params(host))
        assert stat.S_IMODE(os.stat(os.path.join(directory, stamp.STAMP_NAME)).st_mode) == 0o600
        record = read_record(directory)
        assert sorted(record["files"]) == ["ca.crt", "client.root.crt", "client.root.key", "node.crt", "node.key"]
        node = pki.load_certificates(open(os.path.join(directory, "node.crt"), "rb").read(), "node.crt")[0]
        ca = pki.load_certificates(open(os.path.join(directory, "ca.crt"), "rb").read(), "ca.crt")[0]
        # The window is where every certificate of the set is valid.
        assert record["valid_until"] == min(pki.not_after(node).timestamp(), pki.not_after(ca).timestamp())
        assert record["valid_from"] == max(pki.not_before(node).timestamp(), pki.not_before(ca).timestamp())
    for user in ("root", "app"):
        assert stamped(fleet.user_dir(pki_dir, user), layout=LAYOUT, purpose="client")


def test_record_holds_only_for_the_same_parameters(pki_dir):
    issue(make_pki(pki_dir))
    directory = fleet.issued_dir(pki_dir, "n1")
    params = role_params("n1")

    def changed(name, value):
        out = dict(params)
        out[name] = value
        return out

    assert stamped(directory, **changed("expected_hosts", list(reversed(params["expected_hosts"]))))
    assert not stamped(directory, **changed("expected_hosts", params["expected_hosts"] + ["extra.example.com"]))
    assert not stamped(directory, **changed("expected_ui_hosts", ["console.example.com"]))
    assert not stamped(directory, **changed("layout", "split_node"))
    assert not stamped(directory, **changed("purpose", "client"))


def test_record_holds_only_for_the_same_bytes(pki_dir):
    issue(make_pki(pki_dir))
    n1, n2 = fleet.issued_dir(pki_dir, "n1"), fleet.issued_dir(pki_dir, "n2")
    # n2's node.crt in n1's set: different bytes, so the record no longer counts...
    with open(os.path.join(n2, "node.crt"), "rb") as handle:
        other = handle.read()
    with open(os.path.join(n1, "node.crt"), "wb") as handle:
        handle.write(other)
    assert not stamped(n1, **role_params("n1"))
    # ...and the check, run again, finds what is wrong and records nothing.
    before = read_record(n1)
    problems = certsdir.install_problems(n1, **role_params("n1"))
    assert "node.crt: tls.X509KeyPair fails: key node.key does not match the certificate" in problems, problems
    assert read_record(n1) == before


def test_record_holds_only_for_the_same_files(pki_dir):
    issue(make_pki(pki_dir))
    directory = fleet.issued_dir(pki_dir, "n1")
    assert not stamp.matches(directory, ["ca.crt", "node.crt"], **role_params("n1"))
    os.unlink(os.path.join(directory, "client.root.key"))
    assert not stamped(directory, **role_params("n1"))


def test_record_expires_with_the_first_certificate_of_the_set(pki_dir):
    issue(make_pki(pki_dir))
    directory = fleet.issued_dir(pki_dir, "n1")
    record = read_record(directory)
    assert stamped(directory, now=record["valid_until"] - 1, **role_params("n1"))
    assert not stamped(directory, now=record["valid_until"], **role_params("n1"))
    assert not stamped(directory, now=record["valid_from"] - 1, **role_params("n1"))


def test_unreadable_or_foreign_record_does_not_count(pki_dir):
    issue(make_pki(pki_dir))
    directory = fleet.issued_dir(pki_dir, "n1")
    path = os.path.join(directory, stamp.STAMP_NAME)
    record = read_record(directory)
    with open(path, "w") as handle:
        handle.write("{not json")
    assert not stamped(directory, **role_params("n1"))
    with open(path, "w") as handle:
        json.dump(dict(record, format=record["format"] + 1), handle)
    assert not stamped(directory, **role_params("n1"))


def test_a_partial_set_is_checked_and_recorded_for_its_files(pki_dir):
    issue(make_pki(pki_dir))
    directory = fleet.issued_dir(pki_dir, "n1")
    os.unlink(os.path.join(directory, stamp.STAMP_NAME))
    names = ["ca.crt", "client.root.crt", "client.root.key"]
    assert certsdir.install_problems(directory, names, layout=LAYOUT, purpose="node") == []
    assert sorted(read_record(directory)["files"]) == names
    assert stamp.matches(directory, names, layout=LAYOUT, purpose="node")
    assert not stamped(directory, layout=LAYOUT, purpose="node")


def test_check_mode_records_nothing(pki_dir):
    issue(make_pki(pki_dir))
    directory = fleet.issued_dir(pki_dir, "n1")
    os.unlink(os.path.join(directory, stamp.STAMP_NAME))
    assert certsdir.install_problems(directory, record=False, **role_params("n1")) == []
    assert not os.path.exists(os.path.join(directory, stamp.STAMP_NAME))


def test_a_record_that_cannot_be_written_is_no_error(pki_dir):
    issue(make_pki(pki_dir))
    directory = fleet.issued_dir(pki_dir, "n1")
    path = os.path.join(directory, stamp.STAMP_NAME)
    os.unlink(path)
    os.mkdir(path)   # the rename onto it fails, even for root
    assert certsdir.install_problems(directory, **role_params("n1")) == []
    assert os.path.isdir(path) and not stamped(directory, **role_params("n1"))
    assert [n for n in os.listdir(directory) if n.startswith(".") and n != stamp.STAMP_NAME] == []
