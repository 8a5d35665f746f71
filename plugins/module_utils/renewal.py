# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Renewal windows per kind of certificate, and the expiry report built on them.

The one place that says which window applies to a certificate: every file is
of one *renewal kind* (``ca``, ``node``, ``client``, ``ui``), read from its
name in a certs dir by CockroachDB's own naming rules (``rules.classify``).
``client.node.crt`` is the node's own identity, so it renews with ``node``.
Issuing (``fleet.issue``) and checking (:func:`assess`) both ask here.

The report part turns what ``certsdir.inspect`` finds in a host's certs dirs
into rows (host, file, kind, expiry, days left, window, status, why), and
formats them as a table, a JSON document and a Prometheus textfile for
node_exporter's textfile collector. Nothing here restates a CockroachDB rule:
the problems come from ``certsdir``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import ssl

from ansible_collections.crdb.tls.plugins.module_utils import (
    authority, certsdir, durations, fileio, pem, pki, reloader, rules)
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

KINDS = ("ca", "node", "client", "ui")
# The defaults of the node role (roles/node/defaults/main.yml) and of the modules:
# leaves renew in the last third of their own lifetime (step-ca renews at two
# thirds), whatever that lifetime is; a CA, which only rotate_ca.yml replaces,
# is warned about 180 days ahead.
DEFAULT_LEAF_WINDOW = "33%"
DEFAULT_WINDOWS = {"ca": "180d", "node": DEFAULT_LEAF_WINDOW, "client": DEFAULT_LEAF_WINDOW,
                   "ui": DEFAULT_LEAF_WINDOW}

STATUS_OK = "ok"
STATUS_DUE = "due"
STATUS_EXPIRED = "expired"
STATUS_BROKEN = "broken"
STATUSES = (STATUS_OK, STATUS_DUE, STATUS_EXPIRED, STATUS_BROKEN)

ROTATE_HINT = "renew.yml does not rotate a CA: run playbooks/rotate_ca.yml"

METRIC_EXPIRY = "crdb_tls_cert_expiry_timestamp_seconds"
METRIC_DAYS_LEFT = "crdb_tls_cert_days_left"
# No seconds-left metric: it would rewrite the textfile on every run; short-lived
# certificates are watched with crdb_tls_cert_expiry_timestamp_seconds - time().
METRIC_PROBLEMS = "crdb_tls_cert_problems"
TEXTFILE_NAME = "crdb_tls.prom"


def kind_of(file_name):
    """The renewal kind of a certificate file named as in a certs dir, or None for other files."""
    classified = rules.classify(os.path.basename(file_name))
    if classified is None or classified[0] is None:
        return None
    kind, qualifier, _why = classified
    if kind in rules.CA_KINDS:
        return "ca"
    if kind in (rules.KIND_NODE, rules.KIND_TENANT_SIGNING):
        return "node"
    if kind == rules.KIND_CLIENT and qualifier == rules.NODE_USER:
        return "node"
    if kind == rules.KIND_UI:
        return "ui"
    return "client"


def windows(default=None, per_kind=None):
    """``{kind: durations.Window or None}``: ``default`` for every kind, overridden by ``per_kind`` entries.

    A window is a duration (``30d``) or a share of the certificate's own
    lifetime (``33%``), read by :func:`durations.parse_window`. An empty or
    missing ``per_kind`` entry keeps ``default``. An unknown kind or a value
    that is no window is refused, naming it.
    """
    base = durations.parse_window(default, "renew_before")
    out = dict((kind, base) for kind in KINDS)
    for kind, value in sorted((per_kind or {}).items()):
        if kind not in KINDS:
            raise CrdbTlsError("renewal window for %r: not a kind of certificate (kinds: %s)"
                               % (kind, ", ".join(KINDS)))
        if value not in (None, ""):
            out[kind] = durations.parse_window(value, "renewal window for %s" % kind)
    return out


def window_for(kind_windows, file_name):
    """The window of ``file_name``'s kind in ``kind_windows`` (from :func:`windows`), or None.

    ``kind_windows`` may also be one window for every kind.
    """
    if not kind_windows:
        return None
    if not isinstance(kind_windows, dict):
        return durations.parse_window(kind_windows, "renew_before")
    return kind_windows.get(kind_of(file_name))


