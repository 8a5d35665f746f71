# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CockroachDB's certs-dir rules (rules.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import stat
import unicodedata

import pytest

from ansible_collections.crdb.tls.plugins.module_utils import rules
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError


# --------------------------------------------------------------------------
# validate_username
# --------------------------------------------------------------------------

@pytest.mark.parametrize("user", [
    "root", "u_1", "a.b", "_x", "9lives", "a-b", "stra\u00dfe", "\u00df", "\u00e9t\u00e9", "x" * 63,
    "a..b", "\u00e9" * 31,   # CockroachDB's pattern allows '..'; 63 bytes (62 here)
])
def test_validate_username_accepts(user):
    assert rules.validate_username(user) == user


@pytest.mark.parametrize("user, pattern", [
    ("Root", r"user 'Root' is not a valid CockroachDB SQL user name: has upper case 'R'"),
    ("roOt", r"user 'roOt'.*has upper case 'O' \(SQL user names are lower case\)"),
    ("a/b", r"user 'a/b'.*contains a path separator"),
    ("x" * 64, r"user 'x{64}'.*longer than 63 bytes \(64\)"),
    ("\u00e9" * 32, r"longer than 63 bytes \(64\)"),
    ("-x", r"user '-x'.*has '-' at position 1"),
    (".x", r"user '\.x'.*has '\.' at position 1"),
    ("a b", r"user 'a b'.*has ' ' at position 2"),
    ("\u0661", r"has '\u0661' at position 1"),  # a non-ASCII digit is not 0-9
])
def test_validate_username_refuses(user, pattern):
    with pytest.raises(CrdbTlsError, match=pattern):
        rules.validate_username(user)


@pytest.mark.parametrize("user", ["", None, 5])
def test_validate_username_refuses_empty(user):
    with pytest.raises(CrdbTlsError, match=r"user must be a non-empty SQL user name, got %s" % repr(user)):
        rules.validate_username(user)


def test_validate_username_refuses_non_nfc():
    user = unicodedata.normalize("NFD", "\u00e9t\u00e9")
    assert user != "\u00e9t\u00e9"
    with pytest.raises(CrdbTlsError, match=r"is not a valid CockroachDB SQL user name: not in Unicode NFC form"):
        rules.validate_username(user)
    # ... while its NFC form is fine
    assert rules.validate_username(unicodedata.normalize("NFC", user)) == "\u00e9t\u00e9"


def test_validate_username_what_names_the_source():
    with pytest.raises(CrdbTlsError, match=r"^owner 'Bob' is not"):
        rules.validate_username("Bob", what="owner")


# --------------------------------------------------------------------------
# classify
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name, kind, qualifier", [
    ("ca.crt", rules.KIND_CA, None),
    ("ca-client.crt", rules.KIND_CLIENT_CA, None),
    ("ca-ui.crt", rules.KIND_UI_CA, None),
    ("ca-client-tenant.crt", rules.KIND_TENANT_CLIENT_CA, None),
    ("node.crt", rules.KIND_NODE, None),
    ("ui.crt", rules.KIND_UI, None),
    ("client.root.crt", rules.KIND_CLIENT, "root"),
    ("client.node.crt", rules.KIND_CLIENT, "node"),
    ("client.a.b.crt", rules.KIND_CLIENT, "a.b"),
    ("client.stra\u00dfe.crt", rules.KIND_CLIENT, "stra\u00dfe"),
    ("client-tenant.10.crt", rules.KIND_TENANT_CLIENT, "10"),
    ("tenant-signing.2.crt", rules.KIND_TENANT_SIGNING, "2"),
    # the loader takes any non-empty client name and any tenant "id" (the verifier judges them)
    ("client.Root.crt", rules.KIND_CLIENT, "Root"),
    ("client...crt", rules.KIND_CLIENT, "."),
    ("client-tenant.x.crt", rules.KIND_TENANT_CLIENT, "x"),
    ("tenant-signing.1.2.crt", rules.KIND_TENANT_SIGNING, "1.2"),
])
def test_classify_recognised(name, kind, qualifier):
    assert rules.classify(name) == (kind, qualifier, None)


