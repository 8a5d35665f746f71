#!/usr/bin/env python
"""Fleet benchmark of crdb.tls against the common community.crypto way.

For each N of a simulated fleet (every host is this machine, local
connection, its own certs dir, an address 127.0.x.y) it runs, with the same
forks and ansible config:

  collection-rsa / collection-ecdsa   benchmarks/playbooks/collection.yml
      (site.yml's node play: role crdb.tls.node, no facts, no reload):
      first deploy, idempotent rerun, rerun after one host's node.crt was
      deleted;
  reference   benchmarks/reference/site.yml (community.crypto key, CSR,
      certificate per host on the controller, then a copy per file):
      first deploy, idempotent rerun;
  floor       benchmarks/playbooks/floor.yml (one ping per host).

Each run: wall time (time.monotonic around the subprocess), module calls per
host (callback_plugins/count_calls.py), peak RSS of the largest process of
the run (getrusage(RUSAGE_CHILDREN) in a fresh python child that runs
ansible-playbook). Writes results.json (after every run), results.md and
time_vs_n.png to the results dir.

  python benchmarks/run.py [--ns "5 20 50 100"] [--forks 5] [--report-only]
"""
from __future__ import annotations

import argparse
import getpass
import grp
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PLAYBOOKS = {
    "collection": os.path.join(HERE, "playbooks", "collection.yml"),
    "reference": os.path.join(HERE, "reference", "site.yml"),
    "floor": os.path.join(HERE, "playbooks", "floor.yml"),
}
# (scenario, playbook, extra vars, phases)
SCENARIOS = [
    ("floor", "floor", {}, ["run"]),
    ("collection-rsa", "collection", {"crdb_tls_key_type": "rsa"}, ["first", "idempotent", "one_deleted"]),
    ("collection-ecdsa", "collection", {"crdb_tls_key_type": "ecdsa"}, ["first", "idempotent", "one_deleted"]),
    ("reference", "reference", {}, ["first", "idempotent"]),
]
# Runs ansible-playbook in a fresh python so RUSAGE_CHILDREN covers this run only.
MEM_WRAPPER = (
    "import os, resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[1:])\n"
    "with open(os.environ['BENCH_MEM_FILE'], 'w') as f:\n"
    "    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(rc)\n"
)


def host_name(n, i):
    return "bench%d-host%d" % (n, i)


def host_addr(i):
    return "127.0.%d.%d" % (i // 254, i % 254 + 1)


def write_inventory(path, n, root):
    user = getpass.getuser()
    group = grp.getgrgid(os.getgid()).gr_name
    hosts = {}
    for i in range(1, n + 1):
        name = host_name(n, i)
        hosts[name] = {
            "ansible_host": host_addr(i),
            "crdb_tls_certs_dir": os.path.join(root, "certs", name),
        }
    inv = {"all": {
        "children": {"bench_nodes": {"hosts": hosts}},
        "vars": {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "crdb_tls_owner": user,
            "crdb_tls_group": group,
            "crdb_tls_pki_dir": os.path.join(root, "pki"),
            "bench_ref_dir": os.path.join(root, "ref-pki"),
        },
    }}
    with open(path, "w") as f:  # JSON is YAML
        json.dump(inv, f, indent=1)


def collections_path(work):
    """crdb.tls from this working tree, community.crypto from the venv."""
    link_parent = os.path.join(work, "collections", "ansible_collections", "crdb")
    os.makedirs(link_parent, exist_ok=True)
    link = os.path.join(link_parent, "tls")
    if not os.path.islink(link):
        os.symlink(REPO, link)
    return os.pathsep.join([os.path.join(work, "collections"), sysconfig.get_paths()["purelib"]])


def base_env(work, forks):
    cfg = os.path.join(work, "ansible.cfg")
    with open(cfg, "w") as f:
        f.write("[defaults]\n")
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": cfg,
        "ANSIBLE_COLLECTIONS_PATH": collections_path(work),
        "ANSIBLE_CALLBACK_PLUGINS": os.path.join(HERE, "callback_plugins"),
        "ANSIBLE_CALLBACKS_ENABLED": "count_calls",
        "ANSIBLE_FORKS": str(forks),
        "ANSIBLE_GATHERING": "explicit",
        "ANSIBLE_LOCAL_TEMP": os.path.join(work, "tmp"),
        "ANSIBLE_RETRY_FILES_ENABLED": "false",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_HOST_KEY_CHECKING": "false",
        "ANSIBLE_COLLECTIONS_ON_ANSIBLE_VERSION_MISMATCH": "ignore",
    })
    env.pop("ANSIBLE_STDOUT_CALLBACK", None)
    return env


