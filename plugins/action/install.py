# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action side of crdb.tls.install: read a controller dir, ship it in one module call."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import os

from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

from ansible_collections.crdb.tls.plugins.module_utils import stamp

SECRET_SUFFIXES = (".key", ".key.pk8")


class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        src = args.pop("src", None)
        names = args.pop("files", None)
        # Only this plugin can vouch for the content it checked.
        args["content_checked"] = False
        if src is not None:
            if args.get("certificates") or args.get("keys"):
                raise AnsibleActionFail("src and certificates/keys exclude each other")
            src = self._loader.path_dwim(src)
            args["certificates"], args["keys"] = self._read_src(src, names)
            if boolean(args.get("validate", True), strict=False):
                self._validate_on_controller(src, names, args)
                args["content_checked"] = True
        result.update(self._execute_module(module_name="crdb.tls.install", module_args=args,
                                           task_vars=task_vars))
        return result

    def _validate_on_controller(self, src, names, args):
        """Check the certificates' content here, where cryptography is sure to be.

        The node checks the set again with its real owners and the files it
        already has; without python3-cryptography it can only check names,
        layout and key permissions, so the content check must happen here.
        A set that passed before with the same bytes and parameters (and is
        still inside its validity window) is not checked again: see stamp.py.
        """
        params = dict(expected_hosts=args.get("expected_hosts"), expected_ui_hosts=args.get("expected_ui_hosts"),
                      layout=args.get("layout"), purpose=args.get("purpose") or "node")
        shipped = names if names is not None else stamp.shipped_names(src)
        if stamp.matches(src, shipped, **params):
            return
        try:
            from ansible_collections.crdb.tls.plugins.module_utils import certsdir, pki
            from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError
        except ImportError as exc:  # pragma: no cover
            raise AnsibleActionFail("cannot load the crdb.tls validator on the controller: %s" % exc)
        if not pki.HAS_CRYPTOGRAPHY:
            raise AnsibleActionFail("the controller needs the Python cryptography library (pip install cryptography)")
        try:
            problems = certsdir.install_problems(src, names, record=not self._task.check_mode, **params)
        except CrdbTlsError as exc:
            raise AnsibleActionFail(str(exc))
        if problems:
            raise AnsibleActionFail("refusing to send %s: the set would not work: %s" % (src, "; ".join(problems)))

    @staticmethod
    def _read_src(src, names):
        if not os.path.isdir(src):
            raise AnsibleActionFail("src %s is not a directory on the controller" % src)
        available = stamp.shipped_names(src)
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
