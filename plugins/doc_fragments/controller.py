# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """The modules that read a CA key or ledger: they run on the controller (plugin_utils/controller_module.py)."""

    DOCUMENTATION = r"""
options: {}
notes:
  - Runs on the controller, inside the task's worker (the module's action plugin), never on a target host, where
    CA keys and ledgers never go. A task that reaches its host over any connection but C(local) is refused, so
    use C(delegate_to=localhost).
  - It runs as the user running Ansible. C(become) to another user is refused; set C(become=false) on the task.
attributes:
  action:
    description: Has an action plugin; here the whole module runs in it, on the controller.
    support: full
  async:
    description: Supports being used with the C(async) keyword.
    support: none
  bypass_host_loop:
    description: Forces a 'global' task that does not execute per host.
    support: none
"""
