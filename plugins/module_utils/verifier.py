# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Would a CockroachDB node accept this file, this set, this chain, and as whom?

The one judgement of the collection. Everything that decides whether a
certificate or a certs dir "still fits" asks here; nothing else builds chains,
reads principals or judges a key file. The rules are CockroachDB's loader
(``pkg/security/certificate_loader.go``, ``certificate_manager.go``,
``auth.go``, ``pkg/rpc/auth.go``, ``permission_check.go``) over Go's
``crypto/tls`` and ``x509.Verify``; file names and modes come from
:mod:`rules`.

Contract (used by the other modules of the collection):

* A problem is a :class:`Problem` record: ``file``, ``code``, ``message``,
  ``effect``. ``effect`` is :data:`LOAD` (CockroachDB refuses to load or
  reload the dir), :data:`HANDSHAKE` (it loads, a handshake or an
  authentication fails) or :data:`WARNING` (CockroachDB accepts it). A few
  codes (:data:`POLICY_CODES`) are the collection's own refusals on top
  (a CA key in the certs dir, expiry within a minimum, an interrupted update);
  :attr:`Problem.blocking` says whether a caller must refuse. Never parse
  ``str(problem)``: read the fields.
* The identity options dict, the same everywhere (module option ``identity``,
  see :data:`IDENTITY_OPTION_SPEC` and :func:`identity_options`)::

      {"principal_map": {cert principal: db principal},   # --cert-principal-map
       "node_cert_dn": str or None,                        # --node-cert-distinguished-name
       "root_cert_dn": str or None,                        # --root-cert-distinguished-name
       "tenant_scope": bool}   # client certs carry crdb://tenant/<id>/user/<name> URI SANs

* :func:`verify` builds chains as Go's ``x509.Verify`` does; :func:`principals`,
  :func:`rpc_identity_problem` and :func:`sql_user` apply CockroachDB's
  principal rules; :func:`load_key_pair` loads what ``tls.X509KeyPair``
  loads; :func:`key_permission_problem` is ``permission_check.go``;
  :func:`vet_leaf` judges one certificate against what the caller wanted
  (issuing, renewal, external signers, a public ``ui.crt``);
  :func:`judge_dir` judges a whole certs dir and returns, with its problems,
  the ``verdict`` that ``crdb.tls.certs_info`` returns (schema in
  :func:`judge_dir`).

The names-and-permissions part (:func:`judge_dir` with ``content=False``,
:func:`key_permission_problem`, :func:`process_gid`, :func:`identity_options`,
:func:`parse_tenant_id`) never imports ``cryptography``: an install on a node
without it checks names and modes only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import datetime
import ipaddress
import os
import pwd
import grp
import re
import stat

from ansible_collections.crdb.tls.plugins.module_utils import durations, fileio, rules
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

LOAD = "load"
HANDSHAKE = "handshake"
WARNING = "warning"
EFFECTS = (LOAD, HANDSHAKE, WARNING)

# The collection's own refusals: CockroachDB would load these, the collection will not ship or keep them.
POLICY_CODES = frozenset(["ca_key_in_dir", "expiring", "pending_update", "layout_missing", "missing_dir",
                          "wanted"])

SYSTEM_TENANT_ID = 1
MAX_TENANT_ID = 2 ** 64 - 1
ROOT_USER = "root"
DEBUG_USER = "debuguser"
SKIP_PERMISSION_ENV = "COCKROACH_SKIP_KEY_PERMISSION_CHECK"
PROCESS_NAME = "cockroach"
TENANT_URI_PREFIX = "crdb://"
_TENANT_URI = re.compile(r"^crdb://tenant/([0-9]+)/user/(.+)$")
CLOCK_SKEW = datetime.timedelta(minutes=5)
_MAX_SIGNATURE_CHECKS = 100     # Go's maxChainSignatureChecks
_PARSE_BOOL_TRUE = ("1", "t", "T", "TRUE", "true", "True")   # strconv.ParseBool

IDENTITY_DEFAULTS = {"principal_map": {}, "node_cert_dn": None, "root_cert_dn": None, "tenant_scope": False}
IDENTITY_OPTION_SPEC = dict(type="dict", options=dict(
    principal_map=dict(type="dict", default={}),
    node_cert_dn=dict(type="str"),
    root_cert_dn=dict(type="str"),
    tenant_scope=dict(type="bool", default=False),
))
IDENTITY_DOC = r"""
  identity:
    description:
      - How the cluster maps certificates to users, as given to C(cockroach start).
      - C(principal_map) (C(--cert-principal-map)) maps a certificate principal (its CN or a DNS SAN) to a
        database user; C(node_cert_dn) / C(root_cert_dn) (C(--node-cert-distinguished-name),
        C(--root-cert-distinguished-name)) replace the CN rule of the node and root users by an exact
        subject DN match; C(tenant_scope) says client certificates carry
        C(crdb://tenant/<id>/user/<name>) URI SANs.
    type: dict
    suboptions:
      principal_map:
        description: Certificate principal to database user.
        type: dict
        default: {}
      node_cert_dn:
        description: The exact subject DN of the node user's certificates (RFC 4514, as CockroachDB prints it).
        type: str
      root_cert_dn:
        description: The exact subject DN of the root user's certificates.
        type: str
      tenant_scope:
        description: Client certificates carry tenant-scoped URI SANs.
        type: bool
        default: false
"""


class Problem(object):
    """One thing wrong (or worth saying) about one file; see the module docstring."""

    __slots__ = ("file", "code", "message", "effect")

    def __init__(self, file, code, message, effect):
        if effect not in EFFECTS:
            raise ValueError("effect %r must be one of %s" % (effect, ", ".join(EFFECTS)))
        self.file = file
        self.code = code
        self.message = message
        self.effect = effect

    @property
    def blocking(self):
        """True when a caller must refuse (CockroachDB would, or the collection's policy does)."""
        return self.effect != WARNING or self.code in POLICY_CODES

    def as_dict(self):
        return {"file": self.file, "code": self.code, "message": self.message, "effect": self.effect}

    def __str__(self):
        return "%s: %s" % (self.file, self.message) if self.file else self.message

    def __repr__(self):
        return "Problem(%r, %r, %r, %r)" % (self.file, self.code, self.message, self.effect)

    def __eq__(self, other):
        return isinstance(other, Problem) and self.as_dict() == other.as_dict()

    def __hash__(self):
        return hash((self.file, self.code, self.message, self.effect))


def blocking(problems):
    """The problems a caller must refuse on."""
    return [p for p in problems if p.blocking]


def raise_for(problems, prefix=None):
    """Raise :class:`CrdbTlsError` listing the blocking ``problems`` (nothing when there are none)."""
    bad = blocking(problems)
    if bad:
        text = "; ".join(str(p) for p in bad)
        raise CrdbTlsError("%s: %s" % (prefix, text) if prefix else text)


# --------------------------------------------------------------------------
# Identity options (no cryptography)
# --------------------------------------------------------------------------

