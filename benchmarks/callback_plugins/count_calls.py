# -*- coding: utf-8 -*-
# Benchmark helper, not part of the collection: counts module calls per host
# and times every task, then writes JSON to $BENCH_COUNT_FILE at the end.
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: count_calls
type: aggregate
short_description: Count module calls per host and time tasks (benchmarks only)
description:
  - Counts ok, changed and failed results (not skipped) per host; a loop counts one call per item.
  - Records the wall time of every task (from its start to the next task's start).
  - Writes JSON to the file named by the BENCH_COUNT_FILE environment variable.
requirements:
  - enable it with ANSIBLE_CALLBACKS_ENABLED=count_calls
"""

import json
import os
import time
from collections import defaultdict

from ansible.plugins.callback import CallbackBase

# Actions that run in the controller's worker without shipping a module.
CONTROLLER_ONLY = {
    "set_fact", "ansible.builtin.set_fact", "debug", "ansible.builtin.debug",
    "include_role", "ansible.builtin.include_role", "include_tasks", "ansible.builtin.include_tasks",
    "meta", "ansible.builtin.meta", "assert", "ansible.builtin.assert",
    "validate_argument_spec", "ansible.builtin.validate_argument_spec",
}


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "count_calls"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.calls = defaultdict(int)
        self.module_calls = defaultdict(int)
        self.changed = defaultdict(int)
        self.failed = defaultdict(int)
        self.tasks = []
        self._current = None
        self._t0 = time.monotonic()

    def _close_task(self):
        if self._current is not None:
            self._current["seconds"] = round(time.monotonic() - self._current.pop("_start"), 3)
            self.tasks.append(self._current)
            self._current = None

    def _start(self, task):
        self._close_task()
        self._current = {"name": task.get_name(), "action": task.action, "_start": time.monotonic(), "calls": 0}

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._start(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._start(task)

    def _count(self, result, failed=False):
        host = result._host.get_name()
        res = result._result or {}
        n = 1
        if isinstance(res.get("results"), list):
            n = len([r for r in res["results"] if not (isinstance(r, dict) and r.get("skipped"))])
        self.calls[host] += n
        if result._task.action not in CONTROLLER_ONLY:
            self.module_calls[host] += n
        if res.get("changed"):
            self.changed[host] += 1
        if failed:
            self.failed[host] += 1
        if self._current is not None:
            self._current["calls"] += n

    def v2_runner_on_ok(self, result):
        self._count(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._count(result, failed=True)

    def v2_runner_on_unreachable(self, result):
        self.failed[result._host.get_name()] += 1

    def v2_playbook_on_stats(self, stats):
        self._close_task()
        path = os.environ.get("BENCH_COUNT_FILE")
        if not path:
            return
        with open(path, "w") as f:
            json.dump({
                "calls": dict(self.calls), "module_calls": dict(self.module_calls),
                "changed": dict(self.changed), "failed": dict(self.failed),
                "tasks": self.tasks, "seconds": round(time.monotonic() - self._t0, 3),
            }, f, indent=1)