def run_playbook(env, work, tag, inventory, playbook, extra_vars):
    count_file = os.path.join(work, "counts", tag + ".json")
    mem_file = os.path.join(work, "counts", tag + ".mem")
    log_file = os.path.join(work, "logs", tag + ".log")
    for d in (os.path.dirname(count_file), os.path.dirname(log_file)):
        os.makedirs(d, exist_ok=True)
    cmd = [sys.executable, "-c", MEM_WRAPPER,
           os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
           "-i", inventory, playbook]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    run_env = dict(env, BENCH_COUNT_FILE=count_file, BENCH_MEM_FILE=mem_file)
    with open(log_file, "w") as log:
        t0 = time.monotonic()
        rc = subprocess.call(cmd, env=run_env, stdout=log, stderr=subprocess.STDOUT, cwd=work)
        wall = time.monotonic() - t0
    counts = {}
    if os.path.exists(count_file):
        with open(count_file) as f:
            counts = json.load(f)
    peak_kb = 0
    if os.path.exists(mem_file):
        with open(mem_file) as f:
            peak_kb = int(f.read() or 0)
    return rc, wall, counts, peak_kb, log_file


def measure(n, forks, work_root, results, save, reference=True):
    for scenario, pb, extra, phases in SCENARIOS:
        if scenario == "reference" and not reference:
            continue
        root = os.path.join(work_root, "n%d" % n, scenario)
        # The certs dirs' parent exists, as /var/lib/cockroach does on a node: crdb.tls.install
        # creates a missing parent with os.makedirs without exist_ok, which races across forks.
        os.makedirs(os.path.join(root, "certs"), exist_ok=True)
        inventory = os.path.join(root, "inventory.yml")
        write_inventory(inventory, n, root)
        env = base_env(root, forks)
        for phase in phases:
            if phase == "one_deleted":
                os.remove(os.path.join(root, "certs", host_name(n, 1), "node.crt"))
            tag = "n%d-%s-%s" % (n, scenario, phase)
            rc, wall, counts, peak_kb, log = run_playbook(env, root, tag, inventory, PLAYBOOKS[pb], extra)
            calls = counts.get("calls", {})
            mcalls = counts.get("module_calls", {})
            tasks = sorted(counts.get("tasks", []), key=lambda t: -t["seconds"])
            rec = {
                "n": n, "scenario": scenario, "phase": phase, "forks": forks, "rc": rc,
                "wall_s": round(wall, 2), "s_per_host": round(wall / n, 3),
                "calls_per_host": round(sum(calls.values()) / n, 2),
                "module_calls_per_host": round(sum(mcalls.values()) / n, 2),
                "changed_results": sum(counts.get("changed", {}).values()),
                "failed_results": sum(counts.get("failed", {}).values()),
                "peak_mb": round(peak_kb / 1024.0, 1),
                "slowest_tasks": [{"name": t["name"], "seconds": t["seconds"], "calls": t["calls"]} for t in tasks[:6]],
            }
            if phase == "one_deleted":
                rec["restored"] = os.path.exists(os.path.join(root, "certs", host_name(n, 1), "node.crt"))
            results["runs"].append(rec)
            save()
            status = "ok" if rc == 0 else "FAILED rc=%d (log: %s)" % (rc, log)
            print("N=%-4d %-17s %-11s %7.2f s  %5.2f calls/host  %6.1f MB  changed=%d  %s" % (
                n, scenario, phase, wall, rec["calls_per_host"], rec["peak_mb"], rec["changed_results"], status),
                flush=True)
            if rc != 0:
                with open(log) as f:
                    sys.stdout.write("".join(f.readlines()[-30:]))
                break


