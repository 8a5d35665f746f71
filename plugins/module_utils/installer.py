# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Install a host's certificate files into its certs dir in one call, validated first.

The certs dir is opened without following links (:func:`fileio.open_dir`,
strict: a certs dir that is a link is refused) and worked on through its fd;
every file this module reads, writes or fixes there is ``lstat``-ed and
refused, by name, when it is a link or not a regular file.

The new set is first assembled in a private staging directory outside the
certs dir, where the certs dir's owner cannot reach (a directory made by
``tempfile.mkdtemp``, mode 0700, holding the staged certs dir), from the new
files and only the files already there that CockroachDB reads (certificates
and their keys, read through ``O_NOFOLLOW`` fds, size-bounded), with the
final owners and modes, and read back with the validator. Only when the
files this call manages have no problem is the set written into the certs
dir, as one journaled :class:`fileio.FileSet`. A set that fails validation
changes nothing, so nothing is ever reloaded into a broken state.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import pwd
import shutil
import stat
import tempfile
import time

from ansible_collections.crdb.tls.plugins.module_utils import fileio, pem, rules
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

STAGING_PREFIX = "crdb-tls-staging-"
# What staging copies from a certs dir: at most this many files, this many bytes in all.
STAGING_MAX_FILES = 1000
STAGING_MAX_BYTES = 64 * 1024 * 1024


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


def _open_certs_dir(dest, dir_mode, owner, group, check_mode, reasons):
    """The certs dir as a :class:`fileio.Dir` (None in check mode when it is missing), and whether its attributes drifted.

    A missing certs dir is made (parents 0755 as ``mkdir -p`` would, then the
    dir 0700, chowned and given ``dir_mode`` through its fd). A drifted mode
    or owner of an existing dir is only reported here: the caller fixes it
    once the new set passed validation. A link anywhere an unprivileged user
    could have planted it, and a certs dir that is itself a link, are refused.
    """
    what = "certs dir"
    handle = fileio.probe_dir(dest, what, strict=True)
    if handle is None:
        reasons.append("certs dir %s created" % dest)
        if check_mode:
            return None, False
        handle = fileio.open_dir(dest, what, make=(0o755, rules.DIR_MODE), strict=True)
        if os.path.abspath(dest) in handle.made:
            uid, gid = fileio.resolve_uid(owner), fileio.resolve_gid(group)
            if uid != -1 or gid != -1:
                os.fchown(handle.fd, uid, gid)
            os.fchmod(handle.fd, dir_mode)
        return handle, False
    drift = handle.own_drift(dir_mode, owner, group)
    if drift:
        reasons.append("certs dir %s: %s" % (dest, drift))
        return handle, True
    return handle, False


def _remove_made(handle):
    """Remove the dirs a refused first install made (deepest first): leave no trace."""
    for path in reversed(handle.made):
        try:
            os.rmdir(path)
        except OSError:
            break


def _read_names(handle, incoming):
    """The names CockroachDB reads in the certs dir that staging copies: certificates and the keys beside them."""
    names = []
    present = set(handle.listdir())
    for name in sorted(present):
        if name in incoming or name.startswith("."):
            continue
        if rules.classify(name) is not None:
            names.append(name)
        elif _cert_of_key(name) in present or _cert_of_key(name) in incoming:
            names.append(name)
    return names


def _cert_of_key(name):
    if name.endswith(rules.PKCS8_SUFFIX):
        return name[:-len(rules.PKCS8_SUFFIX)] + rules.CERT_SUFFIX
    if name.endswith(rules.KEY_SUFFIX):
        return name[:-len(rules.KEY_SUFFIX)] + rules.CERT_SUFFIX
    return None


def clean_stale_staging(reasons):
    """Remove staging dirs a run cut short left in the temp dir (root-only, older than an hour); report them."""
    base = tempfile.gettempdir()
    cutoff = time.time() - fileio.LITTER_AGE
    try:
        with fileio.open_dir(base, "temp dir") as tmp:
            for name in sorted(tmp.listdir()):
                if not name.startswith(STAGING_PREFIX):
                    continue
                st = tmp.lstat(name)
                if (st is None or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid()
                        or stat.S_IMODE(st.st_mode) & 0o077 or st.st_mtime >= cutoff):
                    continue
                try:
                    tmp.remove_tree(name)
                except OSError:
                    continue
                reasons.append("removed %s, left by an interrupted install" % os.path.join(base, name))
    except (CrdbTlsError, OSError):
        pass


