# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read a certs dir the way a CockroachDB node does, and say what is wrong with it.

:func:`inspect` returns the entries ``cockroach cert list`` would print plus
a list of problems, each a string that starts with the file at fault. It
needs only Python 3 and ``cryptography`` on the host it runs on; a check
without content (``content=False``: names, layout, keys present and their
permissions) needs no cryptography and does not load it (see :func:`_pki`).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import pwd

from ansible_collections.crdb.tls.plugins.module_utils import durations, fileio, pem, rules, stamp
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

_USAGE = {
    rules.KIND_CA: "CA",
    rules.KIND_CLIENT_CA: "Client CA",
    rules.KIND_UI_CA: "UI CA",
    rules.KIND_TENANT_CLIENT_CA: "Tenant Client CA",
    rules.KIND_NODE: "Node",
    rules.KIND_UI: "UI",
    rules.KIND_CLIENT: "Client",
    rules.KIND_TENANT_CLIENT: "Tenant Client",
    rules.KIND_TENANT_SIGNING: "Tenant Signing",
}


def _pki():
    """:mod:`pki`, imported where certificate content is read: loading cryptography costs a node
    about a tenth of a second, which a names-and-permissions check does not need."""
    from ansible_collections.crdb.tls.plugins.module_utils import pki
    return pki


def process_gid_for(user, certs_dir):
    """Primary gid of the cockroach process user (default: the certs dir's owner)."""
    try:
        if user is not None:
            if str(user).isdigit():
                return pwd.getpwuid(int(user)).pw_gid
            return pwd.getpwnam(user).pw_gid
        return pwd.getpwuid(os.stat(certs_dir).st_uid).pw_gid
    except (KeyError, OSError):
        if user is not None:
            raise CrdbTlsError("process_user %r: no such user on this host" % (user,))
        return None


def inspect(certs_dir, process_user=None, expected_hosts=None, expected_ui_hosts=None,
            min_remaining=None, layout=None, now=None, purpose="node", trusted_keys=False, content=True,
            permissions=True):
    """Entries and problems of a certs dir; see the module ``crdb.tls.certs_info``.

    ``purpose`` is ``node`` for a node's certs dir, ``client`` for a SQL
    client's: a client dir needs no node files, and in the split-CA layout its
    client certificates cannot be verified there (the client CA is not in it).
    ``trusted_keys``: the keys were made by this collection (see
    :func:`pki.load_private_key`); their match with the certificate is still checked.
    ``content=False`` checks only what needs no cryptography: names, PEM block
    labels, layout files, keys present and their permissions (a node without
    python3-cryptography; the content was checked on the controller).
    ``permissions=False`` skips the key permission rule (files on the controller).
    """
    if purpose not in ("node", "client"):
        raise CrdbTlsError("purpose %r must be node or client" % (purpose,))
    pki = _pki() if content else None
    now = now or durations.utcnow()
    min_remaining = durations.parse_duration(min_remaining, "min_remaining") or datetime.timedelta(0)
    if layout is not None:
        rules.layout_files(layout)
    for host in list(expected_hosts or []) + list(expected_ui_hosts or []) if content else []:
        pki.parse_host(host, "expected host")
    report = {"certs_dir": certs_dir, "entries": [], "problems": [], "skipped": [], "layout": None}
    problems = report["problems"]
    if not os.path.isdir(certs_dir):
        problems.append("%s: the certs dir does not exist" % certs_dir)
        return report
    process_gid = process_gid_for(process_user, certs_dir)
    names = sorted(os.listdir(certs_dir))
    present = set(names)
    for tmp, final in fileio.pending_journal(certs_dir):
        problems.append("%s: an interrupted update left %s pending; the next crdb.tls write completes it"
                        % (final, tmp))
    for name in names:
        stem = name[:-len(rules.KEY_SUFFIX)] if name.endswith(rules.KEY_SUFFIX) else None
        if stem and rules.FIXED_NAMES.get(stem + rules.CERT_SUFFIX) in rules.CA_KINDS:
            problems.append("%s: a CA key in the certs dir; CockroachDB never reads it there and it "
                            "must not be on the node" % name)

    loaded = {}
    for name in names:
        path = os.path.join(certs_dir, name)
        if os.path.isdir(path):
            continue
        classified = rules.classify(name)
        if classified is None:
            continue
        kind, qualifier, why = classified
        if kind is None:
            report["skipped"].append(name)
            problems.append("%s: %s" % (name, why))
            continue
        try:
            data = fileio.read_file(path, "certificate")
            if content:
                certs = pki.load_certificates(data, path)
            else:
                labels = [label for label, _block in pem.blocks(data)]
                if not labels or set(labels) != set(["CERTIFICATE"]):
                    raise CrdbTlsError("%s: expected only CERTIFICATE PEM blocks, found %s"
                                       % (path, ", ".join(labels) or "none"))
                certs = None
        except CrdbTlsError as exc:
            problems.append("%s: %s" % (name, exc))
            report["entries"].append(_entry(kind, name, None, None, [], qualifier, str(exc)))
            continue
        loaded[name] = (kind, qualifier, certs)

    if layout is None:
        report["layout"] = ("split_ca" if "ca-client.crt" in present else
                            "split_node" if "client.node.crt" in present else "standard")
    else:
        report["layout"] = layout
        for required in rules.layout_files(layout) if purpose == "node" else ("ca.crt",):
            if required not in present:
                problems.append("%s: missing (required by the %s layout)" % (required, layout))

    bundles = dict((name, loaded[name][2]) for name in loaded if loaded[name][0] in rules.CA_KINDS)
    for name in sorted(loaded):
        kind, qualifier, certs = loaded[name]
        own = []
        key_file = None
        if certs is None:   # content=False
            if kind not in rules.CA_KINDS:
                key_file = rules.key_name(name)
                own.extend(_key_problems(certs_dir, key_file, None, process_gid, trusted_keys, permissions))
            problems.extend("%s: %s" % (name, p) for p in own)
            report["entries"].append(_entry(kind, name, key_file, None, [], qualifier, "; ".join(own)))
            continue
        if kind in rules.CA_KINDS:
            for index, cert in enumerate(certs, 1):
                for problem in pki.ca_certificate_problems(cert, name, now):
                    own.append(problem[len(name) + 2:] + ("" if len(certs) == 1 else " (certificate %d)" % index))
        else:
            key_file = rules.key_name(name)
            own.extend(_key_problems(certs_dir, key_file, certs[0], process_gid, trusted_keys, permissions))
            unverifiable = (purpose == "client" and layout == "split_ca" and kind == rules.KIND_CLIENT
                            and "ca-client.crt" not in present)
            own.extend(_leaf_problems(name, kind, qualifier, certs, present,
                                      None if unverifiable else bundles,
                                      expected_hosts if kind == rules.KIND_NODE else
                                      expected_ui_hosts if kind == rules.KIND_UI else None,
                                      min_remaining, now))
        for cert in certs[:1]:
            if pki.not_after(cert) <= now:
                own.append("expired on %s" % _date(pki.not_after(cert)))
            elif pki.not_after(cert) - min_remaining <= now:
                own.append("expires on %s, within min_remaining (%s)"
                           % (_date(pki.not_after(cert)), durations.format_delta(min_remaining)))
        problems.extend("%s: %s" % (name, p) for p in own)
        report["entries"].append(_entry(kind, name, key_file, certs[0], certs, qualifier, "; ".join(own)))
    return report


