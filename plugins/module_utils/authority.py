# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A CA kept in a PKI directory on the controller.

For CA role ``ca`` (``client_ca`` uses the prefix ``ca-client``) the directory
holds:

* ``ca.crt``: the trust bundle installed on hosts as ``ca.crt``: the current
  root first, then earlier roots kept for a rotation;
* ``ca.key``: the signing key (mode 0600, encrypted when a passphrase is set);
* ``ca.signer.pem``: the signing CA certificate followed by its intermediates
  (for a generated CA, the CA itself);
* ``ca.index.txt``: every certificate this CA issued (see ``ledger.py``);
* ``ca.rotation.json``: only once a CA rotation was started (``rotation``
  steps of :func:`ensure`): where the rotation stands and which roots it
  replaces, so that a rerun of any phase resumes instead of starting over.

Every change to those files happens under an exclusive lock on the directory
and as one journaled set, so two runs at once cannot fork the CA.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import json
import os
import stat

from ansible_collections.crdb.tls.plugins.module_utils import durations, fileio, pki, rules
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

KEY_FILE_MODE = 0o600

# A CA rotation (playbooks/rotate_ca.yml) moves through these states, in this
# order; the ``rotation`` step of :func:`ensure` that leads to each.
ROTATION_STATES = ("started", "trusted", "reissued", "finished")
ROTATION_STEPS = {"start": "started", "trusted": "trusted", "reissued": "reissued", "finish": "finished"}
ROTATION_FILE_MODE = 0o600


def paths(pki_dir, role):
    """File paths of a CA role inside a PKI directory."""
    if role not in rules.CA_ROLES:
        raise CrdbTlsError("CA role %r is not known (use one of: %s)" % (role, ", ".join(sorted(rules.CA_ROLES))))
    base = rules.CA_ROLES[role][:-len(rules.CERT_SUFFIX)]
    return {
        "bundle": os.path.join(pki_dir, base + rules.CERT_SUFFIX),
        "key": os.path.join(pki_dir, base + rules.KEY_SUFFIX),
        "signer": os.path.join(pki_dir, base + ".signer.pem"),
        "index": os.path.join(pki_dir, base + ".index.txt"),
        "rotation": os.path.join(pki_dir, base + ".rotation.json"),
        "bundle_name": rules.CA_ROLES[role],
    }


def load(pki_dir, role, passphrase=None, now=None):
    """The CA of ``role`` in ``pki_dir``, ready to sign, with its trust bundle."""
    p = paths(pki_dir, role)
    for what in ("signer", "key", "bundle"):
        if not os.path.exists(p[what]):
            raise CrdbTlsError("CA %s: %s does not exist; create the CA first with crdb.tls.ca "
                               "(path=%s, role=%s)" % (role, p[what], pki_dir, role))
    _refuse_while_started(p, role, pki_dir)
    bundle_data = fileio.read_file(p["bundle"], "CA bundle")
    signer_data = fileio.read_file(p["signer"], "CA certificate")
    signer_chain = pki.load_certificates(signer_data, p["signer"])
    signer_is_root = len(signer_chain) == 1 and signer_chain[0].issuer == signer_chain[0].subject
    # An intermediate signer's roots come from the trust bundle.
    ca = pki.load_ca(signer_data, fileio.read_file(p["key"], "CA key"), p["signer"], p["key"],
                     passphrase=passphrase, roots_data=None if signer_is_root else bundle_data,
                     roots_source=p["bundle"], now=now, trusted=True)
    ca.roots = pki.load_certificates(bundle_data, p["bundle"])
    return ca


def bundle(pki_dir, role):
    """``(file name in a certs dir, bytes)`` of the trust bundle of ``role``."""
    p = paths(pki_dir, role)
    return p["bundle_name"], fileio.read_file(p["bundle"], "CA bundle")


def rotation_state(pki_dir, role="ca"):
    """Where a CA rotation of ``role`` stands (a dict), or None when none was ever started."""
    return _read_rotation(paths(pki_dir, role))