# --- report ---------------------------------------------------------------------

def find(runs, n, scenario, phase):
    for r in runs:
        if r["n"] == n and r["scenario"] == scenario and r["phase"] == phase and r["rc"] == 0:
            return r
    return None


def ratios(runs, n_ref=20, n_big=100):
    out = []

    def ratio(label, a, b, target=None):
        if a and b:
            v = a["wall_s"] / b["wall_s"]
            ok = "" if target is None else ("met" if v <= target else "NOT met")
            out.append((label, "%.3f" % v, "<= %.2f" % target if target else "", ok))
        else:
            out.append((label, "n/a", "<= %.2f" % target if target else "", "missing run"))

    ref_first = find(runs, n_ref, "reference", "first")
    ref_idem = find(runs, n_ref, "reference", "idempotent")
    floor = find(runs, n_ref, "floor", "run")
    for kt in ("rsa", "ecdsa"):
        sc = "collection-" + kt
        ratio("N=%d %s first / reference first" % (n_ref, sc), find(runs, n_ref, sc, "first"), ref_first, 0.15)
        ratio("N=%d %s idempotent / reference idempotent" % (n_ref, sc), find(runs, n_ref, sc, "idempotent"),
              ref_idem, 0.12)
        ratio("N=%d %s idempotent / floor" % (n_ref, sc), find(runs, n_ref, sc, "idempotent"), floor, 2.0)
    ns = sorted({r["n"] for r in runs})
    big = n_big if n_big in ns else (max(ns) if ns else None)
    if big and big != n_ref:
        for sc in ("collection-rsa", "collection-ecdsa", "reference", "floor"):
            for phase in ("first", "idempotent", "run"):
                a, b = find(runs, big, sc, phase), find(runs, n_ref, sc, phase)
                if a and b:
                    v = a["s_per_host"] / b["s_per_host"]
                    target = 1.1 if sc.startswith("collection") else None
                    out.append(("%s %s: s/host N=%d / N=%d" % (sc, phase, big, n_ref), "%.3f" % v,
                                "flat (<= 1.10)" if target else "",
                                ("met" if v <= target else "NOT met") if target else ""))
        # Marginal cost: what one more host adds, start-up and once-per-play work removed.
        for sc in ("collection-rsa", "collection-ecdsa", "reference", "floor"):
            for phase in ("first", "idempotent", "run"):
                a, b = find(runs, big, sc, phase), find(runs, n_ref, sc, phase)
                if a and b:
                    out.append(("%s %s: marginal s/host from N=%d to N=%d" % (sc, phase, n_ref, big),
                                "%.3f" % ((a["wall_s"] - b["wall_s"]) / (big - n_ref)), "", "info"))
    return out