def identity_options(value=None):
    """The identity dict with defaults filled and every value checked (see the module docstring)."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise CrdbTlsError("identity must be a dict, got %r" % (value,))
    unknown = sorted(set(value) - set(IDENTITY_DEFAULTS))
    if unknown:
        raise CrdbTlsError("identity: unknown key(s) %s (known: %s)"
                           % (", ".join(unknown), ", ".join(sorted(IDENTITY_DEFAULTS))))
    out = dict(IDENTITY_DEFAULTS)
    out.update(dict((k, v) for k, v in value.items() if v is not None))
    pmap = out["principal_map"] or {}
    if not isinstance(pmap, dict):
        raise CrdbTlsError("identity.principal_map must be a dict of certificate principal to user, got %r"
                           % (pmap,))
    for k, v in pmap.items():
        if not isinstance(k, str) or not k or not isinstance(v, str) or not v:
            raise CrdbTlsError("identity.principal_map: %r: %r must map a non-empty string to a non-empty "
                               "string" % (k, v))
        if ":" in k or "," in k or ":" in v or "," in v:
            raise CrdbTlsError("identity.principal_map: %r: %r cannot be given to --cert-principal-map "
                               "(',' and ':' separate its entries)" % (k, v))
    out["principal_map"] = dict(pmap)
    for key in ("node_cert_dn", "root_cert_dn"):
        if out[key] is not None:
            if not isinstance(out[key], str) or not out[key].strip():
                raise CrdbTlsError("identity.%s must be a non-empty DN string, got %r" % (key, out[key]))
            parse_dn(out[key], "identity.%s" % key)
    if not isinstance(out["tenant_scope"], bool):
        raise CrdbTlsError("identity.tenant_scope must be true or false, got %r" % (out["tenant_scope"],))
    return out


def principal_map_flag(identity):
    """The ``--cert-principal-map`` value for ``identity`` ('' when there is none)."""
    return ",".join("%s:%s" % kv for kv in sorted(identity_options(identity)["principal_map"].items()))


def parse_dn(text, what="DN"):
    """An RFC 4514 DN as ``[[(TYPE, value), ...], ...]`` in the order written (escapes undone)."""
    rdns, rdn, buf = [], [], []
    i, n = 0, len(text)
    current_type = None
    while i <= n:
        ch = text[i] if i < n else None
        if ch == "\\" and i + 1 < n:
            nxt = text[i + 1]
            if re.match(r"[0-9a-fA-F]{2}", text[i + 1:i + 3] or ""):
                buf.append(chr(int(text[i + 1:i + 3], 16)))
                i += 3
                continue
            buf.append(nxt)
            i += 2
            continue
        if ch == "=" and current_type is None:
            current_type = "".join(buf).strip()
            buf = []
        elif ch in (",", "+", None):
            if current_type is None:
                if ch is None and not rdns and not rdn and not "".join(buf).strip():
                    break
                raise CrdbTlsError("%s %r is not a distinguished name (expected TYPE=value, ...)" % (what, text))
            rdn.append((current_type.upper(), "".join(buf).strip()))
            current_type, buf = None, []
            if ch != "+":
                rdns.append(rdn)
                rdn = []
        else:
            buf.append(ch)
        i += 1
    if not rdns or any(not t for r in rdns for t, _v in r):
        raise CrdbTlsError("%s %r is not a distinguished name (expected TYPE=value, ...)" % (what, text))
    return rdns


def dn_equal(a, b):
    """go-ldap's DN.Equal: same RDNs in order, each the same set of (type case-insensitive, value)."""
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b):
        if sorted(ra) != sorted(rb):
            return False
    return True


def parse_tenant_id(text):
    """CockroachDB's ``strconv.ParseUint(id, 10, 64)``: the id, or raise naming it."""
    if not isinstance(text, str) or not text or not all("0" <= c <= "9" for c in text):
        raise CrdbTlsError("invalid tenant id %r (an unsigned 64-bit decimal number)" % (text,))
    value = int(text)
    if value > MAX_TENANT_ID:
        raise CrdbTlsError("invalid tenant id %r (larger than 2^64-1)" % (text,))
    return value


# --------------------------------------------------------------------------
# Key file permissions (no cryptography)
# --------------------------------------------------------------------------

def _parse_bool_env(value):
    return value in _PARSE_BOOL_TRUE


