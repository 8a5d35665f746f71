# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one exception type the engine raises for bad input or bad files."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class CrdbTlsError(Exception):
    """Bad input, a bad file or a refused operation; the message names the culprit."""
