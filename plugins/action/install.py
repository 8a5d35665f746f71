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

from ansible_collections.crdb.tls.plugins.module_utils import rules, stamp

SECRET_SUFFIXES = (".key", ".key.pk8")


class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        src = args.pop("src", None)
        names = args.pop("files", None)
        planned = args.pop("planned", None)
        if planned is not None and (isinstance(planned, str) or not isinstance(planned, (list, tuple))):
            raise AnsibleActionFail("planned must be a list of file names, got %r" % (planned,))
        # Only in check mode: the issue step did not write what it would issue.
        planned = sorted(set(planned)) if planned and self._task.check_mode else []
        # Only this plugin can vouch for the content it checked.
        args["content_checked"] = False
        if src is not None:
            if args.get("certificates") or args.get("keys"):
                raise AnsibleActionFail("src and certificates/keys exclude each other")
            src = self._loader.path_dwim(src)
            if names is not None:
                planned = [n for n in planned if n in names]
            if planned:
                # What src holds now is not what the run would ship: ship the rest, report these.
                available = stamp.shipped_names(src) if os.path.isdir(src) else []
                ship = [n for n in (available if names is None else names) if n in available and n not in planned]
                args["certificates"], args["keys"] = self._read_src(src, ship) if ship else ({}, {})
            else:
                args["certificates"], args["keys"] = self._read_src(src, names)
            self._refuse_node_identity(args, planned, src)
            if boolean(args.get("validate", True), strict=False) and not planned:
                self._validate_on_controller(src, names, args)
                args["content_checked"] = True
        # With nothing to ship (check mode, first deploy) the module still checks the host: owner, dest.
        module_result = self._execute_module(module_name="crdb.tls.install", module_args=args, task_vars=task_vars)
        if planned and not module_result.get("failed"):
            module_result = self._merge_planned(module_result, planned)
        if self._task.diff and module_result.get("changed") and not module_result.get("failed"):
            module_result["diff"] = self._diff(module_result, planned)
        result.update(module_result)
        return result

    @staticmethod
    def _refuse_node_identity(args, planned, src):
        """A client's certs dir never receives the node identity (node.*, client.node.*), whatever src holds."""
        if (args.get("purpose") or "node") != "client":
            return
        wrong = sorted(n for n in list(args["certificates"]) + list(args["keys"]) + list(planned)
                       if rules.is_node_identity_file(n))
        if wrong:
            raise AnsibleActionFail("refusing to install %s from %s on a client host: they carry CockroachDB's "
                                    "node identity, which stays on the nodes" % (", ".join(wrong), src))

    @staticmethod
    def _merge_planned(module_result, planned):
        """Check mode: the files the issue step would write count as changed, with why."""
        out = dict(module_result)
        changed_files = list(out.get("changed_files") or [])
        reasons = list(out.get("reasons") or [])
        for name in planned:
            if name not in changed_files:
                changed_files.append(name)
            reasons.append("%s would be issued or re-issued on the controller first (check mode: compared with "
                           "what crdb.tls.issue_fleet plans, not with what is there now)" % name)
        out.update(changed=True, changed_files=changed_files, reasons=reasons)
        return out

    @staticmethod
    def _diff(module_result, planned):
        """One diff for the certs dir: which files change and why (names and fingerprints, no key material)."""
        dest = module_result.get("dest") or ""
        fingerprints = module_result.get("fingerprints") or {}
        reasons = module_result.get("reasons") or []
        before, after = [], []
        made = "certs dir %s created" % dest in reasons
        for name in module_result.get("changed_files") or []:
            mine = [r for r in reasons if r.startswith(name + " ") or r.startswith(name + ":")]
            missing = made or any(r.startswith(name + " is missing") for r in mine)
            before.append("%s: %s" % (name, "absent" if missing else "as on the host now"))
            if name in planned:
                after.append("%s: as crdb.tls.issue_fleet would issue it" % name)
            elif name in fingerprints:
                after.append("%s: sha256 %s" % (name, fingerprints[name][:16]))
            else:
                after.append("%s: %s" % (name, "; ".join(r.split(":", 1)[-1].strip() for r in mine) or "changed"))
        after.extend("# %s" % r for r in reasons if not any(r.startswith(n) for n in planned))
        return {"before_header": dest, "after_header": dest,
                "before": "\n".join(before) + "\n", "after": "\n".join(after) + "\n"}

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