def cockroach_processes(process_name=PROCESS_NAME, proc="/proc"):
    """``[(pid, real_gid, environ_or_None, cmdline)]`` of running processes named ``process_name``."""
    out = []
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return out
    for pid in pids:
        base = os.path.join(proc, pid)
        try:
            with open(os.path.join(base, "comm"), "rb") as f:
                if f.read().strip().decode("utf-8", "replace") != process_name:
                    continue
            gid = None
            with open(os.path.join(base, "status"), "rb") as f:
                for line in f.read().decode("utf-8", "replace").splitlines():
                    if line.startswith("Gid:"):
                        gid = int(line.split()[1])
            with open(os.path.join(base, "cmdline"), "rb") as f:
                cmdline = [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
        except (OSError, ValueError):
            continue
        environ = None
        try:
            with open(os.path.join(base, "environ"), "rb") as f:
                environ = dict(e.decode("utf-8", "replace").partition("=")[::2]
                               for e in f.read().split(b"\0") if e)
        except OSError:
            pass
        if gid is not None:
            out.append((int(pid), gid, environ, cmdline))
    return out


def _process_for(certs_dir, processes):
    """The process serving ``certs_dir`` (``--certs-dir`` on its command line, or ``COCKROACH_CERTS_DIR`` in its
    environment when readable); a cockroach process serving another dir says nothing about this one."""
    if not processes or not certs_dir:
        return None
    real = os.path.realpath(certs_dir)
    for proc in processes:
        args = proc[3]
        values = [(proc[2] or {}).get("COCKROACH_CERTS_DIR")]
        for index, arg in enumerate(args):
            if arg.startswith("--certs-dir="):
                values.append(arg.split("=", 1)[1])
            elif arg == "--certs-dir" and index + 1 < len(args):
                values.append(args[index + 1])
        if any(v and os.path.realpath(v) == real for v in values):
            return proc
    return None


def process_gid(certs_dir=None, group=None, user=None, process_name=PROCESS_NAME, proc="/proc"):
    """``(gid, source)``: the gid the cockroach process runs with, for the root-owned 0740 rule.

    The gid of the running ``process_name`` process that serves
    ``certs_dir`` (its real gid, as ``os.Getgid()`` in it returns), else the
    configured ``group`` (name or gid: under systemd the
    unit's ``Group=``), else the primary group of ``user``, else that of the
    certs dir's owner. ``gid`` is None when none can be found.
    """
    running = _process_for(certs_dir, cockroach_processes(process_name, proc))
    if running is not None:
        return running[1], "running %s process %d" % (process_name, running[0])
    if group is not None:
        try:
            if str(group).isdigit():
                return int(group), "configured group %s" % group
            return grp.getgrnam(group).gr_gid, "configured group %s" % group
        except KeyError:
            raise CrdbTlsError("process group %r: no such group on this host" % (group,))
    try:
        if user is not None:
            if str(user).isdigit():
                return pwd.getpwuid(int(user)).pw_gid, "primary group of uid %s" % user
            return pwd.getpwnam(user).pw_gid, "primary group of %s" % user
        if certs_dir is not None:
            return pwd.getpwuid(os.stat(certs_dir).st_uid).pw_gid, "primary group of the certs dir's owner"
    except (KeyError, OSError):
        if user is not None:
            raise CrdbTlsError("process_user %r: no such user on this host" % (user,))
    return None, "unknown"


def skip_permission_check(configured=False, certs_dir=None, process_name=PROCESS_NAME, proc="/proc"):
    """True when CockroachDB skips the key permission check: configured, or the running process's
    environment sets ``COCKROACH_SKIP_KEY_PERMISSION_CHECK`` to a true value (readable as root)."""
    if configured:
        return True
    running = _process_for(certs_dir, cockroach_processes(process_name, proc))
    return bool(running is not None and running[2] and _parse_bool_env(running[2].get(SKIP_PERMISSION_ENV, "")))


def key_permission_problem(certs_dir, key_file, gid=None, skip=False):
    """``findKey`` of CockroachDB's loader for ``key_file`` in ``certs_dir`` (a path or a
    :class:`fileio.Dir`): a :class:`Problem` or None.

    Follows symlinks as ``os.Stat`` does, but only where nobody but root and
    this process's user can have planted them (:meth:`fileio.Dir.stat_followed`;
    any other link is refused, naming it); refuses a missing key or one that
    is not a regular file; then, unless ``skip``, the rwx bits only (setuid,
    setgid, sticky are ignored): none outside 0700, or outside 0740 when the
    file is owned by uid 0 and its group is ``gid`` (see :func:`process_gid`).
    """
    try:
        with fileio.opened(certs_dir, "certs dir") as handle:
            st = handle.stat_followed(key_file, "key")
    except CrdbTlsError as exc:
        return Problem(key_file, "key_unreadable", str(exc), LOAD)
    if st is None:
        return Problem(key_file, "key_missing", "key %s is missing" % key_file, LOAD)
    if not stat.S_ISREG(st.st_mode):
        return Problem(key_file, "key_not_regular", "key %s is not a regular file" % key_file, LOAD)
    if skip:
        return None
    why = rules.key_mode_problem(st.st_mode, st.st_uid, st.st_gid, gid)
    if why:
        return Problem(key_file, "key_permissions", "key %s: %s" % (key_file, why), LOAD)
    return None


# --------------------------------------------------------------------------
# Certificates and keys as Go reads them
# --------------------------------------------------------------------------

def _pki():
    from ansible_collections.crdb.tls.plugins.module_utils import pki
    return pki


_PEM = re.compile(rb"-----BEGIN ([^-\r\n]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)


def pem_blocks(data):
    """``[(type, headers, der)]`` as Go's ``pem.Decode`` sees them (der None when not base64)."""
    out = []
    for match in _PEM.finditer(data or b""):
        label = match.group(1).decode("ascii", "replace")
        lines = match.group(2).splitlines()
        headers = {}
        body = []
        for line in lines:
            if b":" in line and not body:
                key, _sep, value = line.partition(b":")
                headers[key.strip().decode("ascii", "replace")] = value.strip().decode("ascii", "replace")
            elif line.strip():
                body.append(line.strip())
        try:
            der = base64.b64decode(b"".join(body), validate=True)
        except (binascii.Error, ValueError):
            der = None
        out.append((label, headers, der))
    return out


def load_certificates(data, source):
    """CockroachDB's ``PEMToCertificates`` + ``x509.ParseCertificate``: every block CERTIFICATE, at least one."""
    pki = _pki()
    if not data or not data.strip():
        raise CrdbTlsError("%s: empty certificate file" % source)
    blocks = pem_blocks(data)
    if not blocks:
        raise CrdbTlsError("%s: no certificates found (no PEM block)" % source)
    certs = []
    for index, (label, _headers, der) in enumerate(blocks, 1):
        if label != "CERTIFICATE":
            raise CrdbTlsError("%s: PEM block %d is %r; CockroachDB accepts only CERTIFICATE blocks in a "
                               "certificate file" % (source, index, label))
        try:
            if der is None:
                raise ValueError("not base64")
            certs.append(pki.x509.load_der_x509_certificate(der))
        except ValueError as exc:
            raise CrdbTlsError("%s: PEM block %d is not a valid certificate (%s)"
                               % (source, index, pki._short(exc)))
    return certs


def load_private_key(data, source, trusted=False):
    """The private key ``tls.X509KeyPair`` takes from ``data``, or raise naming ``source``.

    The first PEM block whose type is ``PRIVATE KEY`` or ends in
    `` PRIVATE KEY`` (others, e.g. ``EC PARAMETERS``, are skipped), parsed as
    PKCS#1, PKCS#8 (RSA, ECDSA, Ed25519) or SEC1 EC (P-224/256/384/521);
    encrypted keys are refused. ``trusted``: made by this collection, RSA's
    slow consistency check skipped.
    """
    pki = _pki()
    if not data or not data.strip():
        raise CrdbTlsError("%s: the key file is empty" % source)
    chosen = None
    for label, headers, der in pem_blocks(data):
        if label == "PRIVATE KEY" or label.endswith(" PRIVATE KEY"):
            chosen = (label, headers, der)
            break
    if chosen is None:
        raise CrdbTlsError("%s: no PEM PRIVATE KEY block found" % source)
    label, headers, der = chosen
    if "ENCRYPTED" in headers.get("Proc-Type", "") or label == "ENCRYPTED PRIVATE KEY":
        raise CrdbTlsError("%s: the key is encrypted; CockroachDB cannot read encrypted keys" % source)
    if der is None:
        raise CrdbTlsError("%s: the %s block is not valid base64" % (source, label))
    ser = pki.serialization
    try:
        if trusted:
            try:
                key = ser.load_der_private_key(der, None, unsafe_skip_rsa_key_validation=True)
            except TypeError as exc:
                if "unsafe_skip_rsa_key_validation" not in str(exc):
                    raise
                key = ser.load_der_private_key(der, None)
        else:
            key = ser.load_der_private_key(der, None)
    except TypeError:
        raise CrdbTlsError("%s: the key is encrypted; CockroachDB cannot read encrypted keys" % source)
    except (ValueError, pki.UnsupportedAlgorithm) as exc:
        raise CrdbTlsError("%s: not a private key Go can parse (PKCS#1, PKCS#8 or SEC1): %s"
                           % (source, pki._short(exc)))
    _check_go_key(key, source)
    return key


def _check_go_key(key, source):
    pki = _pki()
    from cryptography.hazmat.primitives.asymmetric import ed25519
    if isinstance(key, pki.rsa.RSAPrivateKey):
        return
    if isinstance(key, pki.ec.EllipticCurvePrivateKey):
        if key.curve.name not in ("secp224r1", "secp256r1", "secp384r1", "secp521r1"):
            raise CrdbTlsError("%s: elliptic curve %s is not one Go supports (P-224, P-256, P-384, P-521)"
                               % (source, key.curve.name))
        return
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return
    raise CrdbTlsError("%s: %s keys are not supported by Go's TLS (RSA, ECDSA or Ed25519)"
                       % (source, type(key).__name__.lstrip("_")))


def key_matches(certificate, key):
    return _pki().keys_match(certificate, key)


def load_key_pair(cert_data, key_data, cert_source, key_source, trusted=False):
    """``tls.X509KeyPair``: ``(certs, key)`` or raise; the leaf must carry the key's public key."""
    certs = load_certificates(cert_data, cert_source)
    key = load_private_key(key_data, key_source, trusted)
    if not key_matches(certs[0], key):
        raise CrdbTlsError("%s does not match the certificate %s (private key does not match public key)"
                           % (key_source, cert_source))
    return certs, key


_DN_NAMES = {"2.5.4.6": "C", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.3": "CN", "2.5.4.5": "SERIALNUMBER",
             "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.9": "STREET", "2.5.4.17": "POSTALCODE",
             "0.9.2342.19200300.100.1.1": "UID", "0.9.2342.19200300.100.1.25": "DC"}


def subject_dn(certificate_or_name):
    """The subject as CockroachDB's ``ParseDNFromCertificate`` reads it: RDNs in the order they are ENCODED
    in the certificate (not reversed as RFC 4514 strings usually are), Go's attribute names."""
    name = getattr(certificate_or_name, "subject", certificate_or_name)
    return [[(_DN_NAMES.get(a.oid.dotted_string, a.oid.dotted_string), str(a.value)) for a in rdn]
            for rdn in name.rdns]


def _dn_escape(value):
    out = re.sub(r'([,+"\\<>;=])', r"\\\1", value)
    if out.startswith((" ", "#")):
        out = "\\" + out
    if out.endswith(" "):
        out = out[:-1] + "\\ "
    return out


def dn_string(certificate_or_name):
    """The subject DN as ``--node-cert-distinguished-name`` must spell it (the encoding order)."""
    return ",".join("+".join("%s=%s" % (t, _dn_escape(v)) for t, v in rdn) for rdn in subject_dn(certificate_or_name))


# --------------------------------------------------------------------------
# Go's x509.Verify
# --------------------------------------------------------------------------

class _Ext(object):
    """What Go reads from a certificate, parsed once."""

    def __init__(self, cert):
        pki = _pki()
        x509 = pki.x509
        self.cert = cert
        self.version3 = cert.version == x509.Version.v3
        self.bc = self.ku = self.eku = self.nc = self.san = None
        self.unhandled_critical = []
        handled = {"2.5.29.15", "2.5.29.19", "2.5.29.17", "2.5.29.30", "2.5.29.31", "2.5.29.35", "2.5.29.37",
                   "2.5.29.14", "2.5.29.32", "1.3.6.1.5.5.7.1.1"}
        try:
            extensions = list(cert.extensions)
        except ValueError as exc:
            extensions = []
            self.unhandled_critical.append("unparsable extensions (%s)" % pki._short(exc))
        for ext in extensions:
            oid = ext.oid.dotted_string
            if ext.critical and oid not in handled:
                self.unhandled_critical.append(oid)
            if oid == "2.5.29.19":
                self.bc = ext.value
            elif oid == "2.5.29.15":
                self.ku = ext.value
            elif oid == "2.5.29.37":
                self.eku = [o.dotted_string for o in ext.value]
            elif oid == "2.5.29.30":
                self.nc = ext.value
            elif oid == "2.5.29.17":
                self.san = ext.value
        self.is_ca = bool(self.bc is not None and self.bc.ca)
        self.max_path_len = self.bc.path_length if self.bc is not None and self.bc.path_length is not None else -1
        self.subject = cert.subject
        self.issuer = cert.issuer
        self.not_before = pki.not_before(cert)
        self.not_after = pki.not_after(cert)
        self.spki = pki.public_key_bytes(cert.public_key())

    def names(self, kind):
        if self.san is None:
            return []
        return list(self.san.get_values_for_type(kind))

    def label(self):
        return self.subject.rfc4514_string() or "(empty subject)"


EKU_ANY = "2.5.29.37.0"
EKU_OIDS = {rules.EKU_SERVER: "1.3.6.1.5.5.7.3.1", rules.EKU_CLIENT: "1.3.6.1.5.5.7.3.2"}
_SGC = ("2.16.840.1.113730.4.1", "1.3.6.1.4.1.311.10.3.3")   # Netscape / Microsoft server gated crypto


def _signature_problem(child, parent):
    """Go's ``CheckSignatureFrom``: None when ``parent`` may sign and did sign ``child``."""
    pki = _pki()
    if parent.version3 and parent.bc is None or parent.bc is not None and not parent.bc.ca:
        return "%s is not a CA (basicConstraints CA:TRUE missing)" % parent.label()
    if parent.ku is not None and not parent.ku.key_cert_sign:
        return "%s has keyUsage without keyCertSign" % parent.label()
    try:
        hash_name = child.cert.signature_hash_algorithm
        hash_name = hash_name.name if hash_name is not None else None
    except pki.UnsupportedAlgorithm:
        return "%s is signed with an algorithm Go does not support" % child.label()
    if hash_name in ("sha1", "md5"):
        return "%s is signed with %s, which Go refuses" % (child.label(), hash_name.upper())
    if not _signed_by(child.cert, parent.cert):
        return "the signature of %s does not verify with the key of %s" % (child.label(), parent.label())
    return None


def _signed_by(cert, issuer):
    pki = _pki()
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ed25519
    public_key = issuer.public_key()
    try:
        if hasattr(cert, "verify_directly_issued_by"):
            cert.verify_directly_issued_by(issuer)
            return True
        algorithm = cert.signature_hash_algorithm
        if isinstance(public_key, pki.rsa.RSAPublicKey):
            if cert.signature_algorithm_oid.dotted_string == "1.2.840.113549.1.1.10":
                return False   # RSA-PSS needs cryptography >= 41 here
            public_key.verify(cert.signature, cert.tbs_certificate_bytes, pki.padding.PKCS1v15(), algorithm)
        elif isinstance(public_key, pki.ec.EllipticCurvePublicKey):
            public_key.verify(cert.signature, cert.tbs_certificate_bytes, pki.ec.ECDSA(algorithm))
        elif isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(cert.signature, cert.tbs_certificate_bytes)
        else:
            return False
    except (ValueError, TypeError, InvalidSignature, pki.UnsupportedAlgorithm):
        return False
    return True


def _dns_matches(domain, constraint):
    """Go's ``matchDomainConstraint``."""
    if constraint == "":
        return True
    must_sub = constraint.startswith(".")
    if must_sub:
        constraint = constraint[1:]
    d_labels = domain.lower().split(".")[::-1]
    c_labels = constraint.lower().split(".")[::-1]
    if len(d_labels) < len(c_labels) or must_sub and len(d_labels) == len(c_labels):
        return False
    return d_labels[:len(c_labels)] == c_labels


def _email_matches(mailbox, constraint):
    if "@" in constraint:
        return mailbox.lower() == constraint.lower()
    return _dns_matches(mailbox.partition("@")[2], constraint)


def _uri_host(uri):
    match = re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^@/]*@)?(\[[^\]]*\]|[^:/?#]*)", uri)
    return match.group(1).strip("[]") if match else ""


def _name_constraint_problem(ca, leaf):
    """Go's name-constraint check of ``ca`` against the leaf's SANs."""
    x509 = _pki().x509
    nc = ca.nc
    if nc is None:
        return None
    checks = [
        (x509.DNSName, leaf.names(x509.DNSName), lambda v, c: _dns_matches(v, c.value), "DNS name"),
        (x509.RFC822Name, leaf.names(x509.RFC822Name), lambda v, c: _email_matches(v, c.value), "email"),
        (x509.IPAddress, leaf.names(x509.IPAddress),
         lambda v, c: (v.version == c.value.version and v in c.value), "IP address"),
        (x509.UniformResourceIdentifier, leaf.names(x509.UniformResourceIdentifier),
         lambda v, c: _dns_matches(_uri_host(v), c.value), "URI"),
    ]
    for kind, values, match, what in checks:
        excluded = [c for c in (nc.excluded_subtrees or []) if isinstance(c, kind)]
        permitted = [c for c in (nc.permitted_subtrees or []) if isinstance(c, kind)]
        for value in values:
            if kind is x509.IPAddress and not isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
                continue
            if kind is x509.IPAddress:
                networks = (ipaddress.IPv4Network, ipaddress.IPv6Network)
                excluded_hit = [c for c in excluded if isinstance(c.value, networks) and match(value, c)]
            else:
                excluded_hit = [c for c in excluded if match(value, c)]
            if excluded_hit:
                return "%s %s is excluded by the name constraints of %s" % (what, value, ca.label())
            if permitted and not any(match(value, c) for c in permitted):
                return "%s %s is not permitted by the name constraints of %s" % (what, value, ca.label())
    return None


def _is_valid(ext, kind, chain, now):
    """Go's ``isValid`` for ``ext`` about to be appended to ``chain`` as ``kind`` (leaf, intermediate, root)."""
    if ext.unhandled_critical:
        return "%s has an unhandled critical extension (%s)" % (ext.label(), ", ".join(ext.unhandled_critical))
    if now < ext.not_before:
        return "%s is not valid before %s" % (ext.label(), _fmt(ext.not_before))
    if now > ext.not_after:
        return "%s expired on %s" % (ext.label(), _fmt(ext.not_after))
    if kind in ("intermediate", "root"):
        problem = _name_constraint_problem(ext, chain[0])
        if problem:
            return problem
    if kind == "intermediate" and not ext.is_ca:
        return "%s is not authorised to sign (not a CA)" % ext.label()
    if ext.bc is not None and ext.max_path_len >= 0 and kind != "leaf":
        intermediates = len(chain) - 1
        if intermediates > ext.max_path_len:
            return ("%s allows %d intermediate(s) below it (pathLen) but the chain has %d"
                    % (ext.label(), ext.max_path_len, intermediates))
    return None


def _eku_ok(chain, usage_oid):
    """Go's ``checkChainForKeyUsage`` for one usage: every cert with an EKU extension allows it."""
    for ext in reversed(chain):
        if ext.eku is None:
            continue
        if EKU_ANY in ext.eku:
            continue
        if usage_oid in ext.eku:
            continue
        if usage_oid == EKU_OIDS[rules.EKU_SERVER] and any(o in ext.eku for o in _SGC):
            continue
        return ext
    return None


def _fmt(moment):
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _same_name(a, b):
    return a.public_bytes() == b.public_bytes() if hasattr(a, "public_bytes") else a == b


def hostname_problem(certificate, host):
    """Go's ``VerifyHostname``: None when ``host`` matches a SAN (the CN is never used)."""
    pki = _pki()
    x509 = pki.x509
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    ext = _Ext(certificate) if not isinstance(certificate, _Ext) else certificate
    if ip is not None:
        if ip in ext.names(x509.IPAddress):
            return None
        return "certificate is not valid for IP %s (its IP SANs: %s)" % (
            host, ", ".join(str(a) for a in ext.names(x509.IPAddress)) or "none")
    wanted = host.lower().rstrip(".")
    for name in ext.names(x509.DNSName):
        pattern = name.lower().rstrip(".")
        if pattern == wanted:
            return None
        if pattern.startswith("*.") and "." in wanted and wanted.split(".", 1)[1] == pattern[2:]:
            return None
    return "certificate is not valid for %s (its DNS SANs: %s)" % (
        host, ", ".join(ext.names(x509.DNSName)) or "none")


def verify(leaf, intermediates, roots, usage, host=None, now=None):
    """Go's ``x509.Verify`` of ``leaf`` with ``intermediates`` (an unordered pool) up to one of ``roots``.

    ``usage`` is :data:`rules.EKU_SERVER` or :data:`rules.EKU_CLIENT` (the
    only one asked, as Go's TLS does); ``host`` the ServerName to match
    (None: none). Returns ``(chain, error)``: the first chain that verifies
    (``[leaf, ..., root]`` as x509 objects) and None, or None and why none
    does (every candidate chain is tried: signatures, CA flags and keyUsage
    of issuers, SHA-1, validity of every certificate, name constraints,
    pathLen, then EKU nesting).
    """
    now = now or durations.utcnow()
    leaf_e = _Ext(leaf)
    root_es = _dedupe([_Ext(c) for c in roots])
    pool_es = [_Ext(c) for c in intermediates]
    problem = _is_valid(leaf_e, "leaf", [], now)
    if problem:
        return None, problem
    if host:
        problem = hostname_problem(leaf_e, host)
        if problem:
            return None, problem
    failures = []
    chains = []
    budget = [_MAX_SIGNATURE_CHECKS]
    if any(r.spki == leaf_e.spki and _same_name(r.subject, leaf_e.subject) for r in root_es):
        chains.append([leaf_e])

    def build(chain):
        current = chain[-1]
        for candidate, is_root in [(r, True) for r in root_es] + [(p, False) for p in pool_es]:
            if not _same_name(candidate.subject, current.issuer):
                continue
            if any(c.spki == candidate.spki and _same_name(c.subject, candidate.subject) for c in chain):
                continue
            budget[0] -= 1
            if budget[0] < 0:
                failures.append("too many signature checks")
                return
            why = _signature_problem(current, candidate)
            if why is None:
                why = _is_valid(candidate, "root" if is_root else "intermediate", chain, now)
            if why:
                failures.append(why)
                continue
            if is_root:
                chains.append(chain + [candidate])
            else:
                build(chain + [candidate])

    if not chains:
        build([leaf_e])
    if not chains:
        if failures:
            return None, "no chain to a trusted root: %s" % "; ".join(_unique(failures))
        return None, ("certificate signed by unknown authority (issuer %s is not among the trusted roots: %s)"
                      % (leaf_e.issuer.rfc4514_string(), ", ".join(r.label() for r in root_es) or "none"))
    usage_oid = EKU_OIDS[usage]
    refusing = []
    for chain in chains:
        bad = _eku_ok(chain, usage_oid)
        if bad is None:
            return [e.cert for e in chain], None
        refusing.append(bad)
    return None, ("incompatible key usage: %s does not allow %s (extended key usage %s)"
                  % (refusing[0].label(), usage, ",".join(_eku_name(o) for o in refusing[0].eku) or "empty"))


def _dedupe(exts):
    seen, out = set(), []
    for ext in exts:
        der = ext.cert.tbs_certificate_bytes + ext.cert.signature
        if der not in seen:
            seen.add(der)
            out.append(ext)
    return out


def _eku_name(oid):
    names = dict((v, k) for k, v in EKU_OIDS.items())
    names[EKU_ANY] = "anyExtendedKeyUsage"
    return names.get(oid, oid)


def _unique(items):
    seen, out = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def ca_bundle_warnings(name, certs, now=None):
    """Warnings about certificates of a CA file that cannot serve as roots (harmless while another does)."""
    pki = _pki()
    now = now or durations.utcnow()
    out = []
    for index, cert in enumerate(certs, 1):
        ext = _Ext(cert)
        where = "" if len(certs) == 1 else " (certificate %d)" % index
        why = []
        if ext.version3 and ext.bc is None or ext.bc is not None and not ext.bc.ca:
            why.append("is not a CA certificate (basicConstraints CA:TRUE missing)")
        elif ext.ku is not None and not ext.ku.key_cert_sign:
            why.append("has keyUsage without keyCertSign")
        if not ext.version3:
            why.append("is an X.509 v1 certificate (no extensions; Go trusts it as a root)")
        if ext.not_after < now:
            why.append("expired on %s" % _fmt(ext.not_after))
        elif ext.not_before > now:
            why.append("is not valid before %s" % _fmt(ext.not_before))
        try:
            hash_name = cert.signature_hash_algorithm
            hash_name = hash_name.name if hash_name is not None else None
        except pki.UnsupportedAlgorithm:
            hash_name = None
        if hash_name in ("sha1", "md5") and _same_name(cert.issuer, cert.subject):
            why.append("has a %s self-signature (harmless for a root: Go never checks it)" % hash_name.upper())
        for item in why:
            out.append(Problem(name, "ca_unusable" if "CA" in item or "keyCertSign" in item or "expired" in item
                               or "not valid before" in item else "ca_note",
                               "%s %s%s" % (ext.label(), item, where), WARNING))
    return out


# --------------------------------------------------------------------------
# Principals (auth.go, rpc/auth.go)
# --------------------------------------------------------------------------

def user_scopes(certificate, identity=None):
    """``[(user, tenant_id or None for global)]`` as CockroachDB's ``GetCertificateUserScope``.

    Tenant-scoped URI SANs ``crdb://tenant/<id>/user/<name>`` when any;
    otherwise the CN and every DNS SAN, each through the principal map, global.
    A ``crdb://`` URI that does not parse makes the list None (authentication fails).
    """
    x509 = _pki().x509
    identity = identity_options(identity)
    ext = certificate if isinstance(certificate, _Ext) else _Ext(certificate)
    scopes = []
    for uri in ext.names(x509.UniformResourceIdentifier):
        if not uri.startswith(TENANT_URI_PREFIX):
            continue
        match = _TENANT_URI.match(uri)
        if not match:
            return None
        try:
            tenant = parse_tenant_id(match.group(1))
        except CrdbTlsError:
            return None
        scopes.append((match.group(2), tenant))
    if scopes:
        return scopes
    pmap = identity["principal_map"]
    cn = _pki().common_name(ext.cert)
    raw = ([cn] if cn is not None else [""]) + ext.names(x509.DNSName)
    return [(pmap.get(p, p), None) for p in raw]


def principals(certificate, identity=None, tenant_id=SYSTEM_TENANT_ID):
    """The users ``certificate`` may authenticate as on a server of ``tenant_id`` (mapped, in-scope)."""
    scopes = user_scopes(certificate, identity)
    if scopes is None:
        return []
    return [u for u, t in scopes if t is None or t == tenant_id]


def _is_tenant_cert(certificate):
    x509 = _pki().x509
    cert = certificate.cert if isinstance(certificate, _Ext) else certificate
    return any(a.value == "Tenants" for a in cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATIONAL_UNIT_NAME))


