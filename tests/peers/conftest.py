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
import subprocess

import pytest
from peerlib import ROOT, ansible_tool, collections_path

PLAYBOOK = os.path.join(ROOT, "tests", "peers", "playbooks", "issue_layouts.yml")

PLAYBOOK_TIMEOUT = 300


@pytest.fixture(scope="session")
def peer_certs(tmp_path_factory):
    """Root of the certificates issued by issue_layouts.yml (see its header for the tree)."""
    playbook_bin = ansible_tool()
    out = tmp_path_factory.mktemp("peer-certs")
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": collections_path(),
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
