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

import contextlib
import fcntl
import os

from ansible_collections.crdb.tls.plugins.module_utils import fileio

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


@contextlib.contextmanager
def _locked(index_path):
    fd = os.open(index_path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


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


def index_path_for(ca_dir):
    return os.path.join(ca_dir, INDEX_NAME)
