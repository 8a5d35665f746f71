# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Time helpers that need no cryptography: now, lifetimes and windows.

They live apart from :mod:`pki` (which re-exports them) so that a check of
names, layout and permissions (``certsdir.inspect(content=False)``) never
loads cryptography on a node.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re

from ansible_collections.crdb.tls.plugins.module_utils.errors import CrdbTlsError

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 366 * 86400}


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def parse_duration(value, what):
    """A lifetime or window: a timedelta, a number of hours, or ``'30d'``, ``'12h'``, ``'90m'``."""
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.timedelta(hours=value)
    match = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([smhdwy]?)\s*$", str(value))
    if not match:
        raise CrdbTlsError("%s %r is not a duration (examples: 43920h, 365d, 2w, 90m)" % (what, value))
    number, unit = float(match.group(1)), match.group(2) or "h"
    return datetime.timedelta(seconds=number * _UNIT_SECONDS[unit])


def format_delta(delta):
    """``30d`` for whole days, else ``36h``."""
    hours = int(delta.total_seconds() // 3600)
    if hours % 24 == 0:
        return "%dd" % (hours // 24)
    return "%dh" % hours
