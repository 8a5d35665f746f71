# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The record of every certificate a CA issued, in OpenSSL's ``index.txt`` format.

One line per certificate: status (V valid, R revoked, E expired), expiry,
revocation date, serial (hex), file name (``unknown``) and subject, separated
by tabs. ``openssl ocsp -index`` and ``openssl ca`` read the same file, so
revocation and an OCSP responder build on it. Updates hold an exclusive lock
on ``index.txt.lock`` and replace the file atomically, so concurrent runs on
one controller cannot lose a line.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import re

from ansible_collections.crdb.tls.plugins.module_utils import fileio
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

INDEX_NAME = "index.txt"


def _openssl_time(moment):
    # RFC 5280: UTCTime up to 2049, GeneralizedTime from 2050 on (as OpenSSL writes it).
    if moment.year < 2050:
        return moment.strftime("%y%m%d%H%M%SZ")
    return moment.strftime("%Y%m%d%H%M%SZ")


def openssl_subject(name):
    """``/O=Cockroach/CN=node``: the one-line subject form OpenSSL's index uses."""
    parts = []
    for attribute in name:
        label = attribute.rfc4514_attribute_name
        value = str(attribute.value).replace("/", "\\/")
        parts.append("%s=%s" % (label, value))
    return "/" + "/".join(parts)


def entry_for(certificate):
    from ansible_collections.crdb.tls.plugins.module_utils import pki
    return ["V", _openssl_time(pki.not_after(certificate)), "", pki.serial_hex(certificate),
            "unknown", openssl_subject(certificate.subject)]


def _locked(index_path):
    return fileio.flocked(index_path + ".lock", create=True)


def read_index(index_path):
    data = fileio.read_optional(index_path)
    if not data:
        return []
    return [line.split("\t") for line in data.decode("utf-8").splitlines() if line.strip()]


def _write_index(index_path, rows):
    body = "".join("\t".join(row) + "\n" for row in rows).encode("utf-8")
    fileio.atomic_write(index_path, body, 0o644)
    attr = index_path + ".attr"
    if not os.path.exists(attr):
        fileio.atomic_write(attr, b"unique_subject = no\n", 0o644)


def record(index_path, certificates):
    """Add issued certificates to the index (a serial already there is left alone)."""
    with _locked(index_path):
        rows = read_index(index_path)
        known = set(row[3].upper() for row in rows if len(row) > 3)
        added = 0
        for certificate in certificates:
            row = entry_for(certificate)
            if row[3] not in known:
                rows.append(row)
                known.add(row[3])
                added += 1
        if added:
            _write_index(index_path, rows)
        return added


# --------------------------------------------------------------------------
# Revocation
# --------------------------------------------------------------------------

# The CRL reason names ``openssl ca -crl_reason`` writes into the index (and
# ``openssl ocsp`` reads back). removeFromCRL (delta CRLs only) and the
# holdInstruction/keyTime/CAkeyTime forms, which need an extra field, are
# left out.
REVOCATION_REASONS = ("unspecified", "keyCompromise", "CACompromise", "affiliationChanged",
                      "superseded", "cessationOfOperation", "certificateHold")
STATUS_NAMES = {"V": "valid", "R": "revoked", "E": "expired"}


def canonical_reason(reason):
    """``reason`` spelt as OpenSSL spells it (matched without regard to case)."""
    for known in REVOCATION_REASONS:
        if isinstance(reason, str) and reason.lower() == known.lower():
            return known
    raise CrdbTlsError("revocation reason %r is not one OpenSSL knows (use one of: %s)"
                       % (reason, ", ".join(REVOCATION_REASONS)))


def canonical_serial(serial):
    """A serial as the index writes it (upper-case hex, even length); ``0x``, colons and case are accepted."""
    text = serial if isinstance(serial, str) else ""
    if isinstance(serial, int) and not isinstance(serial, bool):
        text = "%X" % serial
    text = text.strip().replace(":", "")
    if text[:2].lower() == "0x":
        text = text[2:]
    if not text or not all(c in "0123456789abcdefABCDEF" for c in text) or int(text, 16) <= 0:
        raise CrdbTlsError("serial %r is not a positive hexadecimal certificate serial number "
                           "(example: 3F1A09C2...)" % (serial,))
    text = "%X" % int(text, 16)
    return text if len(text) % 2 == 0 else "0" + text