def dn_matches(certificate, dn):
    return dn_equal(subject_dn(certificate), parse_dn(dn))


def rpc_identity_problem(certificate, identity=None):
    """CockroachDB's node RPC rule for the client certificate of a node: None when accepted.

    With ``node_cert_dn`` or ``root_cert_dn`` set, the subject DN must equal
    one of them exactly; otherwise a principal (in scope) must be ``node`` or ``root``.
    """
    identity = identity_options(identity)
    dns = [d for d in (identity["node_cert_dn"], identity["root_cert_dn"]) if d]
    if dns:
        if any(dn_matches(certificate, d) for d in dns):
            return None
        return ("subject %s does not match the configured node/root DN (%s)"
                % (dn_string(certificate), " or ".join(dns)))
    found = principals(certificate, identity)
    if rules.NODE_USER in found or ROOT_USER in found:
        return None
    return ("principals %s include neither %r nor %r (node-to-node RPC needs one; or set node_cert_dn)"
            % (_plist(certificate, identity), rules.NODE_USER, ROOT_USER))


def _plist(certificate, identity):
    scopes = user_scopes(certificate, identity)
    if scopes is None:
        return "(a crdb:// URI SAN does not parse)"
    return "[%s]" % ", ".join(u if t is None else "%s (tenant %d)" % (u, t) for u, t in scopes)


