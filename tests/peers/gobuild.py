# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The test-only Go programs of tests/go, built once per test session into build/go/bin."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import subprocess

import pytest

from peerlib import ROOT

BUILD_SCRIPT = os.path.join(ROOT, "tests", "go", "build.sh")
GO_BIN_DIR = os.path.join(ROOT, "build", "go", "bin")
_built = []


def go_bin_dir():
    """build/go/bin with crdb-peer and cockroach, (re)built from tests/go the first time in a session."""
    if not _built:
        if shutil.which("go") is None:
            pytest.fail("no `go` on PATH: the Go peer and stand-in need Debian's golang-go "
                        "(tests/scripts/prepare-host.sh)")
        proc = subprocess.run(["bash", BUILD_SCRIPT, GO_BIN_DIR], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=600, check=False)
        assert proc.returncode == 0, "tests/go/build.sh failed:\n%s" % proc.stdout.decode("utf-8", "replace")
        _built.append(GO_BIN_DIR)
    return _built[0]
