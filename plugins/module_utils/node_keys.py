# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keys made on the host that uses them (``crdb_tls_key_location: node``).

Runs on the node (or client host). For each certificate the host should
have, :func:`ensure` keeps a private key in the certs dir and says whether
the certificate there is still good for that key. Only certificate signing
requests (public) leave the host, for the certificates that need
(re)issuing; a certificate that is valid for the current key and spec is not
requested again.

A new key never replaces a key that still has its certificate: it is written
beside it as ``.crdb-tls-next.<name>.key`` (hidden; CockroachDB reads only
``*.crt`` files and finds keys next to them), and :mod:`installer` moves it
into place in the same journaled set as the certificate signed for it. So
the certs dir never holds a key beside a certificate it does not match.
Keys are written through the certs dir's fd (:meth:`fileio.Dir.write`, no
link followed, a link where a key goes refused): a temporary file created
owner-only, given its final owner and mode (CockroachDB's rule, see
:func:`rules.key_install_mode`), then renamed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib

from ansible_collections.crdb.tls.plugins.module_utils import fileio, pki, renewal, rules, verifier
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

PENDING_PREFIX = rules.PENDING_KEY_PREFIX
ROTATE_ALL = "all"


def pending_key_name(key_file):
    """The hidden name a new key waits under until its certificate is installed."""
    return rules.pending_key_name(key_file)


def wanted(layout=None, hosts=None, users=None, ui_hosts=None, organization=rules.DEFAULT_ORGANIZATION,
           ocsp_url=None, purpose="node"):
    """``[(spec, ca_role)]`` of the certificates a host keeps keys for.

    ``purpose="node"`` with ``layout``: a node's certificates of that layout
    (SANs ``hosts``), plus ``ui.crt`` when ``ui_hosts``. ``purpose="client"``:
    a SQL client's certs dir; ``layout`` only says which CA signs client
    certificates. ``users``: ``client.<user>.crt`` each.
    """
    out = []
    organization = organization or None
    if purpose not in ("node", "client"):
        raise CrdbTlsError("purpose %r must be node or client" % (purpose,))
    if purpose == "client" and (hosts or ui_hosts):
        raise CrdbTlsError("hosts and ui_hosts are for a node's certs dir, not purpose client")
    if purpose == "node" and layout is not None:
        if not hosts:
            raise CrdbTlsError("hosts is empty: a node's certificates need at least its address or name")
        for profile, role in sorted(rules.layout_profiles(layout).items()):
            names = hosts if rules.PROFILES[profile]["sans"] else None
            out.append((pki.build_spec(profile, hosts=names, organization=organization, ocsp_url=ocsp_url), role))
        if ui_hosts:
            out.append((pki.build_spec("ui", hosts=ui_hosts, organization=organization, ocsp_url=ocsp_url), "ca"))
    elif ui_hosts:
        raise CrdbTlsError("ui_hosts needs layout: ui.crt belongs to a node's certs dir")
    if purpose == "client" and not users:
        raise CrdbTlsError("purpose client needs users: a client's certs dir holds client.<user>.crt")
    client_role = rules.client_ca_role(layout or "standard")
    for user in dict.fromkeys(users or []):
        rules.check_client_user(user, "user")
        out.append((pki.build_spec("client", user=user, organization=organization, ocsp_url=ocsp_url),
                    client_role))
    if not out:
        raise CrdbTlsError("nothing to keep: give layout (a node's certificates) and/or users")
    return out


def load_issuer(data, role):
    """``(signer, leaf_chain)`` from a signer file's content (the CA that signs, then its issuers)."""
    source = "issuers.%s" % role
    certs = pki.load_certificates(pem_bytes(data), source)
    signer = certs[0]
    if not pki.is_ca(signer):
        raise CrdbTlsError("%s: %s is not a CA certificate" % (source, signer.subject.rfc4514_string()))
    self_signed = signer.issuer == signer.subject
    chain = [] if self_signed else [c for c in certs if c.issuer != c.subject]
    return signer, chain


def pem_bytes(value):
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def _load_key(handle, name):
    """``(key, reason)``: key file ``name`` in the certs dir (None when missing), or why it cannot serve.

    Read through an ``O_NOFOLLOW`` fd: a link there was refused by :func:`ensure` already.
    """
    try:
        data = handle.read(name, "key")
    except CrdbTlsError as exc:
        return None, "%s is unreadable: %s" % (name, exc)
    if data is None:
        return None, None
    try:
        return pki.load_private_key(data, handle.join(name)), None
    except CrdbTlsError as exc:
        return None, "%s is unreadable: %s" % (name, exc)


