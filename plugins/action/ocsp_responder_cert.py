# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""crdb.tls.ocsp_responder_cert runs in the controller's worker, never on a target host (see controller_module)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.crdb.tls.plugins.modules import ocsp_responder_cert
from ansible_collections.crdb.tls.plugins.plugin_utils.controller_module import ControllerModuleAction


class ActionModule(ControllerModuleAction):

    MODULE = ocsp_responder_cert
    NAME = "crdb.tls.ocsp_responder_cert"