def _read_rotation(p):
    data = fileio.read_optional(p["rotation"])
    if data is None:
        return None
    try:
        state = json.loads(data.decode("utf-8"))
        if state.get("state") not in ROTATION_STATES or not isinstance(state.get("previous"), list) \
                or not isinstance(state.get("new"), str):
            raise ValueError("unknown state or missing fields")
    except (ValueError, AttributeError, UnicodeDecodeError) as exc:
        raise CrdbTlsError("CA rotation state %s is unreadable (%s); fix or remove it by hand" % (p["rotation"], exc))
    return state


def _in_progress(rotation):
    return rotation is not None and rotation["state"] != "finished"


def _refuse_while_started(p, role, pki_dir):
    """No leaf from the new CA before every host trusts it (phase 1 of a rotation done)."""
    rotation = _read_rotation(p)
    if rotation is not None and rotation["state"] == "started":
        raise CrdbTlsError(
            "CA rotation of %s in %s is in phase 1: the new CA %s is not yet trusted by every host, and "
            "certificates it signed now would be refused by hosts that do not have it; finish phase 1 first "
            "(playbooks/rotate_ca.yml with crdb_tls_rotate_phase=1)" % (role, pki_dir, rotation["new"][:16]))


def _existing(p, passphrase, now):
    """``(state, reasons)``: state is a dict of what is there, reasons why it cannot stay."""
    state = {"bundle": [], "signer": None, "key_data": None, "key": None}
    reasons = []
    if os.path.exists(p["bundle"]):
        try:
            state["bundle"] = pki.load_certificates(fileio.read_file(p["bundle"], "CA bundle"), p["bundle"])
        except CrdbTlsError as exc:
            reasons.append("trust bundle unreadable: %s" % exc)
    if not os.path.exists(p["signer"]) or not os.path.exists(p["key"]):
        reasons.append("no CA yet in %s" % os.path.dirname(p["signer"]))
        return state, reasons
    try:
        signer_chain = pki.load_certificates(fileio.read_file(p["signer"], "CA certificate"), p["signer"])
        state["signer"] = signer_chain
    except CrdbTlsError as exc:
        reasons.append("CA certificate unreadable: %s" % exc)
        return state, reasons
    state["key_data"] = fileio.read_file(p["key"], "CA key")
    try:
        state["key"] = pki.load_private_key(state["key_data"], p["key"], passphrase, trusted=True)
    except CrdbTlsError as exc:
        reasons.append("CA key unreadable: %s" % exc)
        return state, reasons
    if not pki.keys_match(signer_chain[0], state["key"]):
        reasons.append("CA key %s does not match %s" % (p["key"], p["signer"]))
    problems = pki.ca_certificate_problems(signer_chain[0], p["signer"], now)
    reasons.extend(problems)
    return state, reasons


