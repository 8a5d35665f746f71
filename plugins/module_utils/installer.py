# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Install a host's certificate files into its certs dir in one call, validated first.

The new set is first assembled in a private staging directory inside the
certs dir (CockroachDB skips subdirectories) with the final owners and modes,
together with the files already there, and read back with the validator. Only
when the files this call manages have no problem is the set written into the
certs dir, as one journaled :class:`fileio.FileSet`. A set that fails
validation changes nothing, so nothing is ever reloaded into a broken state.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import pwd
import shutil
import tempfile

from ansible_collections.crdb.tls.plugins.module_utils import fileio, pem, rules
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

STAGING_PREFIX = ".crdb-tls-staging-"


def _uid_known(owner):
    try:
        pwd.getpwuid(fileio.resolve_uid(owner))
    except KeyError:
        return False
    return True


def _check_names(certificates, keys):
    managed_certs = set()
    for name in certificates:
        classified = rules.classify(name)
        if classified is None or classified[0] is None:
            raise CrdbTlsError("refusing to install %r: not a certificate file name CockroachDB reads%s"
                               % (name, "" if classified is None else " (%s)" % classified[2]))
        managed_certs.add(name)
    for name in keys:
        cert = None
        if name.endswith(rules.PKCS8_SUFFIX):
            cert = name[:-len(rules.PKCS8_SUFFIX)] + rules.CERT_SUFFIX
        elif name.endswith(rules.KEY_SUFFIX):
            cert = name[:-len(rules.KEY_SUFFIX)] + rules.CERT_SUFFIX
        kind = (rules.classify(cert) or (None,))[0] if cert else None
        if kind is None or kind in rules.CA_KINDS:
            raise CrdbTlsError("refusing to install %r: not the key of a certificate CockroachDB reads "
                               "(CA keys never go to a certs dir)" % name)
    return managed_certs


def _wanted(certificates, keys, owner, group, key_owner, key_group):
    key_owner = owner if key_owner is None else key_owner
    key_group = group if key_group is None else key_group
    key_mode = fileio.key_mode_for(key_owner, key_group)
    wanted = []
    for name in sorted(certificates):
        wanted.append((name, certificates[name], rules.CERT_MODE, owner, group))
    for name in sorted(keys):
        wanted.append((name, keys[name], key_mode, key_owner, key_group))
    return wanted


def _ensure_dir(dest, dir_mode, owner, group, check_mode, reasons):
    """Create a missing certs dir; returns ``(created dirs, attribute fix needed)``.

    A drifted mode or owner of an existing dir is only reported here: the
    caller fixes it once the new set passed validation.
    """
    if not os.path.isdir(dest):
        if os.path.exists(dest):
            raise CrdbTlsError("certs dir %s exists but is not a directory" % dest)
        reasons.append("certs dir %s created" % dest)
        created = []
        if not check_mode:
            missing, parent = [], os.path.dirname(dest.rstrip("/"))
            while parent and not os.path.isdir(parent):
                missing.append(parent)
                parent = os.path.dirname(parent)
            for path in reversed(missing):
                try:
                    os.mkdir(path, 0o755)
                except FileExistsError:
                    # Another host's run (forks share one machine) made it first.
                    if not os.path.isdir(path):
                        raise
                    continue
                created.insert(0, path)
            os.mkdir(dest, 0o700)
            created.insert(0, dest)
            os.chown(dest, fileio.resolve_uid(owner), fileio.resolve_gid(group))
            os.chmod(dest, dir_mode)
        return created, False
    drift = fileio.attribute_drift(dest, dir_mode, owner, group)
    if drift:
        reasons.append("certs dir %s: %s" % (dest, drift))
        return [], True
    return [], False


def _validate_staged(dest, wanted, managed, owner, group, process_user, expected_hosts,
                     expected_ui_hosts, layout, purpose, checked):
    """Problems of the managed files in the set as it would be after the install."""
    staging = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=dest)
    try:
        os.chown(staging, fileio.resolve_uid(owner), fileio.resolve_gid(group))
        incoming = set(w[0] for w in wanted)
        for name in os.listdir(dest):
            path = os.path.join(dest, name)
            if name in incoming or name.startswith(".") or not os.path.isfile(path):
                continue
            target = os.path.join(staging, name)
            shutil.copy2(path, target)
            st = os.stat(path)
            os.chown(target, st.st_uid, st.st_gid)
        files = fileio.FileSet(staging)
        for name, data, mode, fowner, fgroup in wanted:
            files.add(name, data, mode, fowner, fgroup)
        files.commit(locked=True, durable=False)   # a scratch copy, removed below
        report = _inspect(staging, checked, process_user=process_user, expected_hosts=expected_hosts,
                          expected_ui_hosts=expected_ui_hosts, layout=layout, purpose=purpose)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    names = managed | set(w[0] for w in wanted)
    if layout and purpose == "node":
        names |= set(rules.layout_files(layout))
    return [p.replace(staging, dest) for p in report["problems"] if p.split(":", 1)[0] in names]


