# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jinja test ``crdb.tls.private_dir``: the controller path is a directory of mode 0700."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import stat


def private_dir(path):
    """True when ``path`` (absolute, on the controller) is a directory of mode 0700.

    Lets the node role skip a module call that would change nothing; any
    other case (missing, relative, another mode) returns False and the caller
    runs its ``ansible.builtin.file`` task as before.
    """
    if not isinstance(path, str) or not path:
        return False
    path = os.path.expanduser(path)
    if not os.path.isabs(path):
        return False
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700


class TestModule(object):

    def tests(self):
        return {"private_dir": private_dir}