def ensure(pki_dir, role="ca", passphrase=None, cert_src=None, key_src=None, src_passphrase=None,
           common_name=None, organization=rules.DEFAULT_ORGANIZATION, lifetime=None,
           key_type=pki.DEFAULT_KEY_TYPE, key_size=None, renew_before=None, force=False,
           keep_previous=True, rotation=None, check_mode=False, now=None, leaf_lifetime=None):
    """Make sure ``pki_dir`` holds a usable CA of ``role``; returns a result dict.

    Without ``cert_src`` the CA is generated here (and rotated only when it is
    missing, broken, expired or within ``renew_before``, or when ``force``).
    With ``cert_src``/``key_src`` a provided CA (root or intermediate) is
    vetted and imported. The previous roots stay in the bundle after the new
    one when ``keep_previous`` (the CA rotation bundle), expired ones dropped.

    ``rotation`` takes one step of a resumable CA rotation, recorded in
    ``<prefix>.rotation.json`` in the same journaled set as the CA files:
    ``start`` makes (or imports) the new CA unless a rotation is already in
    progress, which it then resumes without a new CA; ``trusted`` and
    ``reissued`` record that phase 1 (every host trusts both roots) and
    phase 2 (every leaf re-issued) are done; ``finish`` removes the roots the
    rotation replaced from the bundle (``force`` allows it before phase 2
    was recorded). While a rotation is ``started``, a call without
    ``rotation`` (and :func:`load`) fails instead of letting leaves from the
    new CA reach hosts that do not trust it yet.

    The CA key is never lost: ``leaf_lifetime`` (the lifetime of the leaves
    the CA will sign) is checked against a provided CA before any file is
    replaced; a key that is replaced is kept beside it as
    ``<prefix>.key.<date>.bak`` (0600, in the same journaled set); and a PKI
    dir that issued certificates but lost its CA fails unless ``force``.
    """
    if rotation is not None and rotation not in ROTATION_STEPS:
        raise CrdbTlsError("rotation %r is not known (use one of: %s)" % (rotation, ", ".join(sorted(ROTATION_STEPS))))
    if rotation == "start":
        keep_previous = True   # phase 1 is precisely the bundle of the new and the old root
    now = now or pki.utcnow()
    _check_pki_dir_path(pki_dir)
    p = paths(pki_dir, role)
    renew_before = pki.parse_window(renew_before, "renew_before")
    if common_name is None:
        common_name = rules.DEFAULT_CLIENT_CA_COMMON_NAME if role == "client_ca" else rules.DEFAULT_CA_COMMON_NAME
    provided = None
    if cert_src or key_src:
        if not (cert_src and key_src):
            raise CrdbTlsError("cert_src and key_src go together: a provided CA needs both its certificate and key")
        key_data = fileio.read_file(key_src, "CA key")
        provided = pki.load_ca(fileio.read_file(cert_src, "CA certificate"), key_data, cert_src, key_src,
                               passphrase=src_passphrase, now=now)
        provided_key_data = key_data
        if leaf_lifetime is not None:
            # The check issuing would make: refused here, before any CA file is replaced.
            life = pki.parse_duration(leaf_lifetime, "leaf_lifetime")
            provided.check_lifetime(now + life, "a certificate of lifetime %s issued by the provided CA %s"
                                    % (durations.format_delta(life), cert_src))
    else:
        pki.check_key_spec(key_type, key_size)

    # Every input is checked: now the directory may be made.
    dir_reasons = _private_dir(pki_dir, check_mode)
    with fileio.dir_lock(pki_dir) if os.path.isdir(pki_dir) else contextlib.nullcontext():
        if not check_mode:
            # A run cut short while committing the CA files is completed first.
            fileio.recover(pki_dir)
        state, reasons = _existing(p, passphrase if provided is None else src_passphrase, now)
        current = state["signer"][0] if state["signer"] else None
        rot_before = _read_rotation(p)
        force, allow_unconfirmed = _rotation_preflight(p, role, pki_dir, rotation, rot_before, current, provided,
                                                       reasons, force)
        if not force and rotation is None:
            _refuse_lost_ca(pki_dir, p, role, state)
        if provided is not None:
            if current is None or pki.fingerprint(current) != pki.fingerprint(provided.certificate):
                reasons.append("provided CA %s (%s) is not the current one"
                               % (provided.certificate.subject.rfc4514_string(), cert_src))
            new_signer_chain = [provided.certificate] + provided.chain
            new_roots = provided.roots
        else:
            broken = [r for r in reasons if not r.startswith("no CA yet") and " expired on " not in r]
            if broken and not force:
                raise CrdbTlsError("the CA in %s cannot be used and will not be replaced without force=true "
                                   "(replacing it invalidates every certificate it issued): %s"
                                   % (pki_dir, "; ".join(broken)))
            if not reasons and renew_before and current is not None and rotation is None:
                why = pki.renewal_reason(current, renew_before, now)
                if why:
                    reasons.append("CA %s" % why)
            if force:
                reasons.append("forced")
            new_signer_chain, new_roots = None, None
        rotate = bool(reasons)
        key_pem = None
        key_backup = None
        if rotate and provided is None:
            key = pki.generate_key(key_type, key_size)
            cert = pki.generate_ca(key, common_name, organization, lifetime, now)
            key_pem = pki.private_key_pem(key, passphrase)
            new_signer_chain, new_roots = [cert], [cert]
        elif rotate:
            key_pem = provided_key_data
        if rotate:
            bundle = list(new_roots)
            if keep_previous:
                new_fps = set(pki.fingerprint(c) for c in bundle)
                bundle += [c for c in state["bundle"]
                           if pki.fingerprint(c) not in new_fps and pki.not_after(c) > now]
        else:
            new_signer_chain = state["signer"]
            bundle = state["bundle"]
            if not bundle or pki.fingerprint(bundle[0]) != pki.fingerprint(_root_of(state["signer"], bundle)):
                # The bundle must start with the current root; repair it.
                root = _root_of(state["signer"], bundle)
                bundle = [root] + [c for c in bundle if pki.fingerprint(c) != pki.fingerprint(root)]
                reasons.append("trust bundle %s does not start with the current CA" % p["bundle"])
        rot_after = _rotation_next(rotation, rot_before, rotate, new_signer_chain, new_roots, state, role,
                                   allow_unconfirmed, now)
        if rotation == "finish":
            dropped = [c for c in bundle if pki.fingerprint(c) in rot_after["previous"]]
            if dropped:
                bundle = [c for c in bundle if pki.fingerprint(c) not in rot_after["previous"]]
                reasons.append("CA rotation: removed the previous CA %s from the trust bundle"
                               % ", ".join(c.subject.rfc4514_string() + " " + pki.fingerprint(c)[:16] for c in dropped))
        if rot_after != rot_before:
            reasons.append("CA rotation of %s: %s" % (role, rot_after["state"]))
            backups = _key_backups(p)
            if rot_after["state"] == "finished" and backups:
                reasons.append("the rotation that retires the previous CA is finished: its key backups (%s) may "
                               "now be removed by hand" % ", ".join(backups))
        bundle_pem = pki.certificates_pem(bundle)
        current_bundle = fileio.read_optional(p["bundle"])
        files = fileio.FileSet(pki_dir)
        if rotate:
            old_key = state["key_data"] if state["key_data"] is not None else fileio.read_optional(p["key"])
            if old_key is not None and old_key != key_pem:
                backup = _backup_name(p, now)
                files.add(backup, old_key, KEY_FILE_MODE)
                key_backup = os.path.join(pki_dir, backup)
            files.add(os.path.basename(p["key"]), key_pem, KEY_FILE_MODE)
            files.add(os.path.basename(p["signer"]), pki.certificates_pem(new_signer_chain), rules.CERT_MODE)
        if current_bundle != bundle_pem:
            files.add(os.path.basename(p["bundle"]), bundle_pem, rules.CERT_MODE)
        if rot_after != rot_before:
            # In the same journaled set as the CA files: a rerun finds both or neither.
            files.add(os.path.basename(p["rotation"]), (json.dumps(rot_after, indent=1, sort_keys=True) + "\n").encode(),
                      ROTATION_FILE_MODE)
        key_state = None if rotate else fileio.file_state(p["key"])
        if key_state is not None and key_state[0] & 0o077:
            reasons.append("mode of %s is %04o, want 0600" % (p["key"], key_state[0]))
            if not check_mode:
                fileio.set_attributes(p["key"], KEY_FILE_MODE)
        if len(files) and not check_mode:
            files.commit(locked=True)
    signer = new_signer_chain[0]
    reasons = dir_reasons + reasons
    result = _result(p, role, signer, state["bundle"], bundle)
    result.update(changed=bool(len(files)) or bool(reasons), rotated=rotate, reasons=reasons, rotation=rot_after,
                  key_backup=key_backup)
    return result