def install(dest, certificates, keys, owner=None, group=None, key_owner=None, key_group=None, dir_mode=0o700,
            process_user=None, expected_hosts=None, expected_ui_hosts=None, layout=None, validate=True,
            check_mode=False, purpose="node", content_checked=False):
    """Make ``dest`` hold exactly these files' contents, owners and modes; returns a result dict.

    ``content_checked``: the content of ``certificates`` and ``keys`` (chains,
    key match, names, EKUs, validity) passed the controller's check with the
    same expected hosts and layout (the action plugin says so). While the
    certs dir then holds no certificate or key beyond them, the node checks
    names, layout, owners and permissions only and does not load cryptography.
    """
    if not os.path.isabs(dest):
        raise CrdbTlsError("dest %r must be an absolute path" % dest)
    managed = _check_names(certificates, keys)
    checked = frozenset(list(certificates) + list(keys)) if content_checked else None
    group = default_group(owner, group)
    wanted = _wanted(certificates, keys, owner, group, key_owner, key_group)
    fingerprints = {}
    for name in certificates:
        try:
            fingerprints[name] = pem.certificate_fingerprint(certificates[name], name)
        except CrdbTlsError as exc:
            raise CrdbTlsError("certificate %s to install is not valid: %s" % (name, exc))
    reasons = []
    created, fix_dir = _ensure_dir(dest, dir_mode, owner, group, check_mode, reasons)
    result = {"dest": dest, "reasons": reasons, "changed_files": [], "problems": [], "fingerprints": fingerprints}
    if check_mode and not os.path.isdir(dest):
        result["changed_files"] = [w[0] for w in wanted]
        result["changed"] = True
        return result
    with fileio.dir_lock(dest):
        if not check_mode:
            done = fileio.recover(dest)
            if done:
                reasons.append("completed an interrupted update of %s" % ", ".join(done))
        # Certificates sent without their key (keys made on the host): the key is the one there.
        adopted, pending_paths = host_keys(dest, certificates, keys)
        wanted.extend(_wanted({}, adopted, owner, group, key_owner, key_group))
        writes, fixes = [], []
        for name, data, mode, fowner, fgroup in wanted:
            path = os.path.join(dest, name)
            current = fileio.read_optional(path) if os.path.isfile(path) else None
            if current != data:
                writes.append((name, data, mode, fowner, fgroup))
                reasons.append("%s %s" % (name, "is missing" if current is None else "content differs"))
                continue
            drift = fileio.attribute_drift(path, mode, fowner, fgroup)
            if drift:
                fixes.append((name, mode, fowner, fgroup))
                reasons.append("%s: %s" % (name, drift))
        if (writes or fixes or fix_dir) and validate and not check_mode:
            problems = _validate_staged(dest, wanted, managed, owner, group, process_user, expected_hosts,
                                        expected_ui_hosts, layout, purpose, checked)
            if problems:
                for path in created:   # deepest first: leave no trace of a refused install
                    try:
                        os.rmdir(path)
                    except OSError:
                        break
                raise CrdbTlsError("refusing to install into %s, the new set would not work: %s"
                                   % (dest, "; ".join(problems)))
        if not check_mode:
            if writes:
                files = fileio.FileSet(dest)
                for entry in writes:
                    files.add(*entry)
                files.commit(locked=True)
            for path in pending_paths:
                os.unlink(path)   # now in place under its own name
            for name, mode, fowner, fgroup in fixes:
                fileio.set_attributes(os.path.join(dest, name), mode, fowner, fgroup)
            if fix_dir:
                fileio.set_attributes(dest, dir_mode, owner, group)
    result["changed_files"] = [w[0] for w in writes] + [f[0] for f in fixes]
    result["changed"] = bool(reasons)
    result["content_changed"] = bool(writes)
    if validate and (writes or fixes) and not check_mode:
        report = _inspect(dest, checked, process_user=process_user, expected_hosts=expected_hosts,
                          expected_ui_hosts=expected_ui_hosts, layout=layout, purpose=purpose)
        result["problems"] = report["problems"]
    return result