@pytest.mark.parametrize("name, pattern", [
    ("ca.old.crt", r"'ca\.old\.crt' is not a file name CockroachDB recognises; it would be skipped"),
    ("client.crt", r"'client\.crt' is not a file name CockroachDB recognises"),
    ("nodes.crt", r"'nodes\.crt' is not a file name"),
    ("client..crt", r"'client\.\.crt' is not a file name CockroachDB recognises"),
    ("client-tenant.crt", r"'client-tenant\.crt' is not a file name"),
])
def test_classify_refused(name, pattern):
    kind, qualifier, reason = rules.classify(name)
    assert kind is None and qualifier is None
    assert reason is not None
    assert re.search(pattern, reason), reason


@pytest.mark.parametrize("name", ["node.key", "ca.key", "client.root.key.pk8", "README", "node.crt.bak"])
def test_classify_ignores_non_crt(name):
    assert rules.classify(name) is None


# --------------------------------------------------------------------------
# Which CA, which EKUs, which principal
# --------------------------------------------------------------------------

STANDARD = {"ca.crt", "node.crt", "node.key", "client.root.crt"}
SPLIT_NODE = STANDARD | {"client.node.crt"}
SPLIT_CA = SPLIT_NODE | {"ca-client.crt"}


@pytest.mark.parametrize("kind, user, present, expected", [
    (rules.KIND_NODE, None, STANDARD, "ca.crt"),
    (rules.KIND_NODE, None, SPLIT_CA, "ca.crt"),
    (rules.KIND_CLIENT, "root", STANDARD, "ca.crt"),
    (rules.KIND_CLIENT, "node", SPLIT_NODE, "ca.crt"),
    (rules.KIND_CLIENT, "root", SPLIT_CA, "ca-client.crt"),
    (rules.KIND_CLIENT, "node", SPLIT_CA, "ca-client.crt"),
    (rules.KIND_UI, None, STANDARD, "ca.crt"),
    (rules.KIND_UI, None, STANDARD | {"ca-ui.crt"}, "ca-ui.crt"),
    (rules.KIND_TENANT_CLIENT, "2", STANDARD | {"ca-client-tenant.crt"}, "ca-client-tenant.crt"),
    (rules.KIND_TENANT_CLIENT, "2", SPLIT_CA, "ca-client.crt"),
    (rules.KIND_TENANT_CLIENT, "2", STANDARD, "ca.crt"),
])
def test_verifying_ca_file(kind, user, present, expected):
    assert rules.verifying_ca_file(kind, user, present) == expected


@pytest.mark.parametrize("kind, user, present, expected", [
    (rules.KIND_NODE, None, STANDARD, ("serverAuth", "clientAuth")),
    (rules.KIND_NODE, None, SPLIT_NODE, ("serverAuth",)),
    (rules.KIND_UI, None, STANDARD, ("serverAuth",)),
    (rules.KIND_CLIENT, "root", STANDARD, ("clientAuth",)),
    (rules.KIND_CLIENT, "node", SPLIT_NODE, ("clientAuth",)),
    (rules.KIND_TENANT_CLIENT, "2", STANDARD, ("clientAuth",)),
    (rules.KIND_CA, None, STANDARD, ()),
])
def test_required_ekus(kind, user, present, expected):
    assert rules.required_ekus(kind, user, present) == expected


def test_required_principal():
    assert rules.required_principal(rules.KIND_NODE, None, STANDARD) == "node"
    assert rules.required_principal(rules.KIND_NODE, None, SPLIT_NODE) is None
    assert rules.required_principal(rules.KIND_CLIENT, "maxroach", STANDARD) == "maxroach"
    assert rules.required_principal(rules.KIND_UI, None, STANDARD) is None


# --------------------------------------------------------------------------
# Key permissions
# --------------------------------------------------------------------------

def _mode(perms):
    return stat.S_IFREG | perms


@pytest.mark.parametrize("perms, uid, gid, pgid", [
    (0o600, 1000, 1000, 1000),
    (0o400, 1000, 1000, None),
    (0o700, 1000, 1000, 1000),
    (0o640, 0, 999, 999),     # root-owned, group = process group
    (0o740, 0, 999, 999),
    (0o600, 0, 0, 999),
])
def test_key_mode_accepted(perms, uid, gid, pgid):
    assert rules.key_mode_problem(_mode(perms), uid, gid, pgid) is None


def test_key_mode_group_readable_non_root_refused():
    problem = rules.key_mode_problem(_mode(0o640), 1000, 999, 999)
    assert problem == "mode 0640 exceeds -rwx------ (CockroachDB refuses group or world access to keys)"


