# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Starting processes on the controller: external signer commands.

The controller-only modules (``crdb.tls.issue_fleet`` and the others run by
:mod:`controller_module`) run in the task's worker process on the
controller, never on a node, so a signer command is a child of that process,
like a lookup plugin's. Modules and module_utils must use
``AnsibleModule.run_command``, which has no timeout and no process group;
the signer needs both (a hung CA client is killed, with its children). So the
process handling lives here, in controller code, and
``module_utils/signer.py`` is handed it (:func:`register`); it never starts
a process itself.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import signal
import subprocess

from ansible_collections.crdb.tls.plugins.module_utils import signer


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()


def run_with_input(argv, data, env, timeout):
    """Run ``argv`` (no shell, own session and process group) with ``data`` on stdin.

    Returns ``(returncode, stdout, stderr, timed_out)``; after ``timeout``
    seconds the whole process group is killed (``timed_out`` true). Raises
    OSError when the command cannot be started.
    """
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, start_new_session=True, close_fds=True)
    try:
        stdout, stderr = proc.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        stdout, stderr = proc.communicate()
        return proc.returncode, stdout, stderr, True
    return proc.returncode, stdout, stderr, False


def register():
    """Give :mod:`signer` this process runner (idempotent)."""
    signer.set_command_runner(run_with_input)


register()