def install_problems(src, names=None, expected_hosts=None, expected_ui_hosts=None, layout=None, purpose="node",
                     record=True, now=None):
    """Problems of a controller-side set ``src`` that ``crdb.tls.install`` would ship.

    ``names`` limits the check to those files (the layout is then not
    required of a node set; a client dir needs only its ``ca.crt``, so it
    keeps the layout). Key permissions are not checked (these are controller
    files); a client certificate that only the node's client CA can verify,
    and a certificate shipped without its key (keys made on the host, which
    checks the pair itself), are left to the host. With no problems and
    ``record``, the pass is recorded (see ``stamp.py``) so the next install of
    the same bytes skips the check.
    """
    purpose = purpose or "node"
    chosen = None if names is None else set(names)
    report = inspect(src, expected_hosts=expected_hosts, expected_ui_hosts=expected_ui_hosts,
                     layout=layout if chosen is None or purpose == "client" else None, purpose=purpose,
                     trusted_keys=True, permissions=False, now=now)
    shipped = sorted(chosen) if chosen is not None else stamp.shipped_names(src)
    on_host = set("%s: key %s is missing" % (name, rules.key_name(name)) for name in shipped
                  if name.endswith(rules.CERT_SUFFIX) and rules.FIXED_NAMES.get(name) not in rules.CA_KINDS
                  and rules.key_name(name) not in shipped)
    problems = [p for p in report["problems"]
                if (chosen is None or p.split(":", 1)[0] in chosen) and "in the certs dir to verify it" not in p
                and p not in on_host]
    if not problems and record:
        pki = _pki()
        certs = []
        for name in shipped:
            if name.endswith(rules.CERT_SUFFIX):
                certs.extend(pki.load_certificates(fileio.read_file(os.path.join(src, name)), name))
        if certs:
            stamp.write(src, shipped, max(pki.not_before(c).timestamp() for c in certs),
                        min(pki.not_after(c).timestamp() for c in certs), expected_hosts=expected_hosts,
                        expected_ui_hosts=expected_ui_hosts, layout=layout, purpose=purpose)
    return problems


