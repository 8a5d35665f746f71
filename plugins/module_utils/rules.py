# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rules CockroachDB itself applies to a certs dir, in one place.

Everything that names a file, decides which CA verifies which certificate,
says which extended key usages a certificate needs, validates a SQL user name
or judges a key file's permissions lives here, and is used both by the code
that writes certificates and by the code that validates a certs dir.

Sources: CockroachDB ``pkg/security/certificate_loader.go``,
``certificate_manager.go``, ``permission_check.go`` and
``pkg/security/username/username.go`` (see the project's reference notes).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import stat
import unicodedata

from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

CERT_SUFFIX = ".crt"
KEY_SUFFIX = ".key"
PKCS8_SUFFIX = ".key.pk8"

# Modes the collection installs (CockroachDB's own `cockroach cert` modes).
DIR_MODE = 0o700
CERT_MODE = 0o644
KEY_MODE = 0o600
# Root-owned key readable by the cockroach process's group: the one exception
# CockroachDB allows to its 0700 rule.
KEY_MODE_ROOT_OWNED = 0o640

# The most a key file may allow (sysutil.ExceedsPermissions).
KEY_MAX_PERMS = 0o700
KEY_MAX_PERMS_ROOT_OWNED = 0o740

# Lifetimes and back-dating as `cockroach cert` (pkg/cli/cert.go, x509.go).
DEFAULT_CA_LIFETIME = datetime.timedelta(hours=87840)
DEFAULT_LEAF_LIFETIME = datetime.timedelta(hours=43920)
BACKDATE = datetime.timedelta(hours=24)
DEFAULT_ORGANIZATION = "Cockroach"
DEFAULT_CA_COMMON_NAME = "Cockroach CA"
DEFAULT_CLIENT_CA_COMMON_NAME = "Cockroach Client CA"
DEFAULT_OCSP_COMMON_NAME = "Cockroach OCSP Responder"

MAX_USERNAME_LENGTH = 63
NODE_USER = "node"

# Kinds of file a node recognises, as CockroachDB's loader names them.
KIND_CA = "CA"
KIND_CLIENT_CA = "Client CA"
KIND_UI_CA = "UI CA"
KIND_TENANT_CLIENT_CA = "Tenant Client CA"
KIND_NODE = "Node"
KIND_UI = "UI"
KIND_CLIENT = "Client"
KIND_TENANT_CLIENT = "Tenant Client"
KIND_TENANT_SIGNING = "Tenant Signing"

CA_KINDS = (KIND_CA, KIND_CLIENT_CA, KIND_UI_CA, KIND_TENANT_CLIENT_CA)

FIXED_NAMES = {
    "ca.crt": KIND_CA,
    "ca-client.crt": KIND_CLIENT_CA,
    "ca-ui.crt": KIND_UI_CA,
    "ca-client-tenant.crt": KIND_TENANT_CLIENT_CA,
    "node.crt": KIND_NODE,
    "ui.crt": KIND_UI,
}

# Which CA roles the collection manages, and the file each is installed as.
CA_ROLES = {
    "ca": "ca.crt",
    "client_ca": "ca-client.crt",
}

# EKU names used throughout (cryptography's OIDs are mapped in pki.py).
EKU_SERVER = "serverAuth"
EKU_CLIENT = "clientAuth"
EKU_OCSP = "OCSPSigning"

# Certificate profiles. `file` is the certificate's name in a certs dir,
# `ca_role` the CA role that signs it in a split-CA layout, `ekus` what Go's
# TLS stack requires of it, `cn` the fixed common name (None: chosen per
# certificate), `sans` whether host names are required.
PROFILES = {
    "ca": {"file": "ca.crt", "ca_role": None, "ekus": (), "cn": None, "sans": False},
    "node": {"file": "node.crt", "ca_role": "ca", "ekus": (EKU_SERVER, EKU_CLIENT),
             "cn": NODE_USER, "sans": True},
    "node_server": {"file": "node.crt", "ca_role": "ca", "ekus": (EKU_SERVER,),
                    "cn": None, "sans": True},
    "node_client": {"file": "client.node.crt", "ca_role": "client_ca",
                    "ekus": (EKU_CLIENT,), "cn": NODE_USER, "sans": False},
    "client": {"file": None, "ca_role": "client_ca", "ekus": (EKU_CLIENT,),
               "cn": None, "sans": False},
    "ui": {"file": "ui.crt", "ca_role": "ca", "ekus": (EKU_SERVER,), "cn": None,
           "sans": True},
    # The delegated OCSP responder of a CA (``openssl ocsp -rsigner``): signed by
    # the CA it answers for, whichever role that is; not a file CockroachDB reads.
    "ocsp": {"file": "ocsp.crt", "ca_role": None, "ekus": (EKU_OCSP,), "cn": None,
             "sans": False},
}
LEAF_PROFILES = tuple(p for p in PROFILES if p != "ca")

LAYOUTS = ("standard", "split_node", "split_ca")


def validate_username(user, what="user"):
    """Return ``user`` if CockroachDB accepts it as a normalised SQL user name.

    CockroachDB's pattern is ``^[\\p{Ll}0-9_][-\\p{Ll}0-9_.]*$`` and at most 63
    bytes (UTF-8), so ``a..b`` is a valid name; it must already be NFC (it is
    read from a file name). ``/`` is refused as well since the name becomes a
    file name (the pattern refuses it anyway).
    """
    if not isinstance(user, str) or not user:
        raise CrdbTlsError("%s must be a non-empty SQL user name, got %r" % (what, user))
    problems = []
    size = len(user.encode("utf-8"))
    if size > MAX_USERNAME_LENGTH:
        problems.append("longer than %d bytes (%d)" % (MAX_USERNAME_LENGTH, size))
    if unicodedata.normalize("NFC", user) != user:
        problems.append("not in Unicode NFC form")
    if "/" in user or "\\" in user or "\x00" in user:
        problems.append("contains a path separator")
    for index, char in enumerate(user):
        lower = unicodedata.category(char) == "Ll"
        ok = lower or char.isdigit() and char.isascii() or char == "_"
        if index > 0:
            ok = ok or char in "-."
        if not ok:
            if char.isupper():
                problems.append("has upper case %r (SQL user names are lower case)" % char)
            else:
                problems.append("has %r at position %d" % (char, index + 1))
            break
    if problems:
        raise CrdbTlsError(
            "%s %r is not a valid CockroachDB SQL user name: %s "
            "(allowed: lower case letters, digits, '_', and after the first character '-' and '.'; "
            "at most %d bytes)" % (what, user, "; ".join(problems), MAX_USERNAME_LENGTH))
    return user


# SQL user names a client certificate (and so a client host) must never carry:
# ``node`` is CockroachDB's node identity (CN=node authenticates as a node).
RESERVED_CLIENT_USERS = {
    NODE_USER: "it is CockroachDB's node identity: a client.node.crt with a client key on a client host "
               "lets that host act as a node; node certificates (node.crt, client.node.crt of the split "
               "layouts) are issued for the nodes only",
}


def check_client_user(user, what="client user"):
    """Return ``user`` when it may be the SQL user of a client certificate; else refuse it by name.

    The one place that says which users a client certificate may be issued
    for: a valid SQL user name (:func:`validate_username`) that is not the node
    identity. Used by the role checks and by every module that issues or
    installs client certificates.
    """
    if not isinstance(user, str):
        raise CrdbTlsError("%s %r is of type %s, not a SQL user name (a string)" % (what, user, type(user).__name__))
    validate_username(user, what)
    if user in RESERVED_CLIENT_USERS:
        raise CrdbTlsError("%s %r is refused: %s" % (what, user, RESERVED_CLIENT_USERS[user]))
    return user


def is_node_identity_file(name):
    """Whether ``name`` (a certificate, key or PKCS#8 file) carries the node identity (node.*, client.node.*).

    Such files belong on the nodes only: a client host never receives them.
    """
    for suffix in (PKCS8_SUFFIX, KEY_SUFFIX):
        if name.endswith(suffix):
            name = name[:-len(suffix)] + CERT_SUFFIX
            break
    classified = classify(name)
    if classified is None:
        return False
    kind, qualifier = classified[0], classified[1]
    return kind == KIND_NODE or (kind == KIND_CLIENT and qualifier == NODE_USER)


def client_cert_name(user):
    """``client.<user>.crt`` for a valid SQL user name."""
    return "client.%s%s" % (validate_username(user), CERT_SUFFIX)


def key_name(cert_name):
    """The key file CockroachDB looks for beside a certificate file."""
    if not cert_name.endswith(CERT_SUFFIX):
        raise CrdbTlsError("%r is not a certificate file name (no %s suffix)" % (cert_name, CERT_SUFFIX))
    return cert_name[:-len(CERT_SUFFIX)] + KEY_SUFFIX


# A key made on the host waits under this hidden name until its certificate is installed.
PENDING_KEY_PREFIX = ".crdb-tls-next."


def pending_key_name(key_file):
    """The hidden name a new key made on the host waits under until its certificate is installed."""
    return PENDING_KEY_PREFIX + key_file


def pkcs8_name(cert_name):
    """``client.<user>.key.pk8``, the DER PKCS#8 copy for Java clients."""
    return key_name(cert_name) + ".pk8"


def cert_file_for(profile, user=None):
    """The certificate file name of a profile (``user`` for ``client``)."""
    if profile not in PROFILES:
        raise CrdbTlsError("unknown profile %r (known: %s)" % (profile, ", ".join(sorted(PROFILES))))
    if profile == "client":
        if user is None:
            raise CrdbTlsError("profile 'client' needs a user")
        return client_cert_name(user)
    return PROFILES[profile]["file"]


def classify(name):
    """Classify a file name the way CockroachDB's certificate loader does.

    Returns ``(kind, qualifier, None)`` for a recognised certificate file
    (``qualifier`` is the user of a client cert or the tenant id), or
    ``(None, None, reason)`` for a ``.crt`` file CockroachDB would skip, or
    ``None`` for a file that is not a ``.crt`` at all (ignored silently).
    """
    if not name.endswith(CERT_SUFFIX):
        return None
    if name in FIXED_NAMES:
        return FIXED_NAMES[name], None, None
    parts = name[:-len(CERT_SUFFIX)].split(".")
    prefix, middle = parts[0], parts[1:]
    if prefix == "client" and ".".join(middle):
        # The loader takes any non-empty name; whether it is a SQL user name is judged by the verifier
        # (a name meant for a principal map loads too).
        return KIND_CLIENT, ".".join(middle), None
    if prefix in ("client-tenant", "tenant-signing") and ".".join(middle):
        # The id is parsed (uint64) by the manager, and a bad one fails the whole load: the verifier says so.
        kind = KIND_TENANT_CLIENT if prefix == "client-tenant" else KIND_TENANT_SIGNING
        return kind, ".".join(middle), None
    return None, None, ("%r is not a file name CockroachDB recognises; it would be skipped "
                        "(expected ca.crt, ca-client.crt, ca-ui.crt, ca-client-tenant.crt, node.crt, ui.crt, "
                        "client.<user>.crt, client-tenant.<id>.crt, tenant-signing.<id>.crt)" % name)


def verifying_ca_file(kind, user, present):
    """Which CA file in the dir verifies a certificate of ``kind``.

    ``present`` is the set of file names in the dir. Peers' node certs verify
    against ``ca.crt``; client certs (``client.node.crt`` included) against
    ``ca-client.crt`` when present, else ``ca.crt``; ``ui.crt`` against
    ``ca-ui.crt`` when present, else ``ca.crt``.
    """
    if kind == KIND_CLIENT:
        return "ca-client.crt" if "ca-client.crt" in present else "ca.crt"
    if kind == KIND_UI:
        return "ca-ui.crt" if "ca-ui.crt" in present else "ca.crt"
    if kind == KIND_TENANT_CLIENT:
        for name in ("ca-client-tenant.crt", "ca-client.crt"):
            if name in present:
                return name
    return "ca.crt"


def required_ekus(kind, user, present):
    """The EKUs Go's TLS stack will require of a certificate of ``kind``."""
    if kind == KIND_NODE:
        # node.crt is dual-use unless client.node.crt takes the client side.
        if "client.node.crt" in present:
            return (EKU_SERVER,)
        return (EKU_SERVER, EKU_CLIENT)
    if kind == KIND_UI:
        return (EKU_SERVER,)
    if kind in (KIND_CLIENT, KIND_TENANT_CLIENT):
        return (EKU_CLIENT,)
    return ()


def required_principal(kind, user, present):
    """The principal (CN or DNS SAN) CockroachDB requires, or None."""
    if kind == KIND_CLIENT:
        return user
    if kind == KIND_NODE and "client.node.crt" not in present:
        return NODE_USER
    return None


def layout_files(layout):
    """The CA and node certificate files a node of ``layout`` must have."""
    if layout == "standard":
        return ("ca.crt", "node.crt")
    if layout == "split_node":
        return ("ca.crt", "node.crt", "client.node.crt")
    if layout == "split_ca":
        return ("ca.crt", "ca-client.crt", "node.crt", "client.node.crt")
    raise CrdbTlsError("unknown layout %r (known: %s)" % (layout, ", ".join(LAYOUTS)))


def layout_profiles(layout):
    """``{profile: ca_role}`` for the node certificates of a layout."""
    if layout == "standard":
        return {"node": "ca"}
    if layout == "split_node":
        return {"node_server": "ca", "node_client": "ca"}
    if layout == "split_ca":
        return {"node_server": "ca", "node_client": "client_ca"}
    raise CrdbTlsError("unknown layout %r (known: %s)" % (layout, ", ".join(LAYOUTS)))


def client_ca_role(layout):
    """The CA role that signs client certificates in a layout."""
    return "client_ca" if layout == "split_ca" else "ca"


def key_mode_problem(st_mode, st_uid, st_gid, process_gid=None):
    """Judge a key file's permissions by CockroachDB's rule.

    Returns None when CockroachDB accepts them, else a message. Only the rwx
    bits count (Go's ``Mode().Perm()``: setuid, setgid and sticky are
    ignored). The rule: no bit outside 0700; or, when the file is owned by
    root and its group is the gid the cockroach process runs with, no bit
    outside 0740.
    """
    perms = stat.S_IMODE(st_mode) & 0o777
    if perms & ~KEY_MAX_PERMS == 0:
        return None
    if st_uid == 0 and process_gid is not None and st_gid == process_gid \
            and perms & ~KEY_MAX_PERMS_ROOT_OWNED == 0:
        return None
    if st_uid == 0 and perms & ~KEY_MAX_PERMS_ROOT_OWNED == 0:
        return ("mode %04o exceeds -rwx------; 0740 is allowed only for a root-owned key whose "
                "group is the cockroach process's gid (key gid %s, process gid %s)"
                % (perms, st_gid, process_gid))
    return "mode %04o exceeds -rwx------ (CockroachDB refuses group or world access to keys)" % perms


def key_install_mode(key_owner_is_root):
    """The mode the collection installs a key with."""
    return KEY_MODE_ROOT_OWNED if key_owner_is_root else KEY_MODE
