# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keep one certificate of a profile, with its key, right in a certs dir.

:func:`plan` reads what is there and says what must change and why, without
writing; :func:`apply` writes a plan's files as one journaled set and records
new certificates in the CA's index. Key generation and signing happen in
:func:`plan` through plain engine calls, so a batch of plans can be made in
parallel and applied later.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.crdb.tls.plugins.module_utils import authority, fileio, ledger, pki, renewal, rules
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError


class Plan(object):
    """What one certificate needs: reasons, new files and attribute fixes."""

    def __init__(self, certs_dir, spec):
        self.certs_dir = certs_dir
        self.spec = spec
        self.reasons = []
        self.files = []          # (name, data, mode, owner, group)
        self.attribute_fixes = []  # (name, mode, owner, group)
        self.certificate = None  # the certificate in force after apply
        self.chain = []
        self.issued = None       # a newly issued certificate, if any
        self.index_path = None

    @property
    def changed(self):
        return bool(self.files or self.attribute_fixes)

    def result(self):
        cert = self.certificate
        out = {
            "changed": self.changed,
            "reasons": list(self.reasons),
            "profile": self.spec.profile,
            "cert_file": os.path.join(self.certs_dir, self.spec.filename),
            "key_file": os.path.join(self.certs_dir, rules.key_name(self.spec.filename)),
            "files_written": [f[0] for f in self.files],
            "issued": self.issued is not None,
        }
        if cert is not None:
            out.update({
                "serial": pki.serial_hex(cert),
                "not_after": pki.not_after(cert).isoformat(),
                "subject": cert.subject.rfc4514_string(),
                "sans": pki.san_strings(cert),
                "fingerprint_sha256": pki.fingerprint(cert),
            })
        return out


def read_on_disk(certs_dir, spec, key_spec, read_key=True):
    """``(cert_chain, key, cert_reasons, key_reasons)``: the certificate and key of ``spec`` as they are on disk.

    Says what is missing or unreadable, and when the key is of another type
    than ``key_spec``. ``read_key=False``: the key lives elsewhere (a CSR's).
    """
    cert_name = spec.filename
    key_name = rules.key_name(cert_name)
    cert_path = os.path.join(certs_dir, cert_name)
    key_path = os.path.join(certs_dir, key_name)
    chain, key, cert_reasons, key_reasons = None, None, [], []
    data = fileio.read_optional(cert_path) if os.path.exists(cert_path) else None
    if data is None:
        cert_reasons.append("%s is missing" % cert_name)
    else:
        try:
            chain = pki.load_certificates(data, cert_path)
        except CrdbTlsError as exc:
            cert_reasons.append("%s is unreadable: %s" % (cert_name, exc))
    if read_key and os.path.exists(key_path):
        try:
            key = pki.load_private_key(fileio.read_file(key_path, "key"), key_path, trusted=True)
        except CrdbTlsError as exc:
            key_reasons.append("%s is unreadable: %s" % (key_name, exc))
    elif read_key:
        key_reasons.append("%s is missing" % key_name)
    if key is not None and pki.key_spec_of(key) != key_spec:
        key_reasons.append("key type changes from %s to %s" % (pki.describe_key_spec(pki.key_spec_of(key)),
                                                               pki.describe_key_spec(key_spec)))
    return chain, key, cert_reasons, key_reasons


def _current_state(certs_dir, spec, ca, key_spec, renew_before, now):
    """``(cert_chain, key, cert_reasons, key_reasons)`` of what is on disk."""
    cert_name = spec.filename
    chain, key, cert_reasons, key_reasons = read_on_disk(certs_dir, spec, key_spec)
    if chain:
        leaf = chain[0]
        if key is not None and not pki.keys_match(leaf, key):
            key_reasons.append("%s does not match %s" % (rules.key_name(cert_name), cert_name))
        if not pki.issued_by(leaf, ca.certificate):
            cert_reasons.append("%s is not signed by the current CA %s (issuer %s)"
                                % (cert_name, ca.certificate.subject.rfc4514_string(),
                                   leaf.issuer.rfc4514_string()))
        elif [pki.fingerprint(c) for c in chain[1:]] != [pki.fingerprint(c) for c in ca.leaf_chain]:
            cert_reasons.append("%s does not carry the CA's intermediates after the leaf" % cert_name)
        cert_reasons.extend("%s: %s" % (cert_name, r) for r in pki.drift(leaf, spec))
        why = pki.renewal_reason(leaf, renew_before, now)
        if why:
            cert_reasons.append("%s %s" % (cert_name, why))
    return chain, key, cert_reasons, key_reasons


