# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the real-peer tests share: paths, the Ansible tools, a certificate's fingerprint, polling."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import shutil
import ssl
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# build/src/ansible_collections/crdb/tls -> the working tree (make src-link).
SRC_COLLECTIONS = os.path.join(ROOT, "build", "src")
SRC_LINK = os.path.join(SRC_COLLECTIONS, "ansible_collections", "crdb", "tls")
OPENSSL = shutil.which("openssl")


def collections_path():
    """ANSIBLE_COLLECTIONS_PATH for a playbook run: the caller's (made absolute), else the working tree."""
    path = os.environ.get("ANSIBLE_COLLECTIONS_PATH")
    if path:
        # ansible-playbook runs in another directory: make relative entries absolute.
        return os.pathsep.join(os.path.abspath(os.path.join(ROOT, p)) for p in path.split(os.pathsep) if p)
    if not os.path.exists(SRC_LINK):
        os.makedirs(os.path.dirname(SRC_LINK), exist_ok=True)
        os.symlink(ROOT, SRC_LINK)
    return SRC_COLLECTIONS


def ansible_tool(tool="ansible-playbook"):
    """The path of an Ansible command: beside this Python first (the venv), else on PATH; skips when absent."""
    beside = os.path.join(os.path.dirname(sys.executable), tool)
    found = beside if os.access(beside, os.X_OK) else shutil.which(tool)
    if not found:
        pytest.skip("%s is not installed (make venv)" % tool)
    return found


def fingerprint(path):
    """SHA-256 of the first certificate of a PEM file, as the stand-in reports what it serves."""
    with open(path) as handle:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(handle.read())).hexdigest()


def wait_for(what, predicate, timeout=10.0, interval=0.05):
    """``predicate()``'s first true value; fails naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(interval)