def sql_user(certificate, name, identity=None):
    """``(user, problem)``: who CockroachDB authenticates ``client.<name>.crt`` as, and why not as ``name``.

    ``user`` is ``name`` when it is among the principals after mapping (for
    root/node with ``root_cert_dn``/``node_cert_dn`` set: when the DN
    matches), else the first principal CockroachDB would take ('' when none).
    """
    identity = identity_options(identity)
    dn = identity["root_cert_dn"] if name == ROOT_USER else identity["node_cert_dn"] \
        if name == rules.NODE_USER else None
    found = principals(certificate, identity)
    if dn:
        if dn_matches(certificate, dn):
            return name, None
        return "", "subject %s does not match the configured %s DN %s" % (dn_string(certificate), name, dn)
    if _is_tenant_cert(certificate):
        return "", "a tenant client certificate (OU=Tenants) is not allowed as a user certificate"
    if any(u == DEBUG_USER for u, _t in (user_scopes(certificate, identity) or [])):
        return "", "the certificate has principal %s, which may not log in" % DEBUG_USER
    if name in found:
        return name, None
    return (found[0] if found else ""), ("principals %s do not include %r: CockroachDB would not "
                                         "authenticate it as %s" % (_plist(certificate, identity), name, name))


# --------------------------------------------------------------------------
# One certificate against what was wanted (issuing, renewal, external signers, public ui.crt)
# --------------------------------------------------------------------------