def _refuse_links(handle, certificates):
    """Refuse, naming it, a link or non-regular file where this module reads or writes in the certs dir."""
    names = set(n for n in rules.FIXED_NAMES if rules.FIXED_NAMES[n] in rules.CA_KINDS)
    for spec, _role in certificates:
        key_file = rules.key_name(spec.filename)
        names.update((spec.filename, key_file, pending_key_name(key_file)))
    for name in sorted(names):
        handle.regular(name, "file")


def _cert_reasons(handle, spec, key, issuer, renew_before, now):
    """Why the certificate in the certs dir ``handle`` cannot stay for ``key`` (empty when it can)."""
    name = spec.filename
    path = handle.join(name)
    data = handle.read(name, "certificate")
    if data is None:
        return ["%s is missing" % name]
    try:
        chain = pki.load_certificates(data, path)
    except CrdbTlsError as exc:
        return ["%s is unreadable: %s" % (name, exc)]
    leaf = chain[0]
    reasons = []
    if key is not None and not pki.keys_match(leaf, key):
        reasons.append("%s does not match %s" % (name, rules.key_name(name)))
    if issuer is not None:
        signer, leaf_chain = issuer
        if not pki.issued_by(leaf, signer):
            reasons.append("%s is not signed by the current CA %s (issuer %s)"
                           % (name, signer.subject.rfc4514_string(), leaf.issuer.rfc4514_string()))
        elif [pki.fingerprint(c) for c in chain[1:]] != [pki.fingerprint(c) for c in leaf_chain]:
            reasons.append("%s does not carry the CA's intermediates after the leaf" % name)
    else:
        bundle_name = rules.verifying_ca_file(rules.classify(name)[0], spec.user, set(handle.listdir()))
        bundle = handle.read(bundle_name, "CA bundle")
        if bundle is None:
            reasons.append("no %s in the certs dir to verify %s with" % (bundle_name, name))
        else:
            roots = verifier.load_certificates(bundle, bundle_name)
            for usage in [e for e in spec.ekus if e in (rules.EKU_SERVER, rules.EKU_CLIENT)]:
                _chain, problem = verifier.verify(leaf, chain[1:], roots, usage, now=now)
                if problem:
                    reasons.append("%s: as %s against %s: %s" % (name, usage, bundle_name, problem))
    reasons.extend("%s: %s" % (name, r) for r in pki.drift(leaf, spec))
    why = pki.renewal_reason(leaf, renew_before, now)
    if why:
        reasons.append("%s %s" % (name, why))
    return reasons


def ensure(certs_dir, certificates, issuers=None, key_type=pki.DEFAULT_KEY_TYPE, key_size=None,
           renew_before=None, rotate=None, owner=None, group=None, key_owner=None, key_group=None,
           check_mode=False, now=None):
    """Keep a key for every ``(spec, ca_role)`` of ``certificates``; return the CSRs still needed.

    ``issuers``: ``{ca_role: signer file content}``; a certificate not signed
    by its role's current signer is requested again. Without it, the
    certificate must verify against the CA bundle in the certs dir.
    ``rotate``: certificate file names (or ``all``) whose key is replaced.
    Returns ``{"changed", "reasons", "csrs": {cert: PEM}, "certificates": {cert: state},
    "keys_written": [...]}``; no key material.
    """
    now = now or pki.utcnow()
    key_spec = pki.check_key_spec(key_type, key_size)
    # One window for every certificate, or {kind: window} (renewal.windows) applied by each file's kind.
    kind_windows = renew_before if isinstance(renew_before, dict) else renewal.windows(renew_before)
    names = [spec.filename for spec, _role in certificates]
    rotate = list(rotate or [])
    unknown = [n for n in rotate if n != ROTATE_ALL and n not in names]
    if unknown:
        raise CrdbTlsError("rotate names %s, which this host does not keep (it keeps %s)"
                           % (", ".join(unknown), ", ".join(names)))
    loaded = {}
    for role, data in (issuers or {}).items():
        if data:
            loaded[role] = load_issuer(data, role)
    key_owner = owner if key_owner in (None, "") else key_owner
    key_group = group if key_group in (None, "") else key_group
    key_mode = fileio.key_mode_for(key_owner, key_group)
    handle = fileio.probe_dir(certs_dir, "certs dir", strict=True)
    result = {"changed": False, "reasons": [], "csrs": {}, "certificates": {}, "keys_written": [],
              "certs_dir": certs_dir}
    with handle if handle is not None else _nothing():
        if handle is not None:
            _refuse_links(handle, certificates)
        for spec, role in certificates:
            state = _one(handle, spec, loaded.get(role), key_spec, key_mode, key_owner, key_group,
                         renewal.window_for(kind_windows, spec.filename),
                         ROTATE_ALL in rotate or spec.filename in rotate, check_mode, now)
            _merge(result, spec, state)
    return result


