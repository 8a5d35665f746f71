# -*- coding: utf-8 -*-
# Copyright: crdb.tls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Time helpers that need no cryptography: now, lifetimes and renewal windows.

A renewal window is a fixed duration (``30d``: re-issue once 30 days or less
are left) or a fraction of the certificate's own lifetime (``33%``: re-issue
in the last third of the validity period, notBefore to notAfter), parsed by
:func:`parse_window` for every option and variable that takes one.

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


def instant_text(instant):
    """``instant`` as ISO 8601 text of one fixed shape (UTC, microseconds), so such texts sort as their instants."""
    return instant.astimezone(datetime.timezone.utc).isoformat(timespec="microseconds")


def parse_instant(value, what):
    """An instant given as ISO 8601 text with a UTC offset (as ``datetime.isoformat()`` writes it), in UTC."""
    try:
        instant = datetime.datetime.fromisoformat(str(value).strip())
    except ValueError:
        instant = None
    if instant is None or instant.tzinfo is None:
        raise CrdbTlsError("%s %r is not an ISO 8601 instant with a UTC offset (example: 2026-12-02T13:05:03+00:00)"
                           % (what, value))
    return instant.astimezone(datetime.timezone.utc)


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


_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


class Window(object):
    """A renewal window: ``fixed`` (a timedelta) or ``fraction`` (of the certificate's lifetime, 0 < f < 1)."""

    __slots__ = ("fixed", "fraction", "given")

    def __init__(self, fixed=None, fraction=None, given=None):
        self.fixed = fixed
        self.fraction = fraction
        self.given = given      # as the operator wrote it, for messages

    def __bool__(self):
        return bool(self.fraction) or bool(self.fixed)

    __nonzero__ = __bool__

    def __eq__(self, other):
        return isinstance(other, Window) and (self.fixed, self.fraction) == (other.fixed, other.fraction)

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash((self.fixed, self.fraction))

    def __repr__(self):
        return "Window(%s)" % self.text()

    def length(self, lifetime=None):
        """The window as a timedelta for a certificate valid for ``lifetime`` (None: a fraction without one)."""
        if self.fraction is not None:
            if lifetime is None:
                return None
            return datetime.timedelta(seconds=lifetime.total_seconds() * self.fraction)
        return self.fixed

    def text(self):
        """``33%`` or ``30d``, as an operator writes it."""
        if self.fraction is not None:
            return "%s%%" % _number(self.fraction * 100)
        return _exact(self.fixed) if self.fixed else "none"

    def describe(self, lifetime=None):
        """``33% (8h)`` for a fraction (with the length it has for ``lifetime``), ``30d`` for a fixed window."""
        length = self.length(lifetime)
        if self.fraction is not None and length is not None:
            return "%s (%s)" % (self.text(), format_span(length))
        return self.text()


def _exact(delta):
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return "%d%s" % (seconds // size, unit)
    return "%ds" % seconds


def _number(value):
    return ("%.4f" % value).rstrip("0").rstrip(".")


def parse_window(value, what):
    """A renewal window: a :class:`Window`, ``'33%'`` (of the certificate's lifetime), or a duration.

    Durations are read as :func:`parse_duration` reads them (a number is
    hours). None or an empty value is no window (None); a zero duration is no
    window either. A percentage must lie strictly between 0 and 100: at 100%
    or more every run would re-issue, at 0% nothing is ever renewed early.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, Window):
        return value
    match = _PERCENT.match(value) if isinstance(value, str) else None
    if match:
        percent = float(match.group(1))
        if percent >= 100:
            raise CrdbTlsError("%s %r would make every run re-issue: a window of %s%% of the lifetime or more "
                               "is always open (give less than 100%%, for example 33%%)"
                               % (what, value, _number(percent)))
        if percent <= 0:
            raise CrdbTlsError("%s %r is no window: give a percentage above 0%% (for example 33%%) or a "
                               "duration" % (what, value))
        return Window(fraction=percent / 100.0, given=value.strip())
    try:
        fixed = parse_duration(value, what)
    except CrdbTlsError:
        raise CrdbTlsError("%s %r is neither a duration nor a percentage of the lifetime (examples: 30d, 12h, "
                           "90m, 33%%)" % (what, value))
    if fixed < datetime.timedelta(0):
        raise CrdbTlsError("%s %r must not be negative" % (what, value))
    return Window(fixed=fixed, given=value.strip() if isinstance(value, str) else None) if fixed else None


def window_length(window, lifetime=None):
    """``window`` (a :class:`Window`, a timedelta or None) as a timedelta for ``lifetime``."""
    if window is None:
        return None
    if isinstance(window, datetime.timedelta):
        return window
    return window.length(lifetime)


def describe_window(window, lifetime=None):
    if window is None:
        return "none"
    if isinstance(window, datetime.timedelta):
        return _exact(window)
    return window.describe(lifetime)


def format_span(delta):
    """A span of time, rounded down, to read at a glance: ``1829d``, ``36h`` or ``40m``.

    Whole days from two days on, hours from two hours on, else minutes
    (``0m`` for less than a minute, and a ``-`` in front of a negative span).
    """
    seconds = delta.total_seconds()
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds >= 2 * 86400:
        return "%s%dd" % (sign, seconds // 86400)
    if seconds >= 2 * 3600:
        return "%s%dh" % (sign, seconds // 3600)
    return "%s%dm" % (sign, seconds // 60)


def format_delta(delta):
    """``30d`` for whole days, else ``36h``."""
    hours = int(delta.total_seconds() // 3600)
    if hours % 24 == 0:
        return "%dd" % (hours // 24)
    return "%dh" % hours