# A path through this directory name is inside an installed collection tree,
# which ``ansible-galaxy collection install --force`` deletes and replaces.
COLLECTIONS_DIR_NAME = "ansible_collections"
# What a PKI dir holds once it issued anything (besides the CA files).
ISSUED_DIR = "issued"


def check_pki_dir_location(pki_dir):
    """Refuse a PKI dir inside an installed collection (or a link into one), naming both."""
    for candidate in (os.path.abspath(pki_dir), os.path.realpath(pki_dir)):
        parts = candidate.split(os.sep)
        if COLLECTIONS_DIR_NAME in parts:
            tree = os.sep.join(parts[:parts.index(COLLECTIONS_DIR_NAME) + 1])
            raise CrdbTlsError(
                "PKI directory %s is inside the installed collections tree %s: `ansible-galaxy collection install "
                "--force` deletes it, and the CA key with it; keep the PKI dir (crdb_tls_pki_dir) outside, for "
                "example in ~/.local/share/crdb-tls/<cluster>" % (pki_dir, tree))


def _check_pki_dir_path(pki_dir):
    """A missing PKI dir must be makeable (no file in its place or in place of a parent), and not replaceable."""
    check_pki_dir_location(pki_dir)
    fileio.check_makeable_dir(pki_dir, "PKI directory")