def vet_leaf(certs, wanted_file, usages, roots, hosts=None, key=None, public_key=None, principal=None,
             identity=None, now=None, cover_hosts=False, at_least_one_san=False, source=None):
    """Problems of ``certs`` (leaf first, then the intermediates) meant to serve as ``wanted_file``.

    ``usages``: the EKUs it must serve (``serverAuth``/``clientAuth``), each
    verified as Go does against ``roots``; ``hosts``: names it must be valid
    for (server usage: Go's hostname rule); ``key`` / ``public_key``: what it
    must carry; ``principal``: the user (``node``, ``<user>``) it must
    authenticate as under ``identity`` (None: no principal rule);
    ``at_least_one_san``: a public ``ui.crt`` with no hosts asked must carry
    one SAN. ``source`` names the file in messages (default ``wanted_file``).
    """
    now = now or durations.utcnow()
    pki = _pki()
    name = source or wanted_file
    out = []
    if not certs:
        return [Problem(name, "empty", "no certificate", LOAD)]
    leaf = certs[0]
    if key is not None and not key_matches(leaf, key):
        out.append(Problem(name, "key_mismatch", "does not match its key %s" % rules.key_name(wanted_file)
                           if wanted_file.endswith(rules.CERT_SUFFIX) else "does not match its key", LOAD))
    if public_key is not None and pki.public_key_bytes(leaf.public_key()) != pki.public_key_bytes(public_key):
        out.append(Problem(name, "key_mismatch", "certifies a different key than the one asked for", LOAD))
    for usage in usages:
        for host in (hosts or [None]) if usage == rules.EKU_SERVER else [None]:
            _chain, why = verify(leaf, certs[1:], roots, usage, host=host, now=now)
            if why:
                out.append(Problem(name, "chain", "as %s%s: %s" % (usage, " for %s" % host if host else "", why),
                                   HANDSHAKE))
    if cover_hosts:
        for host in hosts or []:
            why = hostname_problem(leaf, host)
            if why and not any(p.code == "chain" and host in p.message for p in out):
                out.append(Problem(name, "host", why, HANDSHAKE))
    if at_least_one_san and not hosts and not pki.san_strings(leaf):
        out.append(Problem(name, "host", "has no SAN: a browser matches the DB Console's name against the "
                                         "SANs only", HANDSHAKE))
    if principal is not None:
        if principal in (rules.NODE_USER,) and principal_is_rpc(wanted_file):
            why = rpc_identity_problem(leaf, identity)
        else:
            _user, why = sql_user(leaf, principal, identity)
        if why:
            out.append(Problem(name, "principal", why, HANDSHAKE))
    return out


def spec_problems(certificate, spec, file=None):
    """What differs between ``certificate`` and the collection's own ``spec`` (a :class:`pki.CertSpec`).

    The collection re-issues its own certificates when these differ (code
    ``wanted``: the collection's policy, not CockroachDB's): CN, O, exactly the
    SANs, exactly the EKUs, not a CA, the OCSP URL.
    """
    pki = _pki()
    name = file or spec.filename
    reasons = []
    if pki.common_name(certificate) != spec.common_name:
        reasons.append("common name is %r, want %r" % (pki.common_name(certificate), spec.common_name))
    if (pki.organization(certificate) or None) != spec.organization:
        reasons.append("organization is %r, want %r" % (pki.organization(certificate), spec.organization))
    have, want = pki.certificate_san_keys(certificate), pki.san_keys(spec.hosts)
    if have != want:
        parts = []
        if want - have:
            parts.append("missing %s" % ", ".join(sorted(v for _t, v in want - have)))
        if have - want:
            parts.append("extra %s" % ", ".join(sorted(v for _t, v in have - want)))
        reasons.append("SANs differ (%s)" % "; ".join(parts))
    have_ekus = pki.ekus(certificate)
    if have_ekus is None or sorted(have_ekus) != sorted(spec.ekus):
        reasons.append("extended key usage is %s, want %s (profile %s)"
                       % (",".join(have_ekus or ["absent"]), ",".join(spec.ekus), spec.profile))
    if pki.is_ca(certificate):
        reasons.append("the certificate is a CA, want a %s leaf" % spec.profile)
    have_ocsp = pki.ocsp_urls(certificate)
    want_ocsp = [spec.ocsp_url] if spec.ocsp_url else []
    if have_ocsp != want_ocsp:
        reasons.append("OCSP URL is %s, want %s" % (have_ocsp or "absent", want_ocsp or "absent"))
    return [Problem(name, "wanted", r, WARNING) for r in reasons]


