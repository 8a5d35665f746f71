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
            src = self._loader.path_dwim(src)
            args["certificates"], args["keys"] = self._read_src(src, names)
            if args.get("validate", True):
                self._validate_on_controller(src, names, args)
        result.update(self._execute_module(module_name="crdb.tls.install", module_args=args,
                                           task_vars=task_vars))
        return result

    @staticmethod
    def _validate_on_controller(src, names, args):
        """Check the certificates' content here, where cryptography is sure to be.

        The node checks the set again with its real owners and the files it
        already has; without python3-cryptography it can only check names,
        layout and key permissions, so the content check must happen here.
        """
        try:
            from ansible_collections.crdb.tls.plugins.module_utils import certsdir, pki
            from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError
        except ImportError as exc:  # pragma: no cover
            raise AnsibleActionFail("cannot load the crdb.tls validator on the controller: %s" % exc)
        if not pki.HAS_CRYPTOGRAPHY:
            raise AnsibleActionFail("the controller needs the Python cryptography library (pip install cryptography)")
        chosen = None if names is None else set(names)
        try:
            # A client dir needs only ca.crt of its layout, so a chosen subset keeps it (split_ca: the
            # client CA is not in a client dir, and client certificates cannot be verified there).
            purpose = args.get("purpose") or "node"
            report = certsdir.inspect(src, expected_hosts=args.get("expected_hosts"),
                                      expected_ui_hosts=args.get("expected_ui_hosts"),
                                      layout=args.get("layout") if chosen is None or purpose == "client" else None,
                                      purpose=purpose, trusted_keys=True, permissions=False)
        except CrdbTlsError as exc:
            raise AnsibleActionFail(str(exc))
        on_host = ActionModule._keys_on_host(src, names)
        problems = [p for p in report["problems"]
                    if (chosen is None or p.split(":", 1)[0] in chosen) and "in the certs dir to verify it" not in p
                    and p not in on_host]
        if problems:
            raise AnsibleActionFail("refusing to send %s: the set would not work: %s" % (src, "; ".join(problems)))

    @staticmethod
    def _keys_on_host(src, names):
        """The controller's complaints about keys a certs-only set leaves on the host (keys made on the node).

        The host checks each such certificate against its own key before anything is written.
        """
        present = set(n for n in os.listdir(src) if os.path.isfile(os.path.join(src, n)))
        chosen = present if names is None else set(names)
        out = set()
        for name in chosen:
            if name.endswith(".crt") and not name.startswith("ca"):
                key = name[:-len(".crt")] + ".key"
                if key not in chosen:
                    out.add("%s: key %s is missing" % (name, key))
        return out

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