def check_window(window, lifetime, window_what="renew_before", lifetime_what="lifetime"):
    """Refuse a window that would make every run re-issue a certificate issued for ``lifetime``.

    The one check of a window against a lifetime, for every caller: a fixed
    window as long as the lifetime asked or longer is always open (a
    percentage is checked when parsed: it must stay under 100%). ``window``:
    anything :func:`durations.parse_window` reads; ``lifetime``: a duration.
    Returns the parsed window.
    """
    parsed = durations.parse_window(window, window_what)
    span = durations.parse_duration(lifetime, lifetime_what)
    if parsed is not None and parsed.fixed is not None and span is not None and parsed.fixed >= span:
        raise CrdbTlsError("%s %s is not shorter than %s %s: every run would re-issue the certificate (give a "
                           "shorter window, or a share of the lifetime such as 33%%)"
                           % (window_what, parsed.given or _as_given(window, parsed.text()), lifetime_what,
                              _as_given(lifetime, durations.describe_window(span))))
    return parsed


def _as_given(value, text):
    """An operator's value as they wrote it (``48h``), else ``text``."""
    return value.strip() if isinstance(value, str) and value.strip() else text


def check_leaf_windows(kind_windows, lifetime, what="renewal window for %s"):
    """:func:`check_window` for the leaf kinds (node, client, ui) of ``kind_windows`` against ``lifetime``."""
    for kind in KINDS:
        if kind != "ca" and kind_windows.get(kind) is not None:
            check_window(kind_windows[kind], lifetime, what % kind)
    return kind_windows


def _days(delta):
    return delta.total_seconds() / 86400.0


def _format_window(window, lifetime=None):
    return durations.describe_window(window, lifetime) if window else "none"


def judge(not_after, kind, kind_windows, problems, now, not_before=None, window_now=None):
    """``(status, why)`` of one certificate: its problems first, then its window.

    ``not_before`` gives the certificate's lifetime, which a window given as a
    share of the lifetime (``33%``) needs; without it such a window is not
    applied. ``window_now`` (no later than ``now``) is the instant the window is
    judged at, say the one an issue step judged it at; expiry is judged at ``now``.
    """
    why = list(problems)
    window_now = min(window_now, now) if window_now is not None else now
    expired = not_after is not None and not_after <= now
    if not_after is not None and not expired:
        window = (kind_windows or {}).get(kind)
        lifetime = not_after - not_before if not_before is not None else None
        length = durations.window_length(window, lifetime)
        left = not_after - now
        if length and not_after - window_now <= length:
            text = ("expires on %s (%s left%s), inside its %s %s renewal window"
                    % (not_after.strftime("%Y-%m-%d %H:%M UTC"), durations.format_span(left),
                       " of %s" % durations.format_span(lifetime) if lifetime is not None else "",
                       _format_window(window, lifetime), kind))
            if kind == "ca":
                text += "; %s" % ROTATE_HINT
            why.append(text)
            if not problems:
                return STATUS_DUE, why
    if expired:
        if not any("expired" in p for p in why):
            why.insert(0, "expired on %s" % not_after.strftime("%Y-%m-%d %H:%M UTC"))
        return STATUS_EXPIRED, why
    if problems:
        return STATUS_BROKEN, why
    return STATUS_OK, why