def _issued_traces(pki_dir, p):
    """What in ``pki_dir`` shows that a CA of this role issued certificates there (empty when nothing)."""
    traces = []
    issued = os.path.join(pki_dir, ISSUED_DIR)
    if os.path.isdir(issued) and os.listdir(issued):
        traces.append("issued sets in %s" % issued)
    for what in ("index", "rotation"):
        if os.path.isfile(p[what]) and os.path.getsize(p[what]) > 0:
            traces.append(p[what])
    return traces


def _refuse_lost_ca(pki_dir, p, role, state):
    """A PKI dir that issued certificates but lost its CA is never given a new CA silently."""
    missing = [p[w] for w in ("signer", "key") if not os.path.exists(p[w])]
    if not missing:
        return
    traces = _issued_traces(pki_dir, p)
    if traces:
        raise CrdbTlsError(
            "PKI directory %s lost its CA %s (%s missing) but holds what it issued (%s): refusing to make a new CA, "
            "which would replace every host's trust bundle and lock every certificate out; restore %s from a "
            "backup (a replaced key is kept as %s.<date>.bak), or pass force=true to start a new CA on purpose"
            % (pki_dir, role, ", ".join(missing), ", ".join(traces), " and ".join(missing), p["key"]))


def _key_backups(p):
    """The key backups of this CA role kept in its PKI dir, sorted."""
    directory, prefix = os.path.dirname(p["key"]), os.path.basename(p["key"]) + "."
    return sorted(os.path.join(directory, n) for n in os.listdir(directory)
                  if n.startswith(prefix) and n.endswith(".bak")) if os.path.isdir(directory) else []


def _backup_name(p, now):
    """``ca.key.<UTC date and time>.bak`` (``-2``, ``-3``... when taken): where a replaced CA key is kept."""
    base = "%s.%s" % (os.path.basename(p["key"]), now.strftime("%Y%m%dT%H%M%SZ"))
    name, count = base + ".bak", 1
    while os.path.lexists(os.path.join(os.path.dirname(p["key"]), name)):
        count += 1
        name = "%s-%d.bak" % (base, count)
    return name


def _private_dir(pki_dir, check_mode):
    """Create the PKI dir (0700) or tighten an open one; the reasons when anything changes."""
    if not os.path.isdir(pki_dir):
        if not check_mode:
            fileio.ensure_private_dir(pki_dir, "PKI directory")
        return ["PKI directory %s created (mode 0700)" % pki_dir]
    with fileio.open_dir(pki_dir, "PKI directory") as handle:
        mode = stat.S_IMODE(handle.stat().st_mode)
        if mode & 0o077:
            if not check_mode:
                os.fchmod(handle.fd, 0o700)
            return ["PKI directory %s was mode %04o, now 0700" % (pki_dir, mode)]
    return []


def _root_of(signer_chain, bundle):
    last = signer_chain[-1]
    if last.issuer == last.subject:
        return last
    for cert in bundle:
        if pki.issued_by(last, cert):
            return cert
    raise CrdbTlsError("the CA %s has no root in its trust bundle" % last.subject.rfc4514_string())


