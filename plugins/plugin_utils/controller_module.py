# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a controller-only crdb.tls module inside its action plugin.

The modules that read a CA key or the CA's ledger (``crdb.tls.ca``,
``issue_fleet``, ``certificate``, ``ocsp_responder_cert``, ``revoke``) only
ever act on the controller, where those stay. Shipping them as modules to
``localhost`` costs, for every call, building the AnsiballZ payload, starting
a Python and importing cryptography again; for ``ca`` and ``issue_fleet``,
once per play, that was most of a fleet run's fixed cost. Their action plugins run the module's own ``run`` function here, in the
task's worker process, with the module's own argument spec, so validation,
defaults, ``no_log`` masking, check mode and diff mode behave as they would in
``AnsibleModule``. A task that targets a host over any connection but
``local`` is refused: the module would otherwise act on the controller
while the play author meant that host. So is ``become`` to another user: the
module runs as the user running Ansible, never through sudo.

A module run here provides, at module level:

``ARGUMENT_SPEC``
    the ``argument_spec`` dict;
``SPEC_OPTIONS``
    the other ``AnsibleModule`` keywords among ``mutually_exclusive``,
    ``required_together``, ``required_one_of``, ``required_if`` and
    ``required_by``;
``run(module)``
    the function its ``main()`` hands to ``module_support.run``;
``NEEDS_CRYPTOGRAPHY`` (optional, default true)
    what its ``main()`` passes as ``needs_cryptography``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import pwd

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.errors import UnsupportedError
from ansible.plugins.action import ActionBase

from ansible_collections.crdb.tls.plugins.module_utils import module_support
from ansible_collections.crdb.tls.plugins.plugin_utils import commands

LOCAL_TRANSPORTS = ("local", "ansible.builtin.local")


class _Done(Exception):
    """``exit_json`` or ``fail_json`` was called: carries the result."""

    def __init__(self, result):
        super(_Done, self).__init__("module finished")
        self.result = result


class ControllerModule:
    """The part of ``AnsibleModule`` the crdb.tls module functions use."""

    def __init__(self, params, check_mode, diff):
        self.params = params
        self.check_mode = check_mode
        self._diff = diff
        self.warnings = []

    def warn(self, warning):
        self.warnings.append(warning)

    def fail_json(self, msg, **kwargs):
        kwargs.update(failed=True, msg=msg)
        raise _Done(kwargs)

    def exit_json(self, **kwargs):
        raise _Done(kwargs)


def strings_for_lists(spec, args):
    """The message refusing an option of type list given as a string, or None.

    ``AnsibleModule`` would split ``"root"`` or ``"a,b"`` into a list; a string
    where a list is meant is a mistake (``-e users=root``), refused by name.
    """
    for option in sorted(spec):
        value = args.get(option)
        if spec[option].get("type") == "list" and isinstance(value, str):
            return ("option %s must be a list, got the string %r: write it as a list (for example [%s]); "
                    "a string is never split into one" % (option, value, value))
    return None


def run_in_process(module_code, name, args, check_mode=False, diff=False):
    """Validate ``args`` against ``module_code``'s spec and run it; returns the result, secrets masked."""
    commands.register()   # signer commands are started here, on the controller
    refused = strings_for_lists(module_code.ARGUMENT_SPEC, args)
    if refused:
        return dict(failed=True, changed=False, msg=refused)
    validator = ArgumentSpecValidator(module_code.ARGUMENT_SPEC, **module_code.SPEC_OPTIONS)
    checked = validator.validate(args)
    no_log_values = checked._no_log_values
    module = ControllerModule(checked.validated_parameters, check_mode, diff)
    if checked.error_messages:
        error = checked.errors[0]
        msg = checked.errors.msg
        if isinstance(error, UnsupportedError):
            msg = "Unsupported parameters for (%s) module: %s" % (name, msg)
        result = dict(failed=True, msg=msg)
    else:
        for warning in checked._warnings:
            module.warn("Both option %s and its alias %s are set." % (warning["option"], warning["alias"]))
        try:
            module_support.run(module, module_code.run,
                               needs_cryptography=getattr(module_code, "NEEDS_CRYPTOGRAPHY", True))
            raise AnsibleActionFail("%s returned without exit_json or fail_json" % name)
        except _Done as done:
            result = done.result
    result.setdefault("changed", False)
    if module.warnings:
        result["warnings"] = module.warnings
    result["invocation"] = {"module_args": checked.validated_parameters}
    return remove_values(result, no_log_values)


class ControllerModuleAction(ActionBase):
    """Action plugin base: ``MODULE`` is the module's Python module, ``NAME`` its FQCN."""

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False
    MODULE = None
    NAME = None

    def run(self, tmp=None, task_vars=None):
        result = super(ControllerModuleAction, self).run(tmp, task_vars)
        del tmp
        transport = getattr(self._connection, "transport", None)
        if transport not in LOCAL_TRANSPORTS:
            raise AnsibleActionFail(
                "%s runs on the controller only (CA keys and ledgers never leave it), but this task targets %s over "
                "the %s connection: add delegate_to: localhost (and run_once: true for a fleet)"
                % (self.NAME, self._task.delegate_to or (task_vars or {}).get("inventory_hostname"), transport))
        if self._play_context.become:
            me = pwd.getpwuid(os.geteuid()).pw_name
            wanted = self._play_context.become_user or "root"
            if wanted not in (me, str(os.geteuid())):
                raise AnsibleActionFail(
                    "%s runs in the controller's own process, as %s, and cannot become %s: set become: false on "
                    "this task, or run ansible-playbook as %s" % (self.NAME, me, wanted, wanted))
        result.update(run_in_process(self.MODULE, self.NAME, self._task.args,
                                     check_mode=self._task.check_mode, diff=self._task.diff))
        return result