def _parse_time(text):
    """An index date (``YYMMDDHHMMSSZ`` or ``YYYYMMDDHHMMSSZ``) as an aware datetime, or None."""
    if not text:
        return None
    try:
        if len(text) == 13:
            moment = datetime.datetime.strptime(text, "%y%m%d%H%M%SZ")
            if moment.year >= 2050:  # RFC 5280: UTCTime years 50-99 are 19xx
                moment = moment.replace(year=moment.year - 100)
        else:
            moment = datetime.datetime.strptime(text, "%Y%m%d%H%M%SZ")
    except ValueError:
        return None
    return moment.replace(tzinfo=datetime.timezone.utc)


def subject_common_name(subject):
    """The last ``CN=`` of a one-line OpenSSL subject (``/O=Cockroach/CN=root`` gives ``root``)."""
    parts = re.split(r"(?<!\\)/", subject)
    names = [p[3:].replace("\\/", "/") for p in parts if p.startswith("CN=")]
    return names[-1] if names else None


def row_dict(row):
    """One index row as a dict (status, serial, subject, dates, reason)."""
    row = list(row) + [""] * (6 - len(row))
    revocation, _comma, reason = row[2].partition(",")
    expires = _parse_time(row[1])
    revoked = _parse_time(revocation)
    return {
        "status": STATUS_NAMES.get(row[0], row[0]),
        "serial": row[3],
        "subject": row[5],
        "common_name": subject_common_name(row[5]),
        "not_after": expires.isoformat() if expires else row[1],
        "revoked_on": revoked.isoformat() if revoked else (revocation or None),
        "reason": (reason or "unspecified") if row[0] == "R" else None,
    }


def status(index_path):
    """Every row of the index as :func:`row_dict` dicts (empty when there is no index yet)."""
    return [row_dict(row) for row in read_index(index_path)]


def revoked_serials(index_path):
    """Canonical serials of the rows marked revoked (an empty set when there is no index yet)."""
    serials = set()
    for row in read_index(index_path):
        if len(row) > 3 and row[0] == "R":
            try:
                serials.add(canonical_serial(row[3]))
            except CrdbTlsError:
                continue
    return serials


def is_revoked(certificate, revoked):
    """True when ``certificate``'s serial is in ``revoked`` (a set from :func:`revoked_serials`)."""
    if not revoked:
        return False
    from ansible_collections.crdb.tls.plugins.module_utils import pki
    return canonical_serial(pki.serial_hex(certificate)) in revoked


def revoke(index_path, serial=None, subject_cn=None, reason="unspecified", now=None, check_mode=False):
    """Mark the valid rows of ``serial`` (or of common name ``subject_cn``) revoked.

    Writes OpenSSL's revocation field, ``YYMMDDHHMMSSZ`` followed by
    ``,reason`` unless the reason is ``unspecified`` (as ``openssl ca
    -revoke`` does), under the index lock. Rows already revoked are left
    alone, so a second call changes nothing. Returns the changed rows as
    :func:`row_dict` dicts (what would change, with ``check_mode``). Raises
    CrdbTlsError when no row of the index matches at all.
    """
    if (serial is None) == (subject_cn is None):
        raise CrdbTlsError("revoke needs exactly one of serial or subject_cn")
    reason = canonical_reason(reason)
    if not os.path.exists(index_path):
        raise CrdbTlsError("%s does not exist: this CA has not recorded any certificate, so there is "
                           "nothing to revoke" % index_path)
    wanted_serial = canonical_serial(serial) if serial is not None else None
    now = now or datetime.datetime.now(datetime.timezone.utc)
    field = _openssl_time(now) + ("" if reason == "unspecified" else "," + reason)
    with _locked(index_path):
        rows = read_index(index_path)
        matched, changed = 0, []
        for row in rows:
            if len(row) < 6:
                continue
            if wanted_serial is not None:
                try:
                    hit = canonical_serial(row[3]) == wanted_serial
                except CrdbTlsError:
                    hit = False
            else:
                hit = subject_common_name(row[5]) == subject_cn
            if not hit:
                continue
            matched += 1
            if row[0] == "V":
                row[0], row[2] = "R", field
                changed.append(row_dict(row))
        if not matched:
            what = "serial %s" % wanted_serial if wanted_serial is not None else "common name %r" % (subject_cn,)
            raise CrdbTlsError("no certificate with %s in %s (%d certificates recorded): nothing to revoke"
                               % (what, index_path, len(rows)))
        if changed and not check_mode:
            _write_index(index_path, rows)
        return changed