def _validate_staged(handle, wanted, managed, owner, group, process_user, expected_hosts,
                     expected_ui_hosts, layout, purpose, checked):
    """``(problems of the managed files, problems of the whole set)`` as the certs dir would be after the install.

    The staged certs dir lives in a root-only temp dir: the certs dir's owner
    can neither reach it nor make it copy more than the files CockroachDB
    reads (each size-bounded).
    """
    dest = handle.path
    incoming = set(w[0] for w in wanted)
    copies, total = [], 0
    names = _read_names(handle, incoming)
    if len(names) > STAGING_MAX_FILES:
        raise CrdbTlsError("certs dir %s holds %d certificate and key files, more than the %d an install reads"
                           % (dest, len(names), STAGING_MAX_FILES))
    for name in names:
        st = handle.regular(name, "file")
        data = handle.read(name, "file")
        if data is None:
            continue
        total += len(data)
        if total > STAGING_MAX_BYTES:
            raise CrdbTlsError("certs dir %s: its certificate and key files hold more than %d bytes in all"
                               % (dest, STAGING_MAX_BYTES))
        copies.append((name, data, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid))
    outer = tempfile.mkdtemp(prefix=STAGING_PREFIX)   # 0700, this process's user: nobody else gets in
    try:
        staging = os.path.join(outer, "certs")
        os.mkdir(staging, 0o700)
        with fileio.open_dir(staging) as stage:
            os.fchown(stage.fd, fileio.resolve_uid(owner), fileio.resolve_gid(group))
            files = fileio.FileSet(stage)
            for entry in copies:
                files.add(*entry)
            for name, data, mode, fowner, fgroup in wanted:
                files.add(name, data, mode, fowner, fgroup)
            files.commit(locked=True, durable=False)   # a scratch copy, removed below
        report = _inspect(staging, checked, process_user=process_user, expected_hosts=expected_hosts,
                          expected_ui_hosts=expected_ui_hosts, layout=layout, purpose=purpose)
    finally:
        shutil.rmtree(outer, ignore_errors=True)
    everything = [str(p).replace(staging, dest) for p in report["records"] if p.blocking]
    names = managed | incoming
    if layout and purpose == "node":
        names |= set(rules.layout_files(layout))
    return [str(p).replace(staging, dest) for p in report["records"] if p.blocking and p.file in names], everything


def _refuse_links(handle, names):
    """Refuse, naming it, any of ``names`` in the certs dir that is a link or not a regular file."""
    for name in sorted(set(names)):
        handle.regular(name, "file")


