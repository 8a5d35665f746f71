# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Signing without the CA key: external signer commands and the offline hand-off.

Two ways a CA the collection does not hold signs a CSR:

* :func:`sign_with_command` runs a command on the controller (a list of argv,
  no shell) with the CSR (PEM) on stdin and the profile in ``CRDB_TLS_*``
  environment variables, and reads the signed certificate, optionally followed
  by its chain, as PEM from stdout (``openssl ca``, ``step ca sign``, Vault's
  ``pki/sign/<role>``: see ``docs/external-signers.md``).
* :func:`write_handoff` / :func:`pending` / :func:`read_handoff`: a directory
  where ``<name>.csr`` files are left for a ticket process and the signed
  ``<name>.crt`` files are picked up by a later run.

Either way, what comes back goes through :func:`vet_issued` before anything is
installed: the certificate must carry the CSR's key, be followed by its
intermediates in order, chain to the trust roots, be in date, not outlive its
CA chain, and carry what CockroachDB needs of its profile. An external CA owns
its subject policy, so the rules are those of :func:`pki.drift` relaxed where
a CA legitimately differs (see :func:`vet_issued`).

No private key ever passes through here; the CSR is never put into an error
message either.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import re
import shlex

from ansible_collections.crdb.tls.plugins.module_utils import pem, pki
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

try:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID
    ANY_EKU_OID = ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE if hasattr(
        ExtendedKeyUsageOID, "ANY_EXTENDED_KEY_USAGE") else x509.ObjectIdentifier("2.5.29.37.0")
except ImportError:  # pragma: no cover - reported by the modules
    x509 = None
    ANY_EKU_OID = None

DEFAULT_TIMEOUT = 60
STDERR_LINES = 5
# A certificate whose notBefore is this far in the future is accepted: the CA's
# clock may run slightly ahead of the controller's.
CLOCK_SKEW = datetime.timedelta(minutes=5)
# Profiles whose common name CockroachDB depends on (principal ``node`` or the
# SQL user): an external CA must keep it. node_server and ui certs are matched
# by SAN only, so their CN is the CA's choice.
FIXED_CN_PROFILES = ("node", "node_client", "client")
ANY_EKU_DOTTED = "2.5.29.37.0"
CSR_SUFFIX = ".csr"
CRT_SUFFIX = ".crt"
_HANDOFF_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,199}$")


# --------------------------------------------------------------------------
# Signer commands
# --------------------------------------------------------------------------

