#!/usr/bin/env bash
# make test: the stages in two lanes that run at the same time.
#
#   run-lanes.sh NEWEST "LANE A STEPS" "LANE B STEPS"
#
# (make matrix: LANES=1 with its steps as lane A and no lane B.)
# A step is <make target>@<ansible-core release>; each runs as
#   make VENV=.venv-<release> [UNIT_COMPAT=no] [BUILD=...] <target>
# and a lane stops at its first failure. One lane of ansible-playbook runs
# keeps about one core busy, so on a 2-core machine two lanes take a little
# more than the longer one instead of the sum.
#
# What keeps the lanes apart:
#   - files: lane B builds, installs and runs in build/lane-b (BUILD=...);
#     lane A in build/, where the peers tests look.
#   - processes: crdb.tls.reload signals every process named `cockroach` on
#     its host, as CockroachDB runs one per host. Each step of either lane
#     (but molecule, whose stand-ins live in containers) runs in a PID
#     namespace of its own (unshare --pid --mount-proc), so a reload test in
#     one lane never sees, nor signals, the other lane's stand-ins.
#   - molecule's containers and ports: only lane B runs molecule.
# Where that isolation is not available (not root, no unshare), or with
# LANES=1, the lanes run one after the other.
#
# Each lane's output goes to build/logs/lane-<a|b>.log and is printed whole
# when both are done (lane A first), then one summary of every step.
set -uo pipefail

cd "$(dirname "$0")/../.." || exit 1
newest="$1"
lane_a="$2"
lane_b="$3"
logs="$PWD/build/logs"
mkdir -p "$logs"
rm -f "$logs"/lane-a.* "$logs"/lane-b.*   # no summary of an earlier run in this one

isolate=()
if [ "$(id -u)" = 0 ] && unshare --pid --fork --mount-proc true 2>/dev/null; then
    isolate=(unshare --pid --fork --mount-proc)
fi
parallel=yes
if [ "${LANES:-2}" = 1 ] || [ "${#isolate[@]}" -eq 0 ]; then
    parallel=no
fi

# run_lane NAME BUILD STEPS: every step in turn; one summary line each in
# $logs/lane-NAME.summary; exit status of the first failing step.
run_lane() {
    local name="$1" build="$2" steps="$3" step stage rel start rc=0 t0=$SECONDS
    : > "$logs/lane-$name.summary"
    for step in $steps; do
        stage="${step%@*}"
        rel="${step#*@}"
        echo
        echo "=== lane $name: make $stage (ansible-core $rel) ==="
        start=$SECONDS
        local args=(make --no-print-directory "VENV=.venv-$rel")
        [ "$rel" = "$newest" ] || args+=(UNIT_COMPAT=no)
        [ -z "$build" ] || args+=("BUILD=$build")
        args+=("$stage")
        if [ "$stage" != molecule ]; then
            args=("${isolate[@]}" "${args[@]}")
        fi
        if "${args[@]}" </dev/null; then
            printf '%-8s %-22s %-5s ok     %4d s\n' "$name" "$stage" "$rel" $((SECONDS - start)) >> "$logs/lane-$name.summary"
        else
            rc=$?
            printf '%-8s %-22s %-5s FAILED %4d s\n' "$name" "$stage" "$rel" $((SECONDS - start)) >> "$logs/lane-$name.summary"
            break
        fi
    done
    printf '%-8s %-34s %4d s\n' "$name" "(lane total)" $((SECONDS - t0)) >> "$logs/lane-$name.summary"
    return "$rc"
}

t0=$SECONDS
if [ "$parallel" = yes ]; then
    echo "make test: lane a ($lane_a) and lane b ($lane_b) at once; each step of them but molecule in a PID namespace of its own"
    run_lane a "" "$lane_a" > "$logs/lane-a.log" 2>&1 &
    pid_a=$!
    run_lane b "$PWD/build/lane-b" "$lane_b" > "$logs/lane-b.log" 2>&1 &
    pid_b=$!
    wait "$pid_a"; rc_a=$?
    wait "$pid_b"; rc_b=$?
    for name in a b; do
        echo
        echo "=================== lane $name output (build/logs/lane-$name.log) ==================="
        cat "$logs/lane-$name.log"
    done
else
    echo "make test: the lanes one after the other (LANES=1, or no root/unshare for PID namespaces)"
    isolate=()
    run_lane a "" "$lane_a" 2>&1 | tee "$logs/lane-a.log"; rc_a=${PIPESTATUS[0]}
    rc_b=0
    if [ "$rc_a" -eq 0 ] && [ -n "$lane_b" ]; then
        run_lane b "$PWD/build/lane-b" "$lane_b" 2>&1 | tee "$logs/lane-b.log"; rc_b=${PIPESTATUS[0]}
    fi
fi

echo
echo "=== summary ==="
cat "$logs/lane-a.summary" "$logs/lane-b.summary" 2>/dev/null
if [ "$rc_a" -ne 0 ] || [ "$rc_b" -ne 0 ]; then
    echo "make: FAILED (lane a exit $rc_a, lane b exit $rc_b) after $((SECONDS - t0)) s"
    exit 1
fi
echo "make: all stages passed in $((SECONDS - t0)) s"