def plan(certs_dir, spec, ca, key_type=pki.DEFAULT_KEY_TYPE, key_size=None, renew_before=None,
         force=False, reuse_key=False, owner=None, group=None, key_owner=None, key_group=None,
         pkcs8=False, ca_bundle=None, index_path=None, public_key=None, revoked=None, now=None):
    """Decide what must change for one certificate, and prepare the new files.

    ``ca_bundle``: ``(file_name, pem_bytes)`` to install beside the certificate
    (``ca.crt`` or ``ca-client.crt``), or None. ``public_key``: certify this
    key (from a CSR) instead of a key kept in the certs dir. ``revoked``: the
    CA's revoked serials (:func:`ledger.revoked_serials`); a certificate
    revoked there is re-issued, with a new key.
    """
    now = now or pki.utcnow()
    fileio.require_dir(certs_dir, "certs_dir")
    key_spec = pki.check_key_spec(key_type, key_size)
    renew_before = renewal.check_window(renew_before, spec.lifetime)
    result = Plan(certs_dir, spec)
    result.index_path = index_path
    cert_name = spec.filename
    key_name = rules.key_name(cert_name)
    key_owner = owner if key_owner is None else key_owner
    key_group = group if key_group is None else key_group
    key_mode = fileio.key_mode_for(key_owner, key_group)

    chain, key, cert_reasons, key_reasons = _current_state(certs_dir, spec, ca, key_spec, renew_before, now)
    if chain and ledger.is_revoked(chain[0], revoked):
        cert_reasons.append("%s: serial %s is revoked in the CA's index" % (cert_name, pki.serial_hex(chain[0])))
    if public_key is not None:
        key_reasons = []
        if chain and pki.public_key_bytes(chain[0].public_key()) != pki.public_key_bytes(public_key):
            cert_reasons.append("%s does not carry the requested public key" % cert_name)
    if force:
        cert_reasons.append("forced")
    new_key = None
    if public_key is None and (key_reasons or (cert_reasons and not reuse_key)):
        new_key = pki.generate_key(*key_spec)
    reissue = bool(cert_reasons or key_reasons)
    result.reasons.extend(key_reasons + cert_reasons)
    if reissue:
        subject_key = public_key or (new_key or key).public_key()
        cert = pki.issue(spec, subject_key, ca, now=now)
        result.issued = cert
        result.certificate = cert
        result.chain = ca.leaf_chain
        result.files.append((cert_name, pki.certificates_pem([cert] + ca.leaf_chain), rules.CERT_MODE,
                             owner, group))
        if new_key is not None:
            result.files.append((key_name, pki.private_key_pem(new_key), key_mode, key_owner, key_group))
    else:
        result.certificate = chain[0]
        result.chain = chain[1:]
    effective_key = new_key or key
    if pkcs8 and public_key is None:
        pk8_name = rules.pkcs8_name(cert_name)
        wanted = pki.private_key_pkcs8_der(effective_key)
        if fileio.read_optional(os.path.join(certs_dir, pk8_name)) != wanted:
            result.files.append((pk8_name, wanted, key_mode, key_owner, key_group))
            if not reissue:
                result.reasons.append("%s is missing or does not hold %s" % (pk8_name, key_name))
    if ca_bundle is not None:
        bundle_name, bundle_pem = ca_bundle
        if fileio.read_optional(os.path.join(certs_dir, bundle_name)) != bundle_pem:
            result.files.append((bundle_name, bundle_pem, rules.CERT_MODE, owner, group))
            result.reasons.append("%s differs from the CA's trust bundle" % bundle_name
                                  if os.path.exists(os.path.join(certs_dir, bundle_name))
                                  else "%s is missing" % bundle_name)
    written = set(f[0] for f in result.files)
    wanted_attrs = [(cert_name, rules.CERT_MODE, owner, group)]
    if public_key is None:
        wanted_attrs.append((key_name, key_mode, key_owner, key_group))
        if pkcs8:
            wanted_attrs.append((rules.pkcs8_name(cert_name), key_mode, key_owner, key_group))
    if ca_bundle is not None:
        wanted_attrs.append((ca_bundle[0], rules.CERT_MODE, owner, group))
    for name, mode, fowner, fgroup in wanted_attrs:
        if name in written:
            continue
        problem = fileio.attribute_drift(os.path.join(certs_dir, name), mode, fowner, fgroup)
        if problem:
            result.attribute_fixes.append((name, mode, fowner, fgroup))
            result.reasons.append("%s: %s" % (name, problem))
    return result


def apply(result):
    """Write a plan's files (one journaled set), fix attributes, record the issue."""
    if result.files:
        files = fileio.FileSet(result.certs_dir)
        for name, data, mode, owner, group in result.files:
            files.add(name, data, mode, owner, group)
        files.commit()
    for name, mode, owner, group in result.attribute_fixes:
        fileio.set_attributes(os.path.join(result.certs_dir, name), mode, owner, group)
    if result.issued is not None and result.index_path:
        ledger.record(result.index_path, [result.issued])
    return result


def diff(result):
    """Before/after summaries for Ansible's diff mode (no key material)."""
    cert_path = os.path.join(result.certs_dir, result.spec.filename)
    before = {}
    data = fileio.read_optional(cert_path) if os.path.exists(cert_path) else None
    if data:
        try:
            before = _summary(pki.load_certificates(data, cert_path)[0])
        except CrdbTlsError:
            before = {"unreadable": True}
    after = _summary(result.certificate) if result.certificate is not None else {}
    return {"before": before, "after": after, "before_header": cert_path, "after_header": cert_path}


def _summary(cert):
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "sans": pki.san_strings(cert),
        "ekus": pki.ekus(cert),
        "serial": pki.serial_hex(cert),
        "not_after": pki.not_after(cert).isoformat(),
    }


def ensure_from_pki(certs_dir, spec, ca_path, ca_role="ca", ca_passphrase=None, install_ca_bundle=True,
                    record=True, check_mode=False, **plan_options):
    """Keep ``spec``'s certificate in ``certs_dir``, signed by the CA ``ca_role`` of the PKI dir ``ca_path``.

    What the single-certificate modules do: load the CA, plan, apply unless
    ``check_mode``. Returns ``(result dict, diff dict)``.
    """
    fileio.require_dir(certs_dir, "certs_dir")
    ca = authority.load(ca_path, ca_role, ca_passphrase)
    bundle = authority.bundle(ca_path, ca_role) if install_ca_bundle else None
    index = authority.paths(ca_path, ca_role)["index"]
    result = plan(certs_dir, spec, ca, ca_bundle=bundle, index_path=index if record else None,
                  revoked=ledger.revoked_serials(index), **plan_options)
    changes = diff(result)
    if not check_mode:
        apply(result)
    return result.result(), changes