def _key_problems(certs_dir, key_file, leaf, process_gid, trusted, permissions=True):
    path = os.path.join(certs_dir, key_file)
    if not os.path.exists(path):
        return ["key %s is missing" % key_file]
    out = []
    st = os.stat(path)
    perm = rules.key_mode_problem(st.st_mode, st.st_uid, st.st_gid, process_gid) if permissions else None
    if perm:
        out.append("key %s: %s" % (key_file, perm))
    if leaf is None:   # content=False: no cryptography to read the key with
        return out
    pki = _pki()
    try:
        key = pki.load_private_key(fileio.read_file(path, "key"), path, trusted=trusted)
    except CrdbTlsError as exc:
        return out + ["key %s is unreadable: %s" % (key_file, exc)]
    if not pki.keys_match(leaf, key):
        out.append("key %s does not match the certificate" % key_file)
    return out


def _leaf_problems(name, kind, user, certs, present, bundles, expected_hosts, min_remaining, now):
    pki = _pki()
    out = []
    leaf = certs[0]
    if pki.is_ca(leaf):
        out.append("the first certificate is a CA, expected the %s leaf" % kind)
    order = pki.chain_order_problem(certs)
    if order:
        out.append("intermediates out of order: %s" % order)
    ca_file = rules.verifying_ca_file(kind, user, present)
    trust = bundles.get(ca_file) if bundles is not None else None
    if trust is None:
        if kind != rules.KIND_UI and bundles is not None:
            out.append("no %s in the certs dir to verify it" % ca_file)
    else:
        problem = pki.verify_chain(leaf, certs[1:], trust, now)
        if problem:
            if kind == rules.KIND_UI:
                # A public CA's ui.crt is not meant to chain to the cluster CA.
                pass
            else:
                out.append("does not verify against %s: %s" % (ca_file, problem))
    principal = rules.required_principal(kind, user, present)
    if principal is not None:
        principals = [pki.common_name(leaf)] + pki.dns_sans(leaf)
        if principal not in principals:
            out.append("CN is %r but CockroachDB needs principal %r (CN=%s)"
                       % (pki.common_name(leaf), principal, principal))
    if name == "client.node.crt" and pki.common_name(leaf) != rules.NODE_USER:
        out.append("client.node.crt must have CN=node, has CN=%r" % pki.common_name(leaf))
    have = pki.ekus(leaf)
    if have is not None:
        missing = [e for e in rules.required_ekus(kind, user, present) if e not in have]
        if missing:
            out.append("extended key usage %s lacks %s" % (",".join(have) or "(empty)", ",".join(missing)))
    for host in expected_hosts or []:
        if not pki.host_covered(leaf, host):
            out.append("expected host %s is not in its SANs (%s)" % (host, ", ".join(pki.san_strings(leaf))))
    if pki.signature_hash_name(leaf) in pki.WEAK_HASHES:
        out.append("signed with %s" % pki.signature_hash_name(leaf).upper())
    return out


def _date(moment):
    return moment.strftime("%Y/%m/%d %H:%M")


def _entry(kind, name, key_file, leaf, certs, qualifier, error):
    notes = []
    entry = {"usage": _USAGE.get(kind, kind), "file": name, "key_file": key_file or "", "error": error,
             "expires": "", "not_after": None, "days_left": None, "notes": ""}
    if leaf is not None:
        pki = _pki()
        notes.append("num certs: %d" % len(certs))
        sans = pki.san_strings(leaf)
        if kind in (rules.KIND_NODE, rules.KIND_UI) and sans:
            notes.append("addresses: %s" % ",".join(sans))
        if kind == rules.KIND_CLIENT:
            notes.append("user: %s" % qualifier)
        left = pki.not_after(leaf) - durations.utcnow()
        entry.update({
            "expires": _date(pki.not_after(leaf)),
            "not_after": pki.not_after(leaf).isoformat(),
            "not_before": pki.not_before(leaf).isoformat(),
            "days_left": int(left.total_seconds() // 86400),
            "serial": pki.serial_hex(leaf),
            "subject": leaf.subject.rfc4514_string(),
            "issuer": leaf.issuer.rfc4514_string(),
            "sans": sans,
            "ekus": pki.ekus(leaf),
            "fingerprint_sha256": pki.fingerprint(leaf),
            "num_certs": len(certs),
        })
        if kind in rules.CA_KINDS and len(certs) > 1:
            entry["bundle"] = [c.subject.rfc4514_string() for c in certs]
    entry["notes"] = ", ".join(notes)
    return entry


def format_table(report):
    """The entries as ``cockroach cert list`` prints them."""
    header = ["Usage", "Certificate File", "Key File", "Expires", "Notes", "Error"]
    rows = [[e["usage"], e["file"], e["key_file"], e["expires"], e["notes"], e["error"]]
            for e in report["entries"]]
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = ["Certificate directory: %s" % report["certs_dir"]]

    def fmt(row):
        return "  " + " | ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip()
    lines.append(fmt(header))
    lines.append("  " + "-+-".join("-" * w for w in widths))
    lines.extend(fmt(r) for r in rows)
    lines.append("(%d rows)" % len(rows))
    return "\n".join(lines)