def default_group(owner, group):
    """Files and dir get the owner's primary group, not the one of the user running Ansible."""
    if owner not in (None, "") and group in (None, ""):
        return pwd.getpwuid(fileio.resolve_uid(owner)).pw_gid if _uid_known(owner) else None
    return group


def make_certs_dir(dest, owner=None, group=None, dir_mode=0o700, check_mode=False):
    """Create a missing certs dir (and parents) as :func:`install` does; returns the reasons."""
    if not os.path.isabs(dest):
        raise CrdbTlsError("certs dir %r must be an absolute path" % dest)
    reasons = []
    _ensure_dir(dest, dir_mode, owner, group, check_mode, reasons)
    return [r for r in reasons if r.endswith(" created")]


def host_keys(dest, certificates, keys):
    """Keys already on the host for the certificates sent without theirs.

    Only certificates whose content changes are looked at. Their key is the
    key in place when it matches, else a new key waiting beside it
    (``node_keys.pending_key_name``) that matches: that one is returned to be
    installed in the same set as the certificate, with the paths to remove
    once it is in place. A certificate matching neither is refused here,
    before anything is written. Returns ``({key name: bytes}, [paths])``;
    the key bytes stay in this process.
    """
    todo = []
    for name, data in sorted(certificates.items()):
        kind = (rules.classify(name) or (None,))[0]
        if kind is None or kind in rules.CA_KINDS:
            continue
        key_file = rules.key_name(name)
        if key_file in keys:
            continue
        path = os.path.join(dest, name)
        if os.path.isdir(dest) and os.path.isfile(path) and fileio.read_optional(path) == data:
            continue
        todo.append((name, data, key_file))
    if not todo:
        return {}, []
    from ansible_collections.crdb.tls.plugins.module_utils import node_keys, pki
    if not pki.HAS_CRYPTOGRAPHY:
        raise CrdbTlsError("%s come without their keys (keys made on the host): checking them against the "
                           "host's keys needs python3-cryptography on this host" % ", ".join(t[0] for t in todo))
    adopted, pending_paths = {}, []
    for name, data, key_file in todo:
        leaf = pki.load_certificates(data, "certificate %s to install" % name)[0]
        pending_file = node_keys.pending_key_name(key_file)
        tried = []
        for candidate in (key_file, pending_file):
            path = os.path.join(dest, candidate)
            key_data = fileio.read_optional(path) if os.path.isfile(path) else None
            if key_data is None:
                tried.append("%s is missing" % candidate)
                continue
            try:
                key = pki.load_private_key(key_data, path, trusted=True)
            except CrdbTlsError as exc:
                tried.append(str(exc))
                continue
            if pki.keys_match(leaf, key):
                if candidate == pending_file:
                    adopted[key_file] = key_data
                    pending_paths.append(path)
                break
            tried.append("%s does not match it" % candidate)
        else:
            raise CrdbTlsError("refusing to install %s into %s: it comes without its key and no key on the host "
                               "matches it (%s)" % (name, dest, "; ".join(tried)))
    return adopted, pending_paths


def _inspect(directory, checked, **kwargs):
    """The validator; without content checks where they would add nothing.

    The node always checks names, PEM labels, layout files, keys present and
    the key permission rule with the real owners. Certificate content (chains,
    key match, CN, SANs, EKU) is checked here too unless ``checked`` (the
    names whose content the controller checked) covers every certificate and
    key in ``directory``, or the node has no cryptography (the action plugin
    then checked the content before anything was sent).
    """
    from ansible_collections.crdb.tls.plugins.module_utils import certsdir
    content = not (checked is not None and _only_these(directory, checked))
    if content:
        from ansible_collections.crdb.tls.plugins.module_utils import pki
        content = pki.HAS_CRYPTOGRAPHY
    # The keys come from this collection's controller: skip RSA's slow self-check, keep the cert match.
    return certsdir.inspect(directory, trusted_keys=True, content=content, **kwargs)


def _only_these(directory, names):
    """True when every certificate or key file CockroachDB could read in ``directory`` is in ``names``."""
    for name in os.listdir(directory):
        if name in names or name.startswith("."):
            continue
        if rules.classify(name) is not None or name.endswith((rules.KEY_SUFFIX, rules.PKCS8_SUFFIX)):
            return False
    return True