def ensure_trust(pki_dir, role="ca", cert_src=None, keep_previous=True, check_mode=False, now=None):
    """Keep only the trust side of a CA whose key is elsewhere (an external signer or offline CA).

    ``cert_src`` holds the organisation's CA certificates: the issuing CA
    followed by its issuers up to the self-signed root, or the root alone. The
    self-signed certificates in it become the trust bundle (``ca.crt`` /
    ``ca-client.crt``), earlier unexpired roots kept after them when
    ``keep_previous``; the file as given is kept as ``<prefix>.signer.pem``
    for reference. No key is read or written. Returns a result dict like
    :func:`ensure`.
    """
    now = now or pki.utcnow()
    _check_pki_dir_path(pki_dir)
    p = paths(pki_dir, role)
    if not cert_src:
        raise CrdbTlsError("CA %s signed by an external signer needs cert_src: the organisation's CA "
                           "certificate(s) up to the root, which become the trust bundle %s"
                           % (role, p["bundle_name"]))
    certs = pki.load_certificates(fileio.read_file(cert_src, "CA certificate"), cert_src)
    problems = []
    for cert in certs:
        problems.extend(pki.ca_certificate_problems(cert, cert_src, now))
    order = pki.chain_order_problem(certs)
    if order:
        problems.append("%s: %s" % (cert_src, order))
    roots = [c for c in certs if c.issuer == c.subject and pki.issued_by(c, c)]
    if not roots:
        problems.append("%s holds no self-signed root CA: put the issuing CA's issuers up to the root "
                        "after it (or the root alone); the root becomes %s" % (cert_src, p["bundle_name"]))
    if problems:
        raise CrdbTlsError("; ".join(problems))
    if len(certs) > 1:
        broken = pki.verify_chain(certs[0], [c for c in certs[1:] if c not in roots], roots, now)
        if broken:
            raise CrdbTlsError("%s: the CA chain does not verify: %s" % (cert_src, broken))
    dir_reasons = _private_dir(pki_dir, check_mode)
    with fileio.dir_lock(pki_dir) if os.path.isdir(pki_dir) else contextlib.nullcontext():
        previous = []
        if os.path.exists(p["bundle"]):
            try:
                previous = pki.load_certificates(fileio.read_file(p["bundle"], "CA bundle"), p["bundle"])
            except CrdbTlsError:
                previous = []
        bundle = list(roots)
        if keep_previous:
            fps = set(pki.fingerprint(c) for c in bundle)
            bundle += [c for c in previous if pki.fingerprint(c) not in fps and pki.not_after(c) > now]
        reasons = []
        files = fileio.FileSet(pki_dir)
        bundle_pem = pki.certificates_pem(bundle)
        if fileio.read_optional(p["bundle"]) != bundle_pem:
            files.add(os.path.basename(p["bundle"]), bundle_pem, rules.CERT_MODE)
            reasons.append("trust bundle %s %s" % (p["bundle"], "updated" if previous else "created"))
        signer_pem = pki.certificates_pem(certs)
        if fileio.read_optional(p["signer"]) != signer_pem:
            files.add(os.path.basename(p["signer"]), signer_pem, rules.CERT_MODE)
            reasons.append("%s records the external CA %s" % (p["signer"], certs[0].subject.rfc4514_string()))
        if len(files) and not check_mode:
            files.commit(locked=True)
    old = [pki.fingerprint(c) for c in previous]
    signer = certs[0]
    reasons = dir_reasons + reasons
    result = _result(p, role, signer, previous, bundle)
    result.update(changed=bool(reasons), rotated=bool(previous) and old[:1] != [pki.fingerprint(bundle[0])],
                  reasons=reasons, external_signer=True, key=None)
    return result


def _result(p, role, signer, bundle_before, bundle):
    """What crdb.tls.ca returns about the CA of ``role`` and its trust bundle (the caller adds what changed)."""
    def line(cert):
        return cert.subject.rfc4514_string() + " " + pki.fingerprint(cert)[:16]

    return {
        "role": role,
        "cert": p["signer"],
        "key": p["key"],
        "bundle": p["bundle"],
        "index": p["index"],
        "bundle_name": p["bundle_name"],
        "subject": signer.subject.rfc4514_string(),
        "serial": pki.serial_hex(signer),
        "not_after": pki.not_after(signer).isoformat(),
        "fingerprint_sha256": pki.fingerprint(signer),
        "is_intermediate": not (signer.issuer == signer.subject),
        "bundle_subjects": [c.subject.rfc4514_string() for c in bundle],
        "bundle_fingerprints": [pki.fingerprint(c) for c in bundle],
        "diff": {"before": {"bundle": [line(c) for c in bundle_before]},
                 "after": {"bundle": [line(c) for c in bundle]}},
    }


def trust_roots(pki_dir, role):
    """The certificates of the trust bundle of ``role`` (what issued certificates must chain to)."""
    p = paths(pki_dir, role)
    if not os.path.exists(p["bundle"]):
        raise CrdbTlsError("CA %s: %s does not exist; run crdb.tls.ca (path=%s, role=%s) first"
                           % (role, p["bundle"], pki_dir, role))
    return pki.load_certificates(fileio.read_file(p["bundle"], "CA bundle"), p["bundle"])