def profile_environment(spec, host=None):
    """The ``CRDB_TLS_*`` variables a signer command receives for ``spec``.

    ``CRDB_TLS_SANS`` lists every SAN comma-separated in request order;
    ``CRDB_TLS_DNS_SANS`` and ``CRDB_TLS_IP_SANS`` split them for CAs that
    take them apart (Vault's ``alt_names`` / ``ip_sans``).
    """
    sans = [str(name.value) for name in spec.hosts]
    dns = [str(name.value) for name in spec.hosts if isinstance(name, x509.DNSName)]
    ips = [str(name.value) for name in spec.hosts if isinstance(name, x509.IPAddress)]
    return {
        "CRDB_TLS_PROFILE": spec.profile,
        "CRDB_TLS_COMMON_NAME": spec.common_name,
        "CRDB_TLS_SANS": ",".join(sans),
        "CRDB_TLS_DNS_SANS": ",".join(dns),
        "CRDB_TLS_IP_SANS": ",".join(ips),
        "CRDB_TLS_EKUS": ",".join(spec.ekus),
        "CRDB_TLS_LIFETIME_HOURS": str(int(spec.lifetime.total_seconds() // 3600)),
        "CRDB_TLS_USER": spec.user or "",
        "CRDB_TLS_ORGANIZATION": spec.organization or "",
        "CRDB_TLS_CERT_FILE": spec.filename,
        "CRDB_TLS_HOST": host or "",
    }


def describe_command(command):
    text = " ".join(shlex.quote(str(arg)) for arg in command)
    return text if len(text) <= 200 else text[:197] + "..."


def _check_command(command):
    if isinstance(command, (str, bytes)) or not isinstance(command, (list, tuple)) or not command:
        raise CrdbTlsError("signer command must be a non-empty list of arguments (argv, no shell), "
                           "got %r" % (command,))
    if not all(isinstance(arg, str) for arg in command) or not command[0].strip():
        raise CrdbTlsError("signer command %r: every argument must be a string and the program "
                           "must not be empty" % (command,))
    return list(command)


def stderr_tail(data, lines=STDERR_LINES):
    """The last ``lines`` lines of a command's stderr, PEM blocks and key material removed."""
    if not data:
        return ""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
    text = re.sub(r"-----BEGIN [A-Z0-9 ]+-----.*?(-----END [A-Z0-9 ]+-----|\Z)", "[PEM block removed]",
                  text, flags=re.DOTALL)
    kept = [line.rstrip()[:300] for line in text.splitlines()
            if line.strip() and "PRIVATE KEY" not in line.upper()]
    return "\n".join(kept[-lines:])


def _failure(command, what, stderr):
    tail = stderr_tail(stderr)
    message = "signer command %s %s" % (describe_command(command), what)
    if tail:
        message += "; its stderr ends with:\n" + tail
    else:
        message += " (nothing on stderr)"
    return CrdbTlsError(message)


# How a signer command is run: plugin_utils/commands.py (controller code) hands
# its runner over when imported, as the controller-only modules' runner and the
# action plugins do. Module code that runs on a node never starts one.
_COMMAND_RUNNER = []


def set_command_runner(runner):
    """``runner(argv, stdin_bytes, env, timeout) -> (returncode, stdout, stderr, timed_out)``."""
    _COMMAND_RUNNER[:] = [runner]


def certificates_from_output(data, source):
    """Every CERTIFICATE PEM block in ``data`` in order; text around the blocks is ignored."""
    certs = []
    for index, (label, block) in enumerate(pem.blocks(data or b""), 1):
        if label != "CERTIFICATE":
            continue
        try:
            certs.append(x509.load_pem_x509_certificate(block))
        except ValueError as exc:
            raise CrdbTlsError("%s: PEM block %d is not a valid certificate (%s)"
                               % (source, index, str(exc).splitlines()[0][:200] if str(exc) else exc))
    return certs


def sign_with_command(command, csr_pem, spec, timeout=DEFAULT_TIMEOUT, env=None, host=None):
    """Have ``command`` sign ``csr_pem`` for ``spec``; returns the certificates it printed.

    ``command`` is an argv list run on the controller without a shell, in its
    own process group (a timeout kills the whole group). Its environment is
    the controller's, plus ``env`` (e.g. ``VAULT_ADDR``), plus
    :func:`profile_environment`. The result (leaf first, then the chain) is
    NOT vetted yet: pass it to :func:`vet_issued`.
    """
    argv = _check_command(command)
    if isinstance(csr_pem, str):
        csr_pem = csr_pem.encode("ascii")
    environment = dict(os.environ)
    for key, value in (env or {}).items():
        environment[str(key)] = str(value)
    environment.update(profile_environment(spec, host))
    if not _COMMAND_RUNNER:
        raise CrdbTlsError("signer command %s: signer commands run only on the controller, inside the "
                           "action plugin of crdb.tls.issue_fleet" % describe_command(argv))
    try:
        returncode, stdout, stderr, timed_out = _COMMAND_RUNNER[0](argv, csr_pem, environment, timeout)
    except OSError as exc:
        raise CrdbTlsError("signer command %s cannot be started: %s"
                           % (describe_command(argv), exc.strerror or exc))
    if timed_out:
        raise _failure(argv, "did not finish within %s seconds and was killed" % timeout, stderr)
    if returncode != 0:
        if returncode < 0:
            what = "was killed by signal %d" % -returncode
        else:
            what = "failed with exit code %d" % returncode
        raise _failure(argv, what, stderr)
    source = "the output of signer command %s" % describe_command(argv)
    certs = certificates_from_output(stdout, source)
    if not certs:
        raise _failure(argv, "printed no PEM certificate on stdout (%d bytes of output; expected "
                             "-----BEGIN CERTIFICATE----- blocks, leaf first)" % len(stdout or b""),
                       stderr)
    return certs


# --------------------------------------------------------------------------
# Vetting what a CA returned
# --------------------------------------------------------------------------

def _as_certificates(value, source):
    if isinstance(value, (bytes, str)):
        data = value.encode("ascii") if isinstance(value, str) else value
        return pki.load_certificates(data, source)
    return list(value or [])


def _fmt(when):
    return when.strftime("%Y-%m-%d %H:%M UTC")


def vet_issued(certs, spec, public_key, trust_roots, host=None, now=None, identity=None):
    """Vet a certificate a CA returned, before it is installed; returns ``[leaf] + intermediates``.

    ``certs`` is what the CA returned (x509 list or PEM), leaf first;
    ``public_key`` the key of the CSR; ``trust_roots`` the roots that will be
    in ``ca.crt`` / ``ca-client.crt`` (x509 list or PEM); ``identity`` the
    cluster's identity options (see :func:`verifier.identity_options`).
    Raises :class:`CrdbTlsError` naming ``host`` and everything that is wrong.

    The judgement is :mod:`verifier`'s (Go's ``x509.Verify`` and
    CockroachDB's principal rules): the leaf carries the CSR's key and is not
    a CA; it chains to ``trust_roots`` through the certificates that follow it
    (in any order) for every usage of the profile, EKUs nested through the
    intermediates, pathLen and name constraints honoured; it is in date (a
    notBefore up to 5 minutes ahead is tolerated); it does not outlive its CA
    chain. Where an external CA legitimately differs from :func:`pki.drift`:

    * the subject is the CA's choice, as long as CockroachDB authenticates the
      certificate as the profile needs under ``identity`` (``node``,
      ``node_client``: principal ``node`` or ``root``, or the node/root DN;
      ``client``: the user, through the principal map or tenant URI SANs);
      ``node_server`` and ``ui`` need no principal;
    * the SANs must cover every requested host (Go's hostname rule); extra
      SANs are allowed;
    * the EKUs must allow the profile's usages (``anyExtendedKeyUsage`` and an
      absent extension allow all, as in Go); others are allowed;
    * a requested OCSP URL must be present; the CA may add its own;
    * the lifetime is the CA's choice, within its chain's.

    Certificates at the end of the returned chain that are trust roots
    themselves are dropped from the result (``ca.crt`` carries them).
    """
    from ansible_collections.crdb.tls.plugins.module_utils import rules, verifier
    now = now or pki.utcnow()
    who = host or "the certificate"
    filename = spec.filename
    certs = _as_certificates(certs, "%s: %s returned by the CA" % (who, filename))
    roots = _as_certificates(trust_roots, "trust roots")
    if not certs:
        raise CrdbTlsError("%s: the CA returned no certificate for %s" % (who, filename))
    if not roots:
        raise CrdbTlsError("%s: no trust roots to vet %s against" % (who, filename))
    leaf, intermediates = certs[0], certs[1:]
    signed = "the CA signed %s" % filename

    if pki.public_key_bytes(leaf.public_key()) != pki.public_key_bytes(public_key):
        raise CrdbTlsError("%s: the CA returned %s (%s, serial %s) for a different key than the CSR's; "
                           "refusing to install it" % (who, filename, leaf.subject.rfc4514_string(),
                                                       pki.serial_hex(leaf)))
    problems = []
    if pki.is_ca(leaf):
        problems.append("%s as a CA certificate (basicConstraints CA:TRUE)" % signed)
    hash_name = pki.signature_hash_name(leaf)
    if hash_name in pki.WEAK_HASHES:
        problems.append("%s with %s, which is refused (SHA-256 or better)" % (signed, hash_name.upper()))

    end, start = pki.not_after(leaf), pki.not_before(leaf)
    if end <= now:
        problems.append("the CA returned %s already expired (on %s)" % (filename, _fmt(end)))
    elif start > now + CLOCK_SKEW:
        problems.append("the CA returned %s not valid before %s" % (filename, _fmt(start)))
    for name in spec.hosts:
        if verifier.hostname_problem(leaf, str(name.value)):
            problems.append("%s without SAN %s" % (signed, name.value))
    usages = [e for e in spec.ekus if e in (rules.EKU_SERVER, rules.EKU_CLIENT)]
    leaf_ekus = pki.ekus(leaf)
    # Go: an absent EKU extension, or anyExtendedKeyUsage, allows every usage
    missing = [] if leaf_ekus is None or ANY_EKU_DOTTED in leaf_ekus else [e for e in spec.ekus if e not in leaf_ekus]
    if missing:
        problems.append("%s without extended key usage %s" % (signed, ", ".join(missing)))
    if end > now and start <= now + CLOCK_SKEW:
        chain_now = max(now, start)
        pool = [c for c in intermediates if not _is_root(c, roots)]
        broken = []
        for usage in usages if not missing else []:
            _chain, why = verifier.verify(leaf, pool, roots, usage, now=chain_now)
            if why and why not in broken:
                broken.append(why)
        if broken:
            problems.append("%s does not chain to the trusted CA (%s): %s"
                            % (filename, ", ".join(r.subject.rfc4514_string() for r in roots), "; ".join(broken)))
        elif not missing:
            ca_end = _chain_end(certs, roots)
            if ca_end is not None and end > ca_end:
                problems.append("%s valid until %s, after its CA chain expires (%s)"
                                % (signed, _fmt(end), _fmt(ca_end)))
    principal = spec.user if spec.profile == "client" else (
        rules.NODE_USER if spec.profile in ("node", "node_client") else None)
    if principal is not None:
        if spec.profile == "client":
            _user, why = verifier.sql_user(leaf, principal, identity)
        else:
            why = verifier.rpc_identity_problem(leaf, identity)
        if why:
            problems.append("%s with subject %s, which CockroachDB does not authenticate as %s: %s"
                            % (signed, leaf.subject.rfc4514_string(), principal, why))
    if spec.ocsp_url and spec.ocsp_url not in pki.ocsp_urls(leaf):
        problems.append("%s without OCSP URL %s" % (signed, spec.ocsp_url))
    if problems:
        raise CrdbTlsError("%s: %s" % (who, "; ".join(problems)))
    kept = list(certs)
    while len(kept) > 1 and _is_root(kept[-1], roots):
        kept.pop()
    return kept


def _is_root(certificate, roots):
    der = pki.fingerprint(certificate)
    return any(pki.fingerprint(root) == der for root in roots)


def _chain_end(certs, roots):
    """The earliest expiry of the CA certificates above the leaf, anchor included."""
    ends = [pki.not_after(c) for c in certs[1:]]
    top = certs[-1]
    anchors = [r for r in roots if pki.issued_by(top, r)]
    if anchors:
        ends.append(max(pki.not_after(r) for r in anchors))
    return min(ends) if ends else None


# --------------------------------------------------------------------------
# Offline hand-off: <csr_dir>/<name>.csr out, <csr_dir>/<name>.crt back
# --------------------------------------------------------------------------

def handoff_name(name):
    """Validate a hand-off name (it becomes a file name): e.g. ``node2.node``, ``client.root``."""
    if not isinstance(name, str) or not _HANDOFF_NAME.match(name) or ".." in name:
        raise CrdbTlsError("hand-off name %r is not usable as a file name (letters, digits, '_', '-', '.', "
                           "'@'; no '/' or '..')" % (name,))
    return name


def handoff_paths(csr_dir, name):
    """``(csr_path, crt_path)`` of ``name`` in ``csr_dir``."""
    name = handoff_name(name)
    return os.path.join(csr_dir, name + CSR_SUFFIX), os.path.join(csr_dir, name + CRT_SUFFIX)


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


def write_handoff(csr_dir, name, csr_pem):
    """Write ``<csr_dir>/<name>.csr`` (0644, atomically); returns True when the file changed.

    The CSR is checked first (its signature, key strength). An identical CSR
    already there is left alone. A different CSR replaces it, and a
    ``<name>.crt`` lying next to it that is not for the new CSR's key is then
    stale: :func:`read_handoff` refuses it until the CA signs the new CSR.
    """
    if isinstance(csr_pem, str):
        csr_pem = csr_pem.encode("ascii")
    csr_path = handoff_paths(csr_dir, name)[0]
    pki.csr_public_key(csr_pem, "the CSR for %s" % name)
    if not os.path.isdir(csr_dir):
        try:
            os.makedirs(csr_dir, 0o755, exist_ok=True)
        except OSError as exc:
            raise CrdbTlsError("csr_dir %s cannot be created: %s" % (csr_dir, exc.strerror or exc))
    if os.path.exists(csr_path) and _read(csr_path) == csr_pem:
        return False
    tmp = "%s.tmp.%d" % (csr_path, os.getpid())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(csr_pem)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.rename(tmp, csr_path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise CrdbTlsError("%s cannot be written: %s" % (csr_path, exc.strerror or exc))
    return True


def pending(csr_dir, names):
    """The names (in order) whose signed ``<name>.crt`` is not in ``csr_dir`` yet (missing or empty)."""
    out = []
    for name in names:
        crt_path = handoff_paths(csr_dir, name)[1]
        if not os.path.isfile(crt_path) or os.path.getsize(crt_path) == 0:
            out.append(name)
    return out


def read_handoff(csr_dir, name):
    """``(certs, public_key)`` of a signed ``<name>.crt`` and its ``<name>.csr``; None when not signed yet.

    ``certs`` is every certificate in the file (PEM, leaf first; a lone DER
    certificate is accepted too), ``public_key`` the CSR's. A certificate that
    is not for the CSR's key is refused here. Pass both to :func:`vet_issued`.
    """
    csr_path, crt_path = handoff_paths(csr_dir, name)
    if not os.path.isfile(crt_path) or os.path.getsize(crt_path) == 0:
        return None
    if not os.path.isfile(csr_path):
        raise CrdbTlsError("%s is there but %s is not: the certificate cannot be matched to a request "
                           "(run the first step again to write the CSR)" % (crt_path, csr_path))
    public_key = pki.csr_public_key(_read(csr_path), csr_path)
    data = _read(crt_path)
    if b"-----BEGIN" in data:
        certs = certificates_from_output(data, crt_path)
        if not certs:
            raise CrdbTlsError("%s: no CERTIFICATE PEM block in the file" % crt_path)
    else:
        try:
            certs = [x509.load_der_x509_certificate(data)]
        except ValueError:
            raise CrdbTlsError("%s: neither PEM certificates nor a DER certificate" % crt_path)
    leaf = certs[0]
    if pki.public_key_bytes(leaf.public_key()) != pki.public_key_bytes(public_key):
        raise CrdbTlsError("%s (%s, serial %s) is not for the key of %s: it was signed for another request "
                           "(an older CSR?); get %s signed and put the result there"
                           % (crt_path, leaf.subject.rfc4514_string(), pki.serial_hex(leaf), csr_path,
                              os.path.basename(csr_path)))
    return certs, public_key