def test_key_mode_root_owned_other_group_refused():
    problem = rules.key_mode_problem(_mode(0o640), 0, 4, 999)
    assert problem.startswith("mode 0640 exceeds -rwx------; 0740 is allowed only for a root-owned key")
    assert "(key gid 4, process gid 999)" in problem


def test_key_mode_root_owned_unknown_process_gid_refused():
    assert "process gid None" in rules.key_mode_problem(_mode(0o640), 0, 0, None)


@pytest.mark.parametrize("perms, uid", [(0o644, 1000), (0o644, 0), (0o604, 0), (0o750, 0), (0o660, 0)])
def test_key_mode_world_or_group_write_refused(perms, uid):
    problem = rules.key_mode_problem(_mode(perms), uid, 999, 999)
    assert problem == "mode %04o exceeds -rwx------ (CockroachDB refuses group or world access to keys)" % perms


def test_key_install_mode():
    assert rules.key_install_mode(False) == 0o600
    assert rules.key_install_mode(True) == 0o640
    # what is installed is what is accepted
    assert rules.key_mode_problem(_mode(rules.key_install_mode(False)), 1000, 1000, 1000) is None
    assert rules.key_mode_problem(_mode(rules.key_install_mode(True)), 0, 999, 999) is None


# --------------------------------------------------------------------------
# Layouts and file names
# --------------------------------------------------------------------------

def test_layout_files():
    assert rules.layout_files("standard") == ("ca.crt", "node.crt")
    assert rules.layout_files("split_node") == ("ca.crt", "node.crt", "client.node.crt")
    assert rules.layout_files("split_ca") == ("ca.crt", "ca-client.crt", "node.crt", "client.node.crt")
    with pytest.raises(CrdbTlsError, match=r"unknown layout 'split' \(known: standard, split_node, split_ca\)"):
        rules.layout_files("split")


def test_layout_profiles_and_client_ca_role():
    assert rules.layout_profiles("standard") == {"node": "ca"}
    assert rules.layout_profiles("split_ca") == {"node_server": "ca", "node_client": "client_ca"}
    assert rules.client_ca_role("split_ca") == "client_ca"
    assert rules.client_ca_role("split_node") == "ca"


@pytest.mark.parametrize("profile, user, expected", [
    ("ca", None, "ca.crt"),
    ("node", None, "node.crt"),
    ("node_server", None, "node.crt"),
    ("node_client", None, "client.node.crt"),
    ("ui", None, "ui.crt"),
    ("client", "root", "client.root.crt"),
    ("client", "a.b", "client.a.b.crt"),
])
def test_cert_file_for(profile, user, expected):
    assert rules.cert_file_for(profile, user) == expected
    # and the loader recognises every name the writer produces
    assert rules.classify(expected)[0] is not None


def test_cert_file_for_errors():
    with pytest.raises(CrdbTlsError, match=r"unknown profile 'server' \(known: ca, client, node"):
        rules.cert_file_for("server")
    with pytest.raises(CrdbTlsError, match=r"profile 'client' needs a user"):
        rules.cert_file_for("client")
    with pytest.raises(CrdbTlsError, match=r"user '\.\./etc'.*contains a path separator"):
        rules.cert_file_for("client", "../etc")


def test_key_and_pkcs8_names():
    assert rules.key_name("client.root.crt") == "client.root.key"
    assert rules.pkcs8_name("client.root.crt") == "client.root.key.pk8"
    with pytest.raises(CrdbTlsError, match=r"'node\.pem' is not a certificate file name"):
        rules.key_name("node.pem")


def test_check_client_user_refuses_node_by_name():
    assert rules.check_client_user("root") == "root"
    with pytest.raises(CrdbTlsError) as err:
        rules.check_client_user("node")
    assert str(err.value).startswith("client user 'node' is refused: it is CockroachDB's node identity")
    with pytest.raises(CrdbTlsError, match=r"^client user 7 is of type int, not a SQL user name \(a string\)$"):
        rules.check_client_user(7)
    with pytest.raises(CrdbTlsError, match="is not a valid CockroachDB SQL user name"):
        rules.check_client_user("Root")


def test_node_identity_files():
    for name in ("node.crt", "node.key", "client.node.crt", "client.node.key", "client.node.key.pk8"):
        assert rules.is_node_identity_file(name), name
    for name in ("ca.crt", "client.root.crt", "client.root.key", "ui.crt", "client.nodes.crt", "README"):
        assert not rules.is_node_identity_file(name), name