def _rotation_preflight(p, role, pki_dir, rotation, rot, current, provided, reasons, force):
    """Refuse what a rotation's state forbids; returns ``(force a new CA, finish unconfirmed)``."""
    current_fp = pki.fingerprint(current) if current is not None else None
    provided_fp = pki.fingerprint(provided.certificate) if provided is not None else None
    if rotation is None:
        _refuse_while_started(p, role, pki_dir)
        if _in_progress(rot) and provided_fp in rot["previous"]:
            raise CrdbTlsError("the provided CA %s is the one the CA rotation in progress replaces; set the "
                               "provided CA to the new one (fingerprint %s)" % (provided_fp[:16], rot["new"][:16]))
        return force, False
    broken = [r for r in reasons if not r.startswith("no CA yet")]
    if current is None:
        raise CrdbTlsError("there is no CA of role %s in %s to rotate; create it first" % (role, pki_dir))
    if rotation == "start" and not _in_progress(rot):
        if provided is not None and provided_fp == current_fp:
            raise CrdbTlsError("the provided CA %s is already the current CA of role %s: give the new CA to rotate to"
                               % (provided.certificate.subject.rfc4514_string(), role))
        if broken and provided is None:
            raise CrdbTlsError("the CA in %s cannot be used (%s); a rotation needs a working current CA: "
                               "replace it with crdb.tls.ca force=true instead" % (pki_dir, "; ".join(broken)))
        return provided is None, False
    if rotation != "start" and rot is None:
        raise CrdbTlsError("no CA rotation of %s was started in %s (%s does not exist): run phase 1 first"
                           % (role, pki_dir, p["rotation"]))
    if rotation in ("trusted", "reissued") and not _in_progress(rot):
        raise CrdbTlsError("the CA rotation of %s in %s is already finished; a new one starts with phase 1"
                           % (role, pki_dir))
    if current_fp != rot["new"]:
        raise CrdbTlsError("the CA rotation state %s names the new CA %s, but the current CA is %s; "
                           "the CA was changed outside the rotation: fix it by hand"
                           % (p["rotation"], rot["new"][:16], current_fp[:16]))
    if provided is not None and provided_fp != rot["new"]:
        raise CrdbTlsError("a CA rotation of %s to %s is in progress in %s: finish it (phase 3) before rotating "
                           "to the provided CA %s" % (role, rot["new"][:16], pki_dir, provided_fp[:16]))
    if broken:
        raise CrdbTlsError("the CA in %s cannot be used: %s" % (pki_dir, "; ".join(broken)))
    if rotation == "finish" and ROTATION_STATES.index(rot["state"]) < ROTATION_STATES.index("reissued") and not force:
        raise CrdbTlsError("phase 2 of the CA rotation of %s is not recorded as done (state %s): certificates "
                           "signed by the previous CA may still be in use, and removing it from the bundles would "
                           "lock them out; run phase 2 first, or pass force=true" % (role, rot["state"]))
    # Resuming or recording a step: never a new CA.
    return False, force


def _rotation_next(rotation, rot, rotated, signer_chain, new_roots, state, role, allow_unconfirmed, now):
    """The rotation state after this call (``rot`` itself when nothing changes)."""
    if rotation is None:
        return rot
    stamp = now.replace(microsecond=0).isoformat()
    if rotation == "start":
        if not rotated:
            return rot
        new_fps = set(pki.fingerprint(c) for c in list(new_roots) + list(signer_chain))
        previous = [pki.fingerprint(c) for c in state["bundle"] if pki.fingerprint(c) not in new_fps]
        history = list((rot or {}).get("history") or [])
        if rot is not None:
            history.append(dict((k, rot[k]) for k in ("new", "previous", "started_at", "updated_at") if k in rot))
        return {"role": role, "state": "started", "new": pki.fingerprint(signer_chain[0]), "previous": previous,
                "new_subject": signer_chain[0].subject.rfc4514_string(), "started_at": stamp, "updated_at": stamp,
                "history": history}
    target = ROTATION_STEPS[rotation]
    if ROTATION_STATES.index(target) <= ROTATION_STATES.index(rot["state"]):
        return rot   # never backwards: a rerun of an earlier phase keeps the progress recorded
    after = dict(rot, state=target, updated_at=stamp)
    if rotation == "finish" and allow_unconfirmed and rot["state"] != "reissued":
        after["finished_unconfirmed"] = True
    return after