@contextlib.contextmanager
def _nothing():
    yield


def _merge(result, spec, state):
    result["certificates"][spec.filename] = state["public"]
    result["reasons"].extend(state["reasons"])
    if state["csr"] is not None:
        result["csrs"][spec.filename] = state["csr"]
    result["keys_written"].extend(state["written"])
    result["changed"] = result["changed"] or state["changed"]


def _one(handle, spec, issuer, key_spec, key_mode, key_owner, key_group, renew_before, rotate, check_mode,
         now):
    cert_name = spec.filename
    key_file = rules.key_name(cert_name)
    pending_file = pending_key_name(key_file)
    out = {"reasons": [], "csr": None, "written": [], "changed": False,
           "public": {"status": "valid", "key": key_file, "reasons": []}}
    if handle is None:   # check mode before the certs dir exists
        out["reasons"].append("%s: a new %s key would be made" % (key_file, pki.describe_key_spec(key_spec)))
        out["public"].update(status="requested", reasons=list(out["reasons"]))
        out["changed"] = True
        return out
    key, key_problem = _load_key(handle, key_file)
    pending, pending_problem = _load_key(handle, pending_file)
    if pending is not None and pki.key_spec_of(pending) != key_spec:
        pending_problem = "%s is a %s key, want %s" % (
            pending_file, pki.describe_key_spec(pki.key_spec_of(pending)), pki.describe_key_spec(key_spec))
        pending = None
    if pending is not None and key is not None and pki.public_key_bytes(pending.public_key()) == \
            pki.public_key_bytes(key.public_key()):
        # An install moved it into place and stopped before removing the hidden name.
        pending_problem = "it is %s already" % key_file
        pending = None
    key_reasons = []
    if key_problem:
        key_reasons.append(key_problem)
    elif key is None:
        key_reasons.append("%s is missing" % key_file)
    elif pki.key_spec_of(key) != key_spec:
        key_reasons.append("key type changes from %s to %s" % (pki.describe_key_spec(pki.key_spec_of(key)),
                                                               pki.describe_key_spec(key_spec)))
    if rotate and not key_reasons:
        key_reasons.append("%s: rotation requested" % key_file)
    reasons = list(key_reasons)
    use = key
    make_pending = False
    if key_reasons:
        if pending is not None:
            use = pending
            reasons.append("%s: using the key made earlier in %s" % (key_file, pending_file))
        else:
            make_pending = True
            use = None
    elif pending is not None:
        # A rotation begun earlier whose certificate was never installed: it goes on (a key the
        # controller may have certified already is never dropped), and the next install moves it in.
        use = pending
        reasons.append("%s: the rotation begun earlier goes on with the key waiting in %s" % (key_file, pending_file))
    cert_reasons = _cert_reasons(handle, spec, use, issuer, renew_before, now) if use is not None else []
    if use is None or use is not key:
        # A new key always needs a new certificate.
        cert_reasons = cert_reasons or ["%s must be issued for the new %s" % (cert_name, key_file)]
    reasons.extend(cert_reasons)
    if make_pending:
        reasons.append("%s: a new %s key is made (as %s until its certificate is installed)"
                       % (key_file, pki.describe_key_spec(key_spec), pending_file))
        if not check_mode:
            use = pki.generate_key(*key_spec)
            handle.write(pending_file, pki.private_key_pem(use), key_mode, key_owner, key_group)
            out["written"].append(pending_file)
        out["changed"] = True
    elif handle.exists(pending_file) and use is not pending:
        # Left over: not a key that can serve, and the current key serves.
        reasons.append("%s removed: %s serves%s" % (pending_file, key_file,
                                                    " (%s)" % pending_problem if pending_problem else ""))
        if not check_mode:
            handle.unlink(pending_file)
        out["changed"] = True
    for name in (key_file, pending_file):
        if handle.exists(name) and not (name == pending_file and use is not pending and not make_pending):
            drift = handle.attribute_drift(name, key_mode, key_owner, key_group)
            if drift:
                reasons.append("%s: %s" % (name, drift))
                if not check_mode:
                    handle.set_attributes(name, key_mode, key_owner, key_group, "key")
                out["changed"] = True
    if cert_reasons:
        out["changed"] = True
        if use is not None:
            out["csr"] = pki.make_csr(spec, use).decode("ascii")
    out["reasons"] = reasons
    out["public"].update(status="requested" if cert_reasons else "valid", reasons=list(reasons),
                         pending=use is not key or make_pending)
    return out
