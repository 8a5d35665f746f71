# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who signs a fleet's certificates when the CA key is not in the PKI dir.

Per CA role (``ca``, ``client_ca``) :mod:`fleet` signs with one of:

* the CA key kept in the PKI dir by ``crdb.tls.ca`` (:mod:`authority`, no
  backend here: :func:`issuance.plan` signs);
* :class:`CommandSigner`: an external signer command (``signer.py``), with a
  CSR on stdin and the chain on stdout;
* :class:`HandoffSigner`: the offline hand-off: ``<csr_dir>/<name>.csr`` out,
  ``<csr_dir>/<name>.crt`` back on a later run.

The PKI dir then only holds the trust bundle (``crdb.tls.ca`` with
``external_signer=true``). :func:`plan` is :func:`issuance.plan` for these
backends: it keeps a certificate that still passes :func:`signer.vet_issued`
against the trust bundle (and is not due for renewal), and otherwise gets a
new one signed. Everything a CA returns is vetted before it is written.
Keys are made on the controller; in the hand-off a key waits for its signed
certificate in ``<pki_dir>/handoff-keys/`` (0700 dir, 0600 files).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import threading

from ansible_collections.crdb.tls.plugins.module_utils import authority, fileio, issuance, pki, renewal, rules, signer
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

try:
    from cryptography import x509
except ImportError:  # pragma: no cover - reported by the modules
    x509 = None

HANDOFF_KEYS_DIR = "handoff-keys"
SUPERSEDED_SUFFIX = ".superseded"


def options(command=None, csr_dir=None, env=None, timeout=None):
    """One CA role's signing option dict (None: the CA key in the PKI dir signs)."""
    if command and csr_dir:
        raise CrdbTlsError("a signer command and a csr_dir exclude each other for one CA (command %s, csr_dir %s)"
                           % (signer.describe_command(command), csr_dir))
    if command:
        return {"command": list(command), "env": dict(env or {}), "timeout": timeout or signer.DEFAULT_TIMEOUT}
    if csr_dir:
        return {"csr_dir": csr_dir}
    return None


def backend(pki_dir, role, config):
    """The backend of ``role`` for a signing option dict from :func:`options`."""
    # PEM, parsed again by each vetting: certificate objects are not shared between the
    # worker threads (cryptography < 39 refuses concurrent reads of one object's extensions).
    roots = pki.certificates_pem(authority.trust_roots(pki_dir, role))
    if config.get("command"):
        return CommandSigner(role, config["command"], roots, config.get("env"),
                             config.get("timeout") or signer.DEFAULT_TIMEOUT)
    if config.get("csr_dir"):
        return HandoffSigner(role, config["csr_dir"], os.path.join(pki_dir, HANDOFF_KEYS_DIR), roots)
    raise CrdbTlsError("CA %s: a signing option needs either command or csr_dir" % role)


def is_backend(value):
    return isinstance(value, (CommandSigner, HandoffSigner))


def handoff_name(host, spec):
    """The hand-off name of a certificate: ``<host>.node``, ``<host>.client.node``, ``<host>.ui`` or ``client.<user>``."""
    stem = spec.filename[:-len(rules.CERT_SUFFIX)]
    return stem if host is None else "%s.%s" % (host, stem)


class CommandSigner(object):
    """Signs through an external command; calls are serialised (``openssl ca`` keeps one index)."""

    kind = "command"

    def __init__(self, role, command, roots, env=None, timeout=signer.DEFAULT_TIMEOUT):
        self.role = role
        self.command = signer._check_command(command)   # pylint: disable=protected-access
        self.roots = roots
        self.env = env or {}
        self.timeout = timeout
        self.lock = threading.Lock()

    def sign(self, spec, csr_pem, public_key, who, now):
        """Have the command sign ``csr_pem`` (for ``public_key``); returns the vetted chain."""
        with self.lock:
            certs = signer.sign_with_command(self.command, csr_pem, spec, timeout=self.timeout, env=self.env,
                                             host=who)
        return signer.vet_issued(certs, spec, public_key, self.roots, host=who, now=now)