def principal_is_rpc(cert_file):
    return cert_file in ("node.crt", "client.node.crt")


# --------------------------------------------------------------------------
# A whole certs dir
# --------------------------------------------------------------------------

class FileState(object):
    """One ``.crt`` file as the loader sees it."""

    def __init__(self, name, kind, qualifier):
        self.name = name
        self.kind = kind
        self.qualifier = qualifier
        self.certs = None
        self.key_file = None
        self.key = None
        self.errors = []     # loader-level problems (parse, key find, permissions, key pair)

    @property
    def ok(self):
        return not self.errors


def _effect_for(state, present):
    """A loader-level error's effect. ``LoadCertificates`` fails (the node does not start, a reload is refused)
    for a broken ``node.crt`` when there is no ``client.node.crt``; any other broken file fails where it is used
    (handshakes, authentication). (A reload is also refused when a previously valid CA, node or UI file breaks:
    that depends on what the node had loaded before, which a dir alone does not say.)"""
    if state.name == "node.crt" and "client.node.crt" not in present:
        return LOAD
    return HANDSHAKE


def judge_dir(certs_dir, identity=None, expected_hosts=None, expected_ui_hosts=None, now=None, gid=None,
              skip_permissions=False, permissions=True, content=True, trusted_keys=False, purpose="node",
              layout=None):
    """Judge ``certs_dir`` as a CockroachDB node would; returns a dict.

    ``{"files": {name: FileState}, "problems": [Problem], "verdict": dict or None, "present": set}``.
    ``gid``: the process gid for the key rule (:func:`process_gid`);
    ``skip_permissions``: ``COCKROACH_SKIP_KEY_PERMISSION_CHECK`` is set;
    ``permissions=False``: do not judge modes at all (files on the controller);
    ``content=False``: names, PEM labels and key presence/modes only, no
    cryptography imported, no verdict. ``purpose="client"``: a SQL client's
    dir (its client certs judged, no verdict; with ``layout="split_ca"`` and
    no ``ca-client.crt`` there, the client certs cannot be verified there:
    a warning).

    The verdict (the Go peer prints the same for the same dir)::

        {"load": {"ok", "error"},
         "node": {"ok", "error"},      # when node.crt exists
         "ui": {"ok", "error"},        # when ui.crt or node.crt exists
         "clients": {name: {"ok", "error", "user"}},
         "tenants": {id: {"ok", "error"}}}

    ``load`` not ok leaves out the other keys.
    """
    identity = identity_options(identity)
    now = now or durations.utcnow()
    problems = []
    files = {}
    present = set()
    try:
        # As root in a dir its owner controls: opened O_NOFOLLOW, every file read through its fd.
        handle = fileio.probe_dir(certs_dir, "certs dir")
    except CrdbTlsError as exc:
        problems.append(Problem(certs_dir, "dir_refused", str(exc), LOAD))
        return {"files": files, "problems": problems, "verdict": None, "present": present}
    if handle is None:
        problems.append(Problem(certs_dir, "missing_dir", "the certs dir does not exist", LOAD))
        return {"files": files, "problems": problems, "verdict": None, "present": present}
    with handle:
        names = sorted(handle.listdir())
        present = set(names)
        for tmp, final in fileio.pending_journal(handle):
            problems.append(Problem(final, "pending_update", "an interrupted update left %s pending; the next "
                                    "crdb.tls write completes it" % tmp, WARNING))
        for name in names:
            stem = name[:-len(rules.KEY_SUFFIX)] if name.endswith(rules.KEY_SUFFIX) else None
            if stem and rules.FIXED_NAMES.get(stem + rules.CERT_SUFFIX) in rules.CA_KINDS:
                problems.append(Problem(name, "ca_key_in_dir", "a CA key in the certs dir; CockroachDB never reads "
                                        "it there and it must not be on the node", WARNING))
        bad_tenant = []
        for name in names:
            st = handle.lstat(name)
            if st is None or stat.S_ISDIR(st.st_mode):
                continue
            classified = rules.classify(name)
            if classified is None:
                continue
            kind, qualifier, why = classified
            if kind is None:
                problems.append(Problem(name, "bad_name", why, WARNING))
                continue
            state = FileState(name, kind, qualifier)
            files[name] = state
            if kind in (rules.KIND_TENANT_CLIENT, rules.KIND_TENANT_SIGNING):
                try:
                    parse_tenant_id(qualifier)
                except CrdbTlsError as exc:
                    bad_tenant.append(Problem(name, "bad_tenant_id", "%s: CockroachDB fails the whole load" % exc,
                                              LOAD))
            if kind == rules.KIND_CLIENT:
                try:
                    rules.validate_username(qualifier, what="user in file name %r" % name)
                except CrdbTlsError as exc:
                    problems.append(Problem(name, "not_sql_user", "%s; it loads, and serves only through a principal "
                                            "map" % exc, WARNING))
            try:
                data = handle.read_followed(name, "certificate")
                if data is None:
                    raise CrdbTlsError("%s was removed while the dir was read" % name)
                if content:
                    state.certs = load_certificates(data, name)
                else:
                    blocks = pem_blocks(data)
                    labels = [b[0] for b in blocks]
                    if not labels or set(labels) != set(["CERTIFICATE"]) or any(b[2] is None for b in blocks):
                        raise CrdbTlsError("%s: expected only CERTIFICATE PEM blocks, found %s"
                                           % (name, ", ".join(labels) or "none"))
            except CrdbTlsError as exc:
                message = str(exc)
                if message.startswith(name + ": "):
                    message = message[len(name) + 2:]
                state.errors.append(Problem(name, "unreadable", message, _effect_for(state, present)))
                continue
            if kind in rules.CA_KINDS:
                continue
            state.key_file = rules.key_name(name)
            perm = key_permission_problem(handle, state.key_file, gid, skip=skip_permissions or not permissions)
            if perm is not None:
                perm.file = name
                perm.effect = _effect_for(state, present)
                state.errors.append(perm)
                if perm.code != "key_permissions":
                    continue
            if content:   # judged even when the mode is refused: every problem is reported
                try:
                    key_data = handle.read_followed(state.key_file, "key")
                    if key_data is None:
                        raise CrdbTlsError("key %s was removed while the dir was read" % state.key_file)
                    state.key = load_private_key(key_data, state.key_file, trusted=trusted_keys)
                    if not key_matches(state.certs[0], state.key):
                        raise CrdbTlsError("key %s does not match the certificate" % state.key_file)
                except CrdbTlsError as exc:
                    state.errors.append(Problem(name, "key_pair", "tls.X509KeyPair fails: %s" % exc, HANDSHAKE))
    problems.extend(bad_tenant)
    for state in files.values():
        problems.extend(state.errors)
    verdict = None
    if content:
        _content_notes(files, problems, now)
        verdict = _verdict(files, present, identity, list(expected_hosts or []), list(expected_ui_hosts or []),
                           now, problems, purpose, layout)
    return {"files": files, "problems": problems, "verdict": verdict, "present": present}


def _content_notes(files, problems, now):
    for state in files.values():
        if state.certs is None:
            continue
        if state.kind in rules.CA_KINDS:
            problems.extend(ca_bundle_warnings(state.name, state.certs, now))
        elif state.kind == rules.KIND_TENANT_SIGNING:
            problems.extend(tenant_signing_problems(state, now))
        elif _Ext(state.certs[0]).is_ca:
            problems.append(Problem(state.name, "leaf_is_ca", "the first certificate is a CA, expected the %s leaf"
                                    % state.kind, WARNING))


