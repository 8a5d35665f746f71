# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action side of crdb.tls.install: read a controller dir, ship it in one module call."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import os

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

SECRET_SUFFIXES = (".key", ".key.pk8")


class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        src = args.pop("src", None)
        names = args.pop("files", None)
        if src is not None:
            if args.get("certificates") or args.get("keys"):
                raise AnsibleActionFail("src and certificates/keys exclude each other")
            args["certificates"], args["keys"] = self._read_src(self._loader.path_dwim(src), names)
        result.update(self._execute_module(module_name="crdb.tls.install", module_args=args,
                                           task_vars=task_vars))
        return result

    @staticmethod
    def _read_src(src, names):
        if not os.path.isdir(src):
            raise AnsibleActionFail("src %s is not a directory on the controller" % src)
        available = sorted(n for n in os.listdir(src)
                           if not n.startswith(".") and os.path.isfile(os.path.join(src, n)))
        if names is None:
            names = available
        missing = [n for n in names if n not in available]
        if missing:
            raise AnsibleActionFail("src %s lacks %s" % (src, ", ".join(missing)))
        certificates, keys = {}, {}
        for name in names:
            with open(os.path.join(src, name), "rb") as handle:
                data = base64.b64encode(handle.read()).decode("ascii")
            if name.endswith(SECRET_SUFFIXES):
                keys[name] = data
            else:
                certificates[name] = data
        return certificates, keys