class HandoffSigner(object):
    """The offline hand-off through ``csr_dir``; keys wait in ``keys_dir`` until their certificate is back."""

    kind = "csr_dir"

    def __init__(self, role, csr_dir, keys_dir, roots):
        self.role = role
        self.csr_dir = csr_dir
        self.keys_dir = keys_dir
        self.roots = roots

    def key_path(self, name):
        return os.path.join(self.keys_dir, signer.handoff_name(name) + rules.KEY_SUFFIX)

    def waiting_key(self, name, key_spec, installed_key, check_mode):
        """The key waiting for ``name``'s certificate, made (and kept, 0600) when there is none yet.

        A waiting key of another type, or the key already installed (its
        certificate came back earlier), is replaced. None in check mode when
        a key would have to be made.
        """
        path = self.key_path(name)
        data = fileio.read_optional(path)
        if data is not None:
            key = pki.load_private_key(data, path, trusted=True)
            stale = installed_key is not None and pki.public_key_bytes(key.public_key()) == pki.public_key_bytes(
                installed_key.public_key())
            if pki.key_spec_of(key) == key_spec and not stale:
                return key
        if check_mode:
            return None
        key = pki.generate_key(*key_spec)
        if not os.path.isdir(self.keys_dir):
            os.makedirs(self.keys_dir, 0o700, exist_ok=True)
        os.chmod(self.keys_dir, 0o700)
        fileio.atomic_write(path, pki.private_key_pem(key), rules.KEY_MODE)
        return key

    def request(self, name, spec, public_key, check_mode, make_csr, wanted_csr=None):
        """Make sure ``<csr_dir>/<name>.csr`` asks for ``spec`` with ``public_key``; returns reasons (empty: unchanged).

        ``make_csr()`` gives the CSR to write when the one there does not fit. ``wanted_csr``: a CSR
        made elsewhere; the one there fits when it asks for the same (key, subject, extensions).

        A ``<name>.crt`` lying there when the request changes answers an
        older request: it is renamed ``<name>.crt.superseded``.
        """
        csr_path, crt_path = signer.handoff_paths(self.csr_dir, name)
        current = fileio.read_optional(csr_path)
        if current is not None and (_same_request(current, wanted_csr) if wanted_csr is not None
                                    else _csr_fits(current, spec, public_key)):
            return []
        reasons = ["%s %s" % (csr_path, "written" if current is None else "rewritten (request changed)")]
        if check_mode:
            return reasons
        signer.write_handoff(self.csr_dir, name, make_csr())
        if os.path.exists(crt_path):
            os.rename(crt_path, crt_path + SUPERSEDED_SUFFIX)
            reasons.append("%s answered an older request, moved to %s%s"
                           % (crt_path, os.path.basename(crt_path), SUPERSEDED_SUFFIX))
        return reasons

    def collect(self, name, spec, wanted_key, who, now):
        """The vetted chain signed for ``name``, or None while ``<name>.crt`` is not there yet."""
        got = signer.read_handoff(self.csr_dir, name)
        if got is None:
            return None
        certs, public_key = got
        if pki.public_key_bytes(public_key) != pki.public_key_bytes(wanted_key):
            raise CrdbTlsError("%s: the request %s is not for the key waiting in %s; run again to rewrite it"
                               % (who, signer.handoff_paths(self.csr_dir, name)[0], self.key_path(name)))
        return signer.vet_issued(certs, spec, public_key, self.roots, host=who, now=now)


def _same_request(current_pem, wanted_pem):
    """Two CSRs ask for the same certificate (key, subject, extensions), whatever their signatures."""
    try:
        one, two = x509.load_pem_x509_csr(current_pem), x509.load_pem_x509_csr(wanted_pem)
    except ValueError:
        return False
    return (pki.public_key_bytes(one.public_key()) == pki.public_key_bytes(two.public_key())
            and one.subject == two.subject and list(one.extensions) == list(two.extensions))


