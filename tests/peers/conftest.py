# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures of the real-peer tests (test_real_peers.py).

``peer_certs`` issues every certificate once per session through
``ansible-playbook tests/peers/playbooks/issue_layouts.yml`` with the
collection (ANSIBLE_COLLECTIONS_PATH when set, else build/src, the working
tree). Every process a test starts is registered with ``processes`` and
killed in teardown; every wait is bounded.
"""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLAYBOOK = os.path.join(ROOT, "tests", "peers", "playbooks", "issue_layouts.yml")
SRC_COLLECTIONS = os.path.join(ROOT, "build", "src")
SRC_LINK = os.path.join(SRC_COLLECTIONS, "ansible_collections", "crdb", "tls")

PLAYBOOK_TIMEOUT = 300


def _collections_path():
    path = os.environ.get("ANSIBLE_COLLECTIONS_PATH")
    if path:
        # ansible-playbook runs in another directory: make relative entries absolute.
        return os.pathsep.join(os.path.abspath(p) for p in path.split(os.pathsep) if p)
    if not os.path.exists(SRC_LINK):
        os.makedirs(os.path.dirname(SRC_LINK), exist_ok=True)
        os.symlink(ROOT, SRC_LINK)
    return SRC_COLLECTIONS


def _ansible_playbook():
    beside = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    return beside if os.access(beside, os.X_OK) else shutil.which("ansible-playbook")


@pytest.fixture(scope="session")
def peer_certs(tmp_path_factory):
    """Root of the certificates issued by issue_layouts.yml (see its header for the tree)."""
    playbook_bin = _ansible_playbook()
    assert playbook_bin, "ansible-playbook is not installed (make venv)"
    out = tmp_path_factory.mktemp("peer-certs")
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": _collections_path(),
        "ANSIBLE_FORKS": "10",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_LOCALHOST_WARNING": "0",
    })
    cmd = [playbook_bin, "-i", "localhost,", PLAYBOOK, "-e", "peers_out=%s" % out]
    proc = subprocess.run(cmd, env=env, cwd=str(out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=PLAYBOOK_TIMEOUT, check=False)
    output = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, "issue_layouts.yml failed (rc %d):\n%s" % (proc.returncode, output[-6000:])
    return str(out)


@pytest.fixture
def processes():
    """Register started processes here; they are killed (and reaped) in teardown."""
    started = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