def _row(host, path, kind, usage, not_after, kind_windows, problems, now, extra=None, not_before=None,
         window_now=None):
    status, why = judge(not_after, kind, kind_windows, problems, now, not_before, window_now)
    window = (kind_windows or {}).get(kind)
    lifetime = not_after - not_before if not_after is not None and not_before is not None else None
    length = durations.window_length(window, lifetime)
    left = not_after - now if not_after is not None else None
    row = {
        "host": host,
        "file": path,
        "kind": kind or "",
        "usage": usage,
        "not_before": not_before.isoformat() if not_before is not None else None,
        "not_after": not_after.isoformat() if not_after is not None else None,
        "expiry_timestamp": int(not_after.timestamp()) if not_after is not None else None,
        "days_left": int(left.total_seconds() // 86400) if left is not None else None,
        "seconds_left": int(left.total_seconds()) if left is not None else None,
        "left": durations.format_span(left) if left is not None else None,
        "lifetime_seconds": int(lifetime.total_seconds()) if lifetime is not None else None,
        "window": _format_window(window, lifetime) if window else None,
        "window_days": int(_days(length)) if length else None,
        "window_seconds": int(length.total_seconds()) if length else None,
        "status": status,
        "why": why,
    }
    row.update(extra or {})
    return row


def assess_dir(host, certs_dir, kind_windows, purpose="node", layout=None, process_user=None,
               expected_hosts=None, now=None, identity=None, window_now=None):
    """Rows of one certs dir: one per certificate file, plus one per problem not tied to a certificate.

    ``window_now``: the instant renewal windows are judged at (see ``judge``).
    """
    now = now or pki.utcnow()
    certs_dir = os.path.expanduser(certs_dir)
    report = certsdir.inspect(certs_dir, process_user=process_user, expected_hosts=expected_hosts,
                              layout=layout, purpose=purpose, now=now, identity=identity)
    by_file = {}
    for problem in report["records"]:
        if problem.blocking:
            by_file.setdefault(problem.file, []).append(problem.message)
    rows = []
    for entry in report["entries"]:
        name = entry["file"]
        not_after = _parse_time(entry["not_after"])
        problems = by_file.pop(name, [])
        extra = dict((k, entry[k]) for k in ("serial", "subject", "fingerprint_sha256") if k in entry)
        rows.append(_row(host, os.path.join(certs_dir, name), kind_of(name), entry["usage"], not_after,
                         kind_windows, problems, now, extra, _parse_time(entry.get("not_before")), window_now))
    for name, problems in sorted(by_file.items()):
        path = name if os.path.isabs(name) else os.path.join(certs_dir, name)
        rows.append(_row(host, path, kind_of(name) if not os.path.isabs(name) else None, "", None,
                         kind_windows, problems, now))
    return rows


def shown_as(rows, certs_dir, other_dir):
    """``rows`` of ``certs_dir`` with their files named under ``other_dir`` (the same files, held elsewhere)."""
    prefix = os.path.join(os.path.expanduser(certs_dir), "")
    out = []
    for row in rows:
        row = dict(row)
        if row["file"].startswith(prefix):
            row["file"] = os.path.join(other_dir, row["file"][len(prefix):])
        out.append(row)
    return out


def assess_pki(host, pki_dir, kind_windows, now=None, window_now=None):
    """Rows of the signing CAs kept in a PKI dir on the controller (``ca.signer.pem`` and the like)."""
    now = now or pki.utcnow()
    rows = []
    for role in sorted(rules.CA_ROLES):
        path = authority.paths(pki_dir, role)["signer"]
        if not os.path.exists(path):
            continue
        problems = []
        not_after = not_before = None
        extra = {"ca_role": role}
        try:
            chain = pki.load_certificates(fileio.read_file(path, "CA certificate"), path)
        except CrdbTlsError as exc:
            problems.append(str(exc))
        else:
            # The signer is only as good as the shortest-lived CA above it.
            signer = min(chain, key=pki.not_after)
            not_after, not_before = pki.not_after(signer), pki.not_before(signer)
            for cert in chain:
                problems.extend(p[len(path) + 2:] if p.startswith(path + ": ") else p
                                for p in pki.ca_certificate_problems(cert, path, now))
            extra.update({"subject": chain[0].subject.rfc4514_string(), "serial": pki.serial_hex(chain[0]),
                          "fingerprint_sha256": pki.fingerprint(chain[0])})
        rows.append(_row(host, path, "ca", "CA (signer)", not_after, kind_windows, problems, now, extra, not_before,
                         window_now))
    return rows


def served_check(host, address, cert_file, process_name="cockroach", timeout=10):
    """A row when ``address`` answers (or a process named ``process_name`` runs) but does not serve ``cert_file``.

    Returns ``(row or None, note)``. When nothing answers at ``address`` and
    no such process runs there is nothing to check: a stopped node reads its
    files when it starts.
    """
    # pem, not cryptography: this runs on hosts without it too.
    expected = pem.certificate_fingerprint(fileio.read_host_file(cert_file, "cert_file"), cert_file)
    try:
        seen = reloader.served_fingerprint(address, timeout=min(5.0, max(0.5, float(timeout))))
    except (OSError, ssl.SSLError) as exc:
        if not reloader.find_processes(process_name):
            return None, ("nothing answers at %s (%s) and no %s process runs: the served certificate was not checked"
                          % (address, exc, process_name))
        seen = None
    if seen != expected:
        ok, seen, error = reloader.wait_for_fingerprint(address, expected, timeout)
        if not ok:
            why = ("%s serves %s, not %s (sha256 %s): the running process did not reload it"
                   % (address, "sha256 %s" % seen if seen else "nothing (%s)" % error, cert_file, expected))
            return {"host": host, "file": cert_file, "kind": kind_of(cert_file) or "", "usage": "served",
                    "not_after": None, "expiry_timestamp": None, "days_left": None, "window_days": None,
                    "status": STATUS_BROKEN, "why": [why]}, why
    return None, "%s serves %s (sha256 %s)" % (address, cert_file, expected)


def _parse_time(value):
    if not value:
        return None
    return datetime.datetime.fromisoformat(value)


def problems_of(rows):
    """``host file: why`` for every row that is not ok."""
    return ["%s %s: %s (%s)" % (r["host"], r["file"], "; ".join(r["why"]), r["status"])
            for r in rows if r["status"] != STATUS_OK]


def summary(rows):
    counts = dict((s, 0) for s in STATUSES)
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


def format_table(rows):
    """The rows as a fixed-width table, worst first within each host."""
    header = ["Host", "File", "Kind", "Expires", "Left", "Window", "Status", "Why"]
    order = dict((s, i) for i, s in enumerate((STATUS_EXPIRED, STATUS_BROKEN, STATUS_DUE, STATUS_OK)))
    body = []
    for row in sorted(rows, key=lambda r: (r["host"], order.get(r["status"], 0), r["file"])):
        body.append([row["host"], row["file"], row["kind"],
                     row["not_after"][:16].replace("T", " ") if row["not_after"] else "-",
                     row.get("left") or "-",
                     row.get("window") or "-",
                     row["status"].upper() if row["status"] != STATUS_OK else "ok",
                     "; ".join(row["why"])])
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header) - 1)]

    def fmt(cells):
        return (" | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " | " + cells[-1]).rstrip()
    lines = [fmt(header), "-+-".join("-" * w for w in widths) + "-+-" + "-" * 3]
    lines.extend(fmt(r) for r in body)
    counts = summary(rows)
    lines.append("(%d certificates: %s)" % (len(rows), ", ".join("%d %s" % (counts[s], s) for s in STATUSES)))
    return "\n".join(lines)


def report(rows, now=None):
    """The JSON document of a fleet's rows."""
    now = now or pki.utcnow()
    return {
        "generated_at": now.isoformat(),
        "ok": all(r["status"] == STATUS_OK for r in rows),
        "summary": summary(rows),
        "problems": problems_of(rows),
        "certificates": sorted(rows, key=lambda r: (r["host"], r["file"])),
    }


def _label(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def prometheus_text(rows):
    """node_exporter textfile-collector content for ``rows`` (one sample per certificate and metric)."""
    metrics = (
        (METRIC_EXPIRY, "Expiry (notAfter) of the certificate, Unix time.", "expiry_timestamp"),
        (METRIC_DAYS_LEFT, "Whole days until the certificate expires (negative once expired).", "days_left"),
        (METRIC_PROBLEMS, "Problems of the certificate file, its renewal window included (0 when all is well).",
         None),
    )
    lines = []
    ordered = sorted(rows, key=lambda r: (r["host"], r["file"]))
    for name, help_text, field in metrics:
        lines.append("# HELP %s %s" % (name, help_text))
        lines.append("# TYPE %s gauge" % name)
        for row in ordered:
            value = len(row["why"]) if field is None else row.get(field)
            if value is None:
                continue
            lines.append('%s{host="%s",file="%s",kind="%s"} %d'
                         % (name, _label(row["host"]), _label(row["file"]), _label(row["kind"]), value))
    return ("\n".join(lines) + "\n").encode("utf-8")


def write_textfile(directory, rows, name=TEXTFILE_NAME, check_mode=False):
    """Atomically (re)write ``directory/name`` for node_exporter; returns ``(changed, path)``.

    The temporary file does not end in ``.prom``, so the collector never reads
    a half-written file.
    """
    if not name.endswith(".prom") or "/" in name:
        raise CrdbTlsError("textfile name %r must be a file name ending in .prom (node_exporter reads only those)"
                           % (name,))
    fileio.require_dir(directory, "textfile directory")
    path = os.path.join(directory, name)
    data = prometheus_text(rows)
    if fileio.read_optional(path) == data:
        return False, path
    if not check_mode:
        fileio.atomic_write(path, data, 0o644)
    return True, path


def failed_host_row(host, message):
    """A row for a host whose check could not run (unreachable, no cryptography...)."""
    return {"host": host, "file": "-", "kind": "", "usage": "", "not_after": None, "expiry_timestamp": None,
            "days_left": None, "window_days": None, "status": STATUS_BROKEN,
            "why": ["the check could not run: %s" % (message or "no reason given")]}


def write_report(path, document, check_mode=False):
    """Write the JSON ``document`` atomically to ``path`` (mode 0644); returns True."""
    data = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")
    if not check_mode:
        fileio.atomic_write(path, data, 0o644)
    return True