def _csr_fits(csr_pem, spec, public_key):
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        return False
    if pki.public_key_bytes(csr.public_key()) != pki.public_key_bytes(public_key):
        return False
    if csr.subject != spec.subject():
        return False
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        have = pki.san_keys(list(sans))
    except x509.ExtensionNotFound:
        have = set()
    if have != pki.san_keys(spec.hosts):
        return False
    try:
        ekus = list(csr.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        ekus = []
    return sorted(e.dotted_string for e in ekus) == sorted(pki.EKU_OIDS[e].dotted_string for e in spec.ekus)


class ExternalPlan(issuance.Plan):
    """An :class:`issuance.Plan` whose certificate may still be awaited from an offline CA."""

    def __init__(self, certs_dir, spec):
        super(ExternalPlan, self).__init__(certs_dir, spec)
        self.awaiting = None      # hand-off name while the signed certificate is not back
        self.cleanup = []         # waiting keys to remove once the plan is applied
        self.error = None         # why the CA refused or its answer was refused (fleet reports them all)

    @property
    def changed(self):
        return bool(self.files or self.attribute_fixes or self.awaiting)


def _current_state(certs_dir, spec, roots, key_spec, renew_before, who, now, public_key=None):
    """``(chain, key, cert_reasons, key_reasons)``: the certificate stays while it vets like a new one.

    With ``public_key`` (a CSR's: the key lives elsewhere) no key file is read and the certificate
    must carry that key.
    """
    cert_name = spec.filename
    key_name = rules.key_name(cert_name)
    chain, key, cert_reasons, key_reasons = issuance.read_on_disk(certs_dir, spec, key_spec,
                                                                  read_key=public_key is None)
    if chain:
        leaf = chain[0]
        if key is not None and not pki.keys_match(leaf, key):
            key_reasons.append("%s does not match %s" % (key_name, cert_name))
        elif public_key is not None and pki.public_key_bytes(leaf.public_key()) != pki.public_key_bytes(public_key):
            cert_reasons.append("%s does not carry the requested public key" % cert_name)
        else:
            try:
                signer.vet_issued(chain, spec, leaf.public_key(), roots, host=who, now=now)
            except CrdbTlsError as exc:
                cert_reasons.append("%s no longer passes vetting: %s" % (cert_name, exc))
        why = pki.renewal_reason(leaf, renew_before, now)
        if why:
            cert_reasons.append("%s %s" % (cert_name, why))
    return chain, key, cert_reasons, key_reasons


def plan(certs_dir, spec, backend_, name, who=None, key_type=pki.DEFAULT_KEY_TYPE, key_size=None,
         renew_before=None, pkcs8=False, ca_bundle=None, index_path=None, check_mode=False, now=None,
         csr_pem=None):
    """:func:`issuance.plan` for a certificate signed by ``backend_`` (no CA key); returns an :class:`ExternalPlan`.

    ``name`` is the hand-off name (:func:`handoff_name`), ``who`` the host (or
    user) named in errors. A certificate that passes :func:`signer.vet_issued`
    against the trust bundle, with its key, and is not due for renewal is
    kept; otherwise a new key is made and signed (or, in the hand-off, its
    CSR written and the plan left ``awaiting`` until ``<name>.crt`` is back).
    In check mode no command runs and nothing is written.

    ``csr_pem``: a CSR made where the key lives (for example on the node):
    that request is signed or handed off as it is, the certificate must carry
    its key, and no key file is read or written here.
    """
    now = now or pki.utcnow()
    fileio.require_dir(certs_dir, "certs_dir")
    key_spec = pki.check_key_spec(key_type, key_size)
    renew_before = renewal.check_window(renew_before, spec.lifetime)
    result = ExternalPlan(certs_dir, spec)
    result.index_path = index_path
    cert_name = spec.filename
    key_name = rules.key_name(cert_name)
    who = who or name
    public_key = pki.csr_public_key(csr_pem, "the CSR for %s" % name) if csr_pem is not None else None
    chain, key, cert_reasons, key_reasons = _current_state(certs_dir, spec, backend_.roots, key_spec,
                                                           renew_before, who, now, public_key)
    result.reasons.extend(key_reasons + cert_reasons)
    new_key, new_chain = None, None
    if cert_reasons or key_reasons:
        if backend_.kind == "command":
            if check_mode:
                result.awaiting = name
                result.reasons.append("%s would be signed by %s" % (cert_name, signer.describe_command(
                    backend_.command)))
            elif public_key is not None:
                new_chain = backend_.sign(spec, csr_pem, public_key, who, now)
            else:
                new_key = pki.generate_key(*key_spec)
                new_chain = backend_.sign(spec, pki.make_csr(spec, new_key), new_key.public_key(), who, now)
        elif public_key is not None:
            asked = backend_.request(name, spec, public_key, check_mode, lambda: csr_pem, csr_pem)
            result.reasons.extend(asked)
            # In check mode a request that would be rewritten is not read back (its answer is stale).
            new_chain = None if (check_mode and asked) else backend_.collect(name, spec, public_key, who, now)
            if new_chain is None:
                result.awaiting = name
        else:
            installed = key if chain and key is not None and pki.keys_match(chain[0], key) else None
            waiting = backend_.waiting_key(name, key_spec, installed, check_mode)
            if waiting is None:
                result.awaiting = name
            else:
                asked = backend_.request(name, spec, waiting.public_key(), check_mode,
                                         lambda: pki.make_csr(spec, waiting))
                result.reasons.extend(asked)
                if not (check_mode and asked):
                    new_chain = backend_.collect(name, spec, waiting.public_key(), who, now)
                if new_chain is None:
                    result.awaiting = name
                else:
                    new_key = waiting
                    result.cleanup.append(backend_.key_path(name))
                    result.reasons.append("%s signed by the CA picked up from %s"
                                          % (cert_name, signer.handoff_paths(backend_.csr_dir, name)[1]))
    if new_chain is not None:
        result.issued = new_chain[0]
        result.certificate = new_chain[0]
        result.chain = new_chain[1:]
        result.files.append((cert_name, pki.certificates_pem(new_chain), rules.CERT_MODE, None, None))
        if new_key is not None:
            result.files.append((key_name, pki.private_key_pem(new_key), rules.KEY_MODE, None, None))
    elif chain and not (cert_reasons or key_reasons):
        result.certificate = chain[0]
        result.chain = chain[1:]
    effective_key = new_key if new_chain is not None else (key if not (cert_reasons or key_reasons) else None)
    if pkcs8 and effective_key is not None:
        pk8_name = rules.pkcs8_name(cert_name)
        wanted = pki.private_key_pkcs8_der(effective_key)
        if fileio.read_optional(os.path.join(certs_dir, pk8_name)) != wanted:
            result.files.append((pk8_name, wanted, rules.KEY_MODE, None, None))
            if new_chain is None:
                result.reasons.append("%s is missing or does not hold %s" % (pk8_name, key_name))
    if ca_bundle is not None and not result.awaiting:
        bundle_name, bundle_pem = ca_bundle
        bundle_path = os.path.join(certs_dir, bundle_name)
        if fileio.read_optional(bundle_path) != bundle_pem:
            result.files.append((bundle_name, bundle_pem, rules.CERT_MODE, None, None))
            result.reasons.append("%s differs from the CA's trust bundle" % bundle_name
                                  if os.path.exists(bundle_path) else "%s is missing" % bundle_name)
    written = set(f[0] for f in result.files)
    wanted_attrs = [(cert_name, rules.CERT_MODE)]
    if public_key is None:
        wanted_attrs.append((key_name, rules.KEY_MODE))
    if pkcs8 and public_key is None:
        wanted_attrs.append((rules.pkcs8_name(cert_name), rules.KEY_MODE))
    if ca_bundle is not None:
        wanted_attrs.append((ca_bundle[0], rules.CERT_MODE))
    for fname, mode in wanted_attrs:
        path = os.path.join(certs_dir, fname)
        if fname in written or not os.path.exists(path):
            continue
        problem = fileio.attribute_drift(path, mode)
        if problem:
            result.attribute_fixes.append((fname, mode, None, None))
            result.reasons.append("%s: %s" % (fname, problem))
    return result


def awaiting_error(plans, csr_dirs):
    """The error that stops a run while hand-off certificates are not back: what to get signed, and where."""
    lines = []
    for item in plans:
        spec = item.spec
        csr_path = None
        for csr_dir in csr_dirs:
            candidate = signer.handoff_paths(csr_dir, item.awaiting)[0]
            if os.path.exists(candidate):
                csr_path = candidate
                break
        sans = ", ".join(str(n.value) for n in spec.hosts)
        path = csr_path or item.awaiting + signer.CSR_SUFFIX
        lines.append("  %s  (%s, CN=%s%s, %s)" % (path, spec.profile, spec.common_name,
                                                  "; SANs " + sans if sans else "", ",".join(spec.ekus)))
    return CrdbTlsError(
        "%d certificate request(s) await signing by the organisation's CA; nothing was installed. Get each CSR "
        "signed and put the result next to it as <name>.crt (PEM, leaf first, then its intermediates), then "
        "run again:\n%s" % (len(lines), "\n".join(lines)))


def remove_waiting_keys(plans):
    """Drop waiting keys whose certificate has been written (their key now lives beside it)."""
    for item in plans:
        for path in getattr(item, "cleanup", []):
            try:
                os.unlink(path)
            except OSError:
                pass
