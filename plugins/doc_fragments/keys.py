# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """The key options every module that makes keys shares (see pki.KEY_TYPES)."""

    DOCUMENTATION = r"""
options:
  key_type:
    description:
      - Algorithm of new keys. RSA 2048 is what C(cockroach cert) makes; ECDSA P-256 is much faster to generate.
    type: str
    choices: [rsa, ecdsa]
    default: rsa
  key_size:
    description:
      - RSA modulus (2048, 3072, 4096) or ECDSA curve size (256 for P-256, 384 for P-384).
      - Defaults to 2048 for RSA and 256 for ECDSA. RSA keys below 2048 bits are refused.
    type: int
"""
