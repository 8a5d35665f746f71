# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every crdb.tls module does the same way: check for cryptography, turn errors into failures."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import traceback

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError


def key_argument_spec():
    """``key_type`` and ``key_size``: the options of the ``crdb.tls.keys`` doc fragment."""
    return dict(
        key_type=dict(type="str", choices=["rsa", "ecdsa"], default="rsa"),
        key_size=dict(type="int"),
    )


# What to install where a module needs cryptography, said in every failure for it.
CRYPTOGRAPHY_HINT = ("This module needs the cryptography library on the host it runs on: install the package "
                     "python3-cryptography (Debian, Ubuntu, RHEL, Fedora, SUSE) or run pip install cryptography "
                     "for that Python.")


def require_cryptography(module):
    """Fail naming the package to install when cryptography cannot be imported by this Python."""
    from ansible_collections.crdb.tls.plugins.module_utils import pki
    if not pki.HAS_CRYPTOGRAPHY:
        module.fail_json(msg="%s. %s" % (missing_required_lib("cryptography"), CRYPTOGRAPHY_HINT),
                         exception="".join(traceback.format_exception_only(
                             type(pki.CRYPTOGRAPHY_IMPORT_ERROR), pki.CRYPTOGRAPHY_IMPORT_ERROR)))


def run(module, function, needs_cryptography=True):
    """Run ``function(module)``; a CrdbTlsError becomes a failure with its message, a ``diff`` is kept in diff mode.

    ``needs_cryptography=False``: the module needs no cryptography on its host
    (crdb.tls.reload) or imports it itself only when it must (crdb.tls.install,
    whose idempotent path is a byte compare and a stat).
    """
    if needs_cryptography:
        require_cryptography(module)
    try:
        result = function(module)
    except CrdbTlsError as exc:
        module.fail_json(msg=str(exc))
    # A module's function may always return its diff; it is shown in diff mode only.
    diff = result.pop("diff", None)
    if diff is not None and module._diff:
        result["diff"] = diff
    module.exit_json(**result)
