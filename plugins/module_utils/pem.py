# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PEM framing without cryptography: block splitting and certificate fingerprints.

Kept free of the ``cryptography`` import so that a module that finds nothing
to change (an idempotent install) never pays for loading it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import hashlib
import re

from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)


def blocks(data):
    """``[(label, whole_block_bytes)]`` of every PEM block in ``data``."""
    return [(m.group(1).decode("ascii"), m.group(0)) for m in _PEM_BLOCK.finditer(data)]


def certificate_fingerprint(data, source):
    """SHA-256 (lower-case hex) of the DER of the first certificate in PEM ``data``."""
    for label, block in blocks(data):
        if label != "CERTIFICATE":
            break
        body = b"".join(line for line in block.splitlines() if not line.startswith(b"-----"))
        try:
            return hashlib.sha256(base64.b64decode(body, validate=True)).hexdigest()
        except (binascii.Error, ValueError):
            break
    raise CrdbTlsError("%s: not a PEM certificate file (the first block must be a valid CERTIFICATE)" % source)
