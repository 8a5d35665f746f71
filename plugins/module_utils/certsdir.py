# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read a certs dir the way a CockroachDB node does, and say what is wrong with it.

:func:`inspect` returns the entries ``cockroach cert list`` would print plus
the problems :mod:`verifier` finds (records, and as strings that start with
the file at fault, for display only) and the verdict. It needs only Python 3
and ``cryptography`` on the host it runs on; a check without content
(``content=False``: names, layout, keys present and their permissions) needs
no cryptography and does not load it (see :func:`_pki`).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os

from ansible_collections.crdb.tls.plugins.module_utils import durations, fileio, rules, stamp, verifier
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
    """Primary gid of the cockroach process user (default: the certs dir's owner); see :func:`verifier.process_gid`."""
    return verifier.process_gid(certs_dir, user=user, proc="/nonexistent")[0]


def inspect(certs_dir, process_user=None, expected_hosts=None, expected_ui_hosts=None,
            min_remaining=None, layout=None, now=None, purpose="node", trusted_keys=False, content=True,
            permissions=True, identity=None, process_group=None, skip_key_permission_check=False):
    """Entries, problems and verdict of a certs dir; see the module ``crdb.tls.certs_info``.

    The judgement is :func:`verifier.judge_dir`; this adds the collection's
    own checks (layout files, ``min_remaining``) and the ``cockroach cert
    list`` entries. Returns ``{"certs_dir", "entries", "problems" (strings of
    the blocking records), "warnings" (strings), "records" (every
    :class:`verifier.Problem`), "skipped", "layout", "verdict"}``.

    ``purpose`` is ``node`` for a node's certs dir, ``client`` for a SQL
    client's: a client dir needs no node files, and in the split-CA layout its
    client certificates cannot be verified there (the client CA is not in it).
    ``trusted_keys``: the keys were made by this collection (see
    :func:`verifier.load_private_key`); their match with the certificate is still checked.
    ``content=False`` checks only what needs no cryptography: names, PEM block
    labels, layout files, keys present and their permissions (a node without
    python3-cryptography; the content was checked on the controller).
    ``permissions=False`` skips the key permission rule (files on the controller).
    The key rule's process gid is that of a running ``cockroach`` process, else
    ``process_group``, else the primary group of ``process_user`` (default:
    the certs dir's owner); ``skip_key_permission_check``:
    ``COCKROACH_SKIP_KEY_PERMISSION_CHECK`` is set for the process.
    ``identity``: see :func:`verifier.identity_options`.
    """
    if purpose not in ("node", "client"):
        raise CrdbTlsError("purpose %r must be node or client" % (purpose,))
    now = now or durations.utcnow()
    min_remaining = durations.parse_duration(min_remaining, "min_remaining") or datetime.timedelta(0)
    identity = verifier.identity_options(identity)
    if layout is not None:
        rules.layout_files(layout)
    if content:
        pki = _pki()
        for host in list(expected_hosts or []) + list(expected_ui_hosts or []):
            pki.parse_host(host, "expected host")
    report = {"certs_dir": certs_dir, "entries": [], "problems": [], "warnings": [], "records": [], "skipped": [],
              "layout": None, "verdict": None}
    gid = None
    skip = False
    if permissions and os.path.isdir(certs_dir):
        gid = verifier.process_gid(certs_dir, group=process_group, user=process_user)[0]
        skip = verifier.skip_permission_check(skip_key_permission_check, certs_dir)
    judged = verifier.judge_dir(certs_dir, identity=identity, expected_hosts=expected_hosts,
                                expected_ui_hosts=expected_ui_hosts, now=now, gid=gid, skip_permissions=skip,
                                permissions=permissions, content=content, trusted_keys=trusted_keys,
                                purpose=purpose, layout=layout)
    records = judged["problems"]
    present = judged["present"]
    files = judged["files"]
    if os.path.isdir(certs_dir):
        if layout is None:
            report["layout"] = ("split_ca" if "ca-client.crt" in present else
                                "split_node" if "client.node.crt" in present else "standard")
        else:
            report["layout"] = layout
            for required in rules.layout_files(layout) if purpose == "node" else ("ca.crt",):
                if required not in present:
                    records.append(verifier.Problem(required, "layout_missing", "missing (required by the %s layout)"
                                                    % layout, verifier.LOAD))
    for name in sorted(files):
        state = files[name]
        if state.certs and state.kind not in rules.CA_KINDS and state.kind != rules.KIND_TENANT_SIGNING:
            end = _pki().not_after(state.certs[0])
            if now < end <= now + min_remaining:
                records.append(verifier.Problem(name, "expiring", "expires on %s, within min_remaining (%s)"
                                                % (_date(end), durations.format_delta(min_remaining)),
                                                verifier.WARNING))
    report["records"] = records
    report["problems"] = [str(p) for p in records if p.blocking]
    report["warnings"] = [str(p) for p in records if not p.blocking]
    report["skipped"] = sorted(p.file for p in records if p.code == "bad_name")
    report["verdict"] = judged["verdict"]
    for name in sorted(files):
        state = files[name]
        own = [p.message for p in records if p.file == name and p.blocking]
        leaf = state.certs[0] if state.certs else None
        report["entries"].append(_entry(state.kind, name, state.key_file, leaf, state.certs or [],
                                        state.qualifier, "; ".join(own)))
    return report


def install_problems(src, names=None, expected_hosts=None, expected_ui_hosts=None, layout=None, purpose="node",
                     record=True, now=None, identity=None):
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
                     trusted_keys=True, permissions=False, now=now, identity=identity)
    shipped = sorted(chosen) if chosen is not None else stamp.shipped_names(src)
    on_host = set(name for name in shipped
                  if name.endswith(rules.CERT_SUFFIX) and rules.FIXED_NAMES.get(name) not in rules.CA_KINDS
                  and rules.key_name(name) not in shipped)
    problems = [str(p) for p in report["records"]
                if p.blocking and (chosen is None or p.file in chosen) and p.code != "no_ca"
                and not (p.code == "key_missing" and p.file in on_host)]
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
