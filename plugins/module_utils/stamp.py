# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A record that a controller-side set of files passed the install check.

``crdb.tls.install`` checks a set's content on the controller before it ships
it (:func:`certsdir.install_problems`). That check needs ``cryptography``,
whose import costs more than the check itself in each forked Ansible worker.
A set that passed is recorded in ``.crdb-tls-validated.json`` beside its
files: the SHA-256 of every file, the check's parameters and the window in
which every certificate of the set is valid. While all of those still hold,
the check's answer cannot differ, so the action plugin skips it.

This file needs no ``cryptography``: it is read in every install's worker.
The record lives in the controller's private PKI dir, like the CA key; who
can write it can sign certificates anyway.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import time

from ansible_collections.crdb.tls.plugins.module_utils import fileio
from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

STAMP_NAME = ".crdb-tls-validated.json"
FORMAT = 1


def _params(expected_hosts, expected_ui_hosts, layout, purpose):
    return {
        "expected_hosts": sorted(expected_hosts or []),
        "expected_ui_hosts": sorted(expected_ui_hosts or []),
        "layout": layout,
        "purpose": purpose or "node",
    }


def shipped_names(src):
    """The files of a controller-side set: regular files not starting with a dot, sorted."""
    return sorted(n for n in os.listdir(src) if not n.startswith(".") and os.path.isfile(os.path.join(src, n)))


def digests(src, names):
    """``{name: sha256 hex}`` of ``names`` in ``src``."""
    out = {}
    for name in names:
        out[name] = hashlib.sha256(fileio.read_file(os.path.join(src, name))).hexdigest()
    return out


def matches(src, names, expected_hosts=None, expected_ui_hosts=None, layout=None, purpose="node", now=None):
    """True when ``src`` holds a record of exactly these files and parameters, still in its window."""
    try:
        with open(os.path.join(src, STAMP_NAME)) as handle:
            record = json.load(handle)
    except (IOError, OSError, ValueError):
        return False
    now = time.time() if now is None else now
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return False
    if record.get("params") != _params(expected_hosts, expected_ui_hosts, layout, purpose):
        return False
    if not record.get("valid_from", now + 1) <= now < record.get("valid_until", now):
        return False
    try:
        return record.get("files") == digests(src, names)
    except Exception:  # pylint: disable=broad-except
        # A file vanished or became unreadable: not the set that was checked.
        return False


def write(src, names, valid_from, valid_until, expected_hosts=None, expected_ui_hosts=None, layout=None,
          purpose="node"):
    """Record that ``names`` in ``src`` passed the check with these parameters (epoch seconds window).

    Best effort: a record that cannot be written (a read-only ``src``) only
    means the next install checks the set again. Returns whether it was written.
    """
    record = {
        "format": FORMAT,
        "files": digests(src, names),
        "params": _params(expected_hosts, expected_ui_hosts, layout, purpose),
        "valid_from": valid_from,
        "valid_until": valid_until,
    }
    try:
        fileio.atomic_write(os.path.join(src, STAMP_NAME), json.dumps(record, sort_keys=True).encode("utf-8"), 0o600)
    except (IOError, OSError, CrdbTlsError):
        return False
    return True