def install(dest, certificates, keys, owner=None, group=None, key_owner=None, key_group=None, dir_mode=rules.DIR_MODE,
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
    handle, fix_dir = _open_certs_dir(dest, dir_mode, owner, group, check_mode, reasons)
    result = {"dest": dest, "reasons": reasons, "changed_files": [], "problems": [], "fingerprints": fingerprints}
    if handle is None:
        result["changed_files"] = [w[0] for w in wanted]
        result["changed"] = True
        return result
    with handle, handle.locked():
        writes, fixes, report = _install_locked(
            handle, wanted, managed, certificates, keys, owner, group, key_owner, key_group, dir_mode, fix_dir,
            process_user, expected_hosts, expected_ui_hosts, layout, validate, check_mode, purpose, checked,
            reasons)
    result["changed_files"] = [w[0] for w in writes] + [f[0] for f in fixes]
    result["changed"] = bool(reasons)
    result["content_changed"] = bool(writes)
    if report is not None:
        result["problems"] = report
    return result


def _install_locked(handle, wanted, managed, certificates, keys, owner, group, key_owner, key_group, dir_mode,
                    fix_dir, process_user, expected_hosts, expected_ui_hosts, layout, validate, check_mode,
                    purpose, checked, reasons):
    if not check_mode:
        recovered = fileio.recover_report(handle)
        if recovered["completed"]:
            reasons.append("completed an interrupted update of %s" % ", ".join(recovered["completed"]))
        if recovered["rolled_back"]:
            reasons.append("rolled back an interrupted update of %s (a rename was refused)"
                           % ", ".join(recovered["rolled_back"]))
        if recovered["removed"]:
            reasons.append("removed litter of an interrupted run: %s" % ", ".join(recovered["removed"]))
        clean_stale_staging(reasons)
    names = [w[0] for w in wanted] + [rules.key_name(n) for n in certificates
                                      if (rules.classify(n) or (None,))[0] not in (None,) + tuple(rules.CA_KINDS)]
    _refuse_links(handle, names + [rules.pending_key_name(n) for n in names if n.endswith(rules.KEY_SUFFIX)])
    # Certificates sent without their key (keys made on the host): the key is the one there.
    adopted, pending_names = host_keys(handle, certificates, keys)
    wanted.extend(_wanted({}, adopted, owner, group, key_owner, key_group))
    writes, fixes = [], []
    for name, data, mode, fowner, fgroup in wanted:
        current = handle.read(name, "file")
        if current != data:
            writes.append((name, data, mode, fowner, fgroup))
            reasons.append("%s %s" % (name, "is missing" if current is None else "content differs"))
            continue
        drift = handle.attribute_drift(name, mode, fowner, fgroup)
        if drift:
            fixes.append((name, mode, fowner, fgroup))
            reasons.append("%s: %s" % (name, drift))
    report = None
    if (writes or fixes or fix_dir) and validate and not check_mode:
        if process_user is None:
            # The validator's default: the certs dir's owner, as it will be.
            uid = fileio.resolve_uid(owner) if owner not in (None, "") else handle.stat().st_uid
            process_user = str(uid) if _uid_known(uid) else None
        problems, everything = _validate_staged(handle, wanted, managed, owner, group, process_user,
                                                expected_hosts, expected_ui_hosts, layout, purpose, checked)
        if problems:
            _remove_made(handle)
            raise CrdbTlsError("refusing to install into %s, the new set would not work: %s"
                               % (handle.path, "; ".join(problems)))
        if writes or fixes:
            report = everything
    if not check_mode:
        if writes:
            files = fileio.FileSet(handle)
            for entry in writes:
                files.add(*entry)
            files.commit(locked=True)
        for name in pending_names:
            handle.unlink(name)   # now in place under its own name
        for name, mode, fowner, fgroup in fixes:
            handle.set_attributes(name, mode, fowner, fgroup)
        if fix_dir:
            handle.set_own_attributes(dir_mode, owner, group)
    return writes, fixes, report


def default_group(owner, group):
    """Files and dir get the owner's primary group, not the one of the user running Ansible."""
    if owner not in (None, "") and group in (None, ""):
        return pwd.getpwuid(fileio.resolve_uid(owner)).pw_gid if _uid_known(owner) else None
    return group


def make_certs_dir(dest, owner=None, group=None, dir_mode=rules.DIR_MODE, check_mode=False):
    """Create a missing certs dir (and parents) as :func:`install` does; returns the reasons."""
    if not os.path.isabs(dest):
        raise CrdbTlsError("certs dir %r must be an absolute path" % dest)
    reasons = []
    handle, _fix = _open_certs_dir(dest, dir_mode, owner, group, check_mode, reasons)
    if handle is not None:
        handle.close()
    return [r for r in reasons if r.endswith(" created")]


def host_keys(handle, certificates, keys):
    """Keys already on the host for the certificates sent without theirs.

    ``handle``: the certs dir (:class:`fileio.Dir`). Only certificates whose
    content changes are looked at. Their key is the key in place when it
    matches, else a new key waiting beside it (``rules.pending_key_name``)
    that matches: that one is returned to be installed in the same set as the
    certificate, with the names to remove once it is in place. A certificate
    matching neither is refused here, before anything is written; a key that
    is a link is refused, never adopted. Returns ``({key name: bytes},
    [names])``; the key bytes stay in this process.
    """
    todo = []
    for name, data in sorted(certificates.items()):
        kind = (rules.classify(name) or (None,))[0]
        if kind is None or kind in rules.CA_KINDS:
            continue
        key_file = rules.key_name(name)
        if key_file in keys:
            continue
        if handle.read(name, "file") == data:
            continue
        todo.append((name, data, key_file))
    if not todo:
        return {}, []
    from ansible_collections.crdb.tls.plugins.module_utils import pki
    if not pki.HAS_CRYPTOGRAPHY:
        raise CrdbTlsError("%s come without their keys (keys made on the host): checking them against the "
                           "host's keys needs python3-cryptography on this host" % ", ".join(t[0] for t in todo))
    adopted, pending_names = {}, []
    for name, data, key_file in todo:
        leaf = pki.load_certificates(data, "certificate %s to install" % name)[0]
        pending_file = rules.pending_key_name(key_file)
        tried = []
        for candidate in (key_file, pending_file):
            key_data = handle.read(candidate, "key")
            if key_data is None:
                tried.append("%s is missing" % candidate)
                continue
            try:
                key = pki.load_private_key(key_data, handle.join(candidate), trusted=True)
            except CrdbTlsError as exc:
                tried.append(str(exc))
                continue
            if pki.keys_match(leaf, key):
                if candidate == pending_file:
                    adopted[key_file] = key_data
                    pending_names.append(candidate)
                break
            tried.append("%s does not match it" % candidate)
        else:
            raise CrdbTlsError("refusing to install %s into %s: it comes without its key and no key on the host "
                               "matches it (%s)" % (name, handle.path, "; ".join(tried)))
    return adopted, pending_names


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