def tenant_signing_problems(state, now=None):
    """A ``tenant-signing.<id>`` pair as CockroachDB checks it: self-signed Ed25519, digitalSignature, not a CA,
    in date, key matching; never verified against a CA."""
    from cryptography.hazmat.primitives.asymmetric import ed25519
    now = now or durations.utcnow()
    out = []
    cert = state.certs[0]
    ext = _Ext(cert)
    if not isinstance(cert.public_key(), ed25519.Ed25519PublicKey):
        out.append("its key is not Ed25519")
    if not _same_name(cert.issuer, cert.subject) or not _signed_by(cert, cert):
        out.append("it is not self-signed")
    if ext.ku is None or not ext.ku.digital_signature:
        out.append("its keyUsage lacks digitalSignature")
    if ext.is_ca:
        out.append("it is a CA certificate")
    if ext.not_after < now:
        out.append("it expired on %s" % _fmt(ext.not_after))
    elif ext.not_before > now:
        out.append("it is not valid before %s" % _fmt(ext.not_before))
    return [Problem(state.name, "tenant_signing", "tenant signing certificate: %s" % why, HANDSHAKE) for why in out]


def _pool(files, *names):
    """``(certs, name, error)``: the trust pool of the first of ``names`` present (CockroachDB's fallback)."""
    for name in names:
        state = files.get(name)
        if state is None:
            continue
        if not state.ok or state.certs is None:
            return None, name, "%s does not load" % name
        return state.certs, name, None
    return None, names[0], "no %s in the certs dir to verify it" % " or ".join(names)


def _check(state, pool, usage, host, now):
    """``(code, message)`` of presenting ``state``'s chain against ``pool`` for ``usage``, or None."""
    roots, pool_name, pool_err = pool
    if state.certs is None:
        return "unreadable", "; ".join(p.message for p in state.errors)
    if roots is None:
        return ("no_ca" if pool_err.startswith("no ") else "ca_broken"), pool_err
    _chain, why = verify(state.certs[0], state.certs[1:], roots, usage, host=host, now=now)
    if why is None:
        if not state.ok:
            return "unreadable", "; ".join(p.message for p in state.errors)
        return None
    where = " for %s" % host if host else ""
    return "chain", "does not verify against %s as %s%s: %s" % (pool_name, usage, where, why)


def _verdict(files, present, identity, hosts, ui_hosts, now, problems, purpose, layout):
    load_errors = [p for p in problems if p.effect == LOAD and p.code not in POLICY_CODES]
    verdict = {"load": {"ok": not load_errors, "error": "; ".join(str(p) for p in load_errors)}}
    ca = _pool(files, "ca.crt")
    client_ca = _pool(files, "ca-client.crt", "ca.crt")
    tenant_ca = _pool(files, "ca-client-tenant.crt", "ca-client.crt", "ca.crt")
    client_pool = client_ca
    if client_ca[0] is not None:
        if tenant_ca[0] is None:   # a ca-client-tenant.crt that does not load: the server config cannot be built
            client_pool = (None, tenant_ca[1], tenant_ca[2])
        else:
            client_pool = (list(client_ca[0]) + list(tenant_ca[0]), client_ca[1], None)
    if purpose == "client" and layout == "split_ca" and "ca-client.crt" not in present:
        client_pool = (None, "ca-client.crt", "no ca-client.crt in a client's dir: the node verifies it")

    def add(state, found, prefix=""):
        if found is None:
            return None
        code, message = found
        if code != "unreadable":
            problems.append(Problem(state.name, code, prefix + message,
                                    WARNING if code == "no_ca" and purpose == "client" else HANDSHAKE))
        return prefix + message

    node = files.get("node.crt") if purpose == "node" else None
    if node is not None:
        errors = []
        for host in hosts or [None]:
            errors.append(add(node, _check(node, ca, rules.EKU_SERVER, host, now), "server side: "))
        if client_pool[0] is None and client_ca[0] is not None:
            errors.append(add(node, ("ca_broken", client_pool[2]), "server side: "))
        client = files.get("client.node.crt") or node
        found = _check(client, client_pool, rules.EKU_CLIENT, None, now)
        errors.append(add(client, found, "node-to-node client side: "))
        if found is None or found[0] == "unreadable" and client.certs:
            rpc = rpc_identity_problem(client.certs[0], identity)
            if rpc:
                errors.append(add(client, ("principal", rpc), "node-to-node RPC: "))
        errors = [e for e in errors if e]
        verdict["node"] = {"ok": not errors, "error": "; ".join(errors)}
    ui = (files.get("ui.crt") or node) if purpose == "node" else None
    if ui is not None:
        ui_pool = _pool(files, "ca-ui.crt", "ca.crt")
        tenant_file = files.get("ca-client-tenant.crt")
        if ui_pool[0] is not None and tenant_file is not None and tenant_file.ok and tenant_file.certs:
            ui_pool = (list(ui_pool[0]) + list(tenant_file.certs), ui_pool[1], None)
        errors = []
        for host in (ui_hosts or hosts) or [None]:
            found = _check(ui, ui_pool, rules.EKU_SERVER, host, now)
            if found is None:
                continue
            errors.append(found[1])
            if ui.name == "node.crt" and not ui_hosts or not ui.ok:
                continue   # reported for node.crt already
            public = (ui.name == "ui.crt" and "ca-ui.crt" not in present and found[0] == "chain"
                      and (host is None or hostname_problem(ui.certs[0], host) is None))
            if public:
                problems.append(Problem(ui.name, "ui_public", "DB Console: %s; a ui.crt from a public CA is trusted "
                                        "by browsers, but CockroachDB's own HTTP clients need its root as ca-ui.crt"
                                        % found[1], WARNING))
            else:
                problems.append(Problem(ui.name, found[0], "DB Console: " + found[1], HANDSHAKE))
        verdict["ui"] = {"ok": not errors, "error": "; ".join(errors)}
    clients = {}
    for name in sorted(files):
        state = files[name]
        if state.kind != rules.KIND_CLIENT:
            continue
        found = _check(state, client_pool, rules.EKU_CLIENT, None, now)
        user = ""
        if state.certs:
            user, why = sql_user(state.certs[0], state.qualifier, identity)
            if found is None and why:
                found = ("principal", why)
            elif found is not None and found[0] != "principal":
                user = ""   # the handshake fails: CockroachDB authenticates nobody
            if found is None and identity["tenant_scope"] and not _has_tenant_uri(state.certs[0]):
                problems.append(Problem(name, "no_tenant_uri", "identity.tenant_scope is set but it carries no "
                                        "crdb://tenant/<id>/user/<name> URI SAN (authenticated by its CN)", WARNING))
        message = add(state, found) if not (name == "client.node.crt" and node is not None) else \
            (found[1] if found else None)
        clients[state.qualifier] = {"ok": found is None, "error": message or "", "user": user}
    tenants = {}
    for name in sorted(files):
        state = files[name]
        if state.kind != rules.KIND_TENANT_CLIENT:
            continue
        message = add(state, _check(state, tenant_ca, rules.EKU_CLIENT, None, now))
        tenants[state.qualifier] = {"ok": message is None, "error": message or ""}
    if purpose != "node":
        return None
    if load_errors:
        return {"load": verdict["load"]}
    verdict["clients"] = clients
    verdict["tenants"] = tenants
    return verdict


def _has_tenant_uri(certificate):
    x509 = _pki().x509
    return any(u.startswith(TENANT_URI_PREFIX) for u in _Ext(certificate).names(x509.UniformResourceIdentifier))