def write_markdown(results, path):
    runs = results["runs"]
    lines = [
        "# crdb.tls fleet benchmark",
        "",
        "Generated %s by `%s` on %s (%d cores), forks %d, ansible-core %s." % (
            results["date"], results["command"], results["machine"], results["cores"], results["forks"],
            results["ansible_core"]),
        "Every host is this machine (local connection, its own certs dir); wall time includes",
        "ansible-playbook start-up. Module calls/host counts ok+changed+failed results (a loop counts",
        "one per item) over N, controller-side ones (run_once, delegate_to) included.",
        "Load average (1 min) before the run: %s, after: %s." % (
            "%.2f" % results["load_before"] if "load_before" in results else "n/a",
            "%.2f" % results["load_after"] if "load_after" in results else "n/a"),
        "",
        "| N | scenario | run | wall s | s/host | module calls/host | changed | peak MB |",
        "|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(runs, key=lambda r: (r["n"], [s[0] for s in SCENARIOS].index(r["scenario"]))):
        lines.append("| %d | %s | %s%s | %.2f | %.3f | %.2f | %d | %.1f |" % (
            r["n"], r["scenario"], r["phase"], "" if r["rc"] == 0 else " (FAILED)", r["wall_s"], r["s_per_host"],
            r["module_calls_per_host"], r["changed_results"], r["peak_mb"]))
    lines += ["", "## Targets (issue 5)", "", "| ratio | value | target | |", "|---|---:|---|---|"]
    for label, v, target, ok in ratios(runs):
        lines.append("| %s | %s | %s | %s |" % (label, v, target, ok))
    lines += ["", "![time against N](time_vs_n.png)", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def write_plot(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (make bench installs it)", file=sys.stderr)
        return
    runs = [r for r in results["runs"] if r["rc"] == 0]
    # Left: everything, log scale (the reference is ten times the rest). Right: linear, without the
    # reference, so the collection's lines can be read against the floor.
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    series = sorted({(r["scenario"], r["phase"]) for r in runs},
                    key=lambda s: ([x[0] for x in SCENARIOS].index(s[0]), s[1]))
    for ax, with_reference in zip(axes, (True, False)):
        for sc, phase in series:
            if sc == "reference" and not with_reference:
                continue
            pts = sorted((r["n"], r["wall_s"]) for r in runs if r["scenario"] == sc and r["phase"] == phase)
            style = "--" if sc == "reference" else (":" if sc == "floor" else "-")
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", label="%s %s" % (sc, phase))
        ax.set_xlabel("hosts (N)")
        ax.set_ylabel("wall time (s)" + (", log scale" if with_reference else ""))
        if with_reference:
            ax.set_yscale("log")
        ax.set_title(("crdb.tls vs community.crypto" if with_reference else "crdb.tls vs one ping per host")
                     + ", forks %d" % results["forks"])
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ns", default=os.environ.get("BENCH_NS") or "5 20 50 100",
                    help="fleet sizes, space separated (env BENCH_NS)")
    ap.add_argument("--forks", type=int, default=int(os.environ.get("BENCH_FORKS", "5")))
    ap.add_argument("--reference-ns", default=os.environ.get("BENCH_REFERENCE_NS") or None,
                    help="run the (slow) reference playbook only at these fleet sizes (env BENCH_REFERENCE_NS; "
                         "default: all of --ns)")
    ap.add_argument("--results", default=os.path.join(HERE, "results"))
    ap.add_argument("--work", help="work dir (default: a temp dir, removed unless --keep)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, certs)")
    ap.add_argument("--report-only", action="store_true", help="rewrite results.md and the plot from results.json")
    args = ap.parse_args()

    os.makedirs(args.results, exist_ok=True)
    json_path = os.path.join(args.results, "results.json")
    if args.report_only:
        with open(json_path) as f:
            results = json.load(f)
    else:
        import ansible
        ns = [int(x) for x in args.ns.replace(",", " ").split()]
        ref_ns = ns if args.reference_ns is None else [int(x) for x in args.reference_ns.replace(",", " ").split()]
        command = "make bench BENCH_NS=\"%s\"" % " ".join(map(str, ns))
        if args.reference_ns is not None:
            command += " BENCH_REFERENCE_NS=\"%s\"" % " ".join(map(str, ref_ns))
        results = {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": command,
            "machine": platform.node() + " " + platform.machine(), "cores": os.cpu_count(),
            "load_before": os.getloadavg()[0], "forks": args.forks, "ns": ns,
            "ansible_core": ansible.__version__, "python": platform.python_version(), "runs": [],
        }

        def save():
            with open(json_path, "w") as f:
                json.dump(results, f, indent=1)

        work = args.work or tempfile.mkdtemp(prefix="crdb-tls-bench-")
        print("work dir: %s" % work, flush=True)
        try:
            for n in ns:
                measure(n, args.forks, work, results, save, reference=n in ref_ns)
            results["load_after"] = os.getloadavg()[0]
            save()
        finally:
            if not (args.keep or args.work):
                shutil.rmtree(work, ignore_errors=True)
    write_markdown(results, os.path.join(args.results, "results.md"))
    write_plot(results, os.path.join(args.results, "time_vs_n.png"))
    with open(os.path.join(args.results, "results.md")) as f:
        print(f.read())
    return 1 if any(r["rc"] != 0 for r in results["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
