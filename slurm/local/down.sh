#!/usr/bin/env bash
# Stop the cluster started by slurm/local/up.sh (pid files only). Idempotent. --purge also wipes state.
set -uo pipefail
D=${SLURM_LOCAL_DIR:-${TMPDIR:-/tmp}/slurm-local}
running() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"; }  # zombies don't count
alive() { [ -s "$1" ] && running "$(cat "$1")"; }
if alive "$D/slurmctld.pid"; then
  scancel --full --signal=KILL --user=root >/dev/null 2>&1 || true   # don't leave slurmstepd orphans
  for i in $(seq 50); do [ -z "$(squeue -h -t R,CG 2>/dev/null)" ] && break; sleep 0.2; done
fi
pids=()
for p in "$D"/slurmd-*.pid "$D/slurmctld.pid" /run/munge/munged.pid; do
  if alive "$p"; then pids+=("$(cat "$p")"); kill "$(cat "$p")"; fi
done
for i in $(seq 100); do
  left=0; for pid in "${pids[@]}"; do running "$pid" && left=1; done
  [ $left = 0 ] && break; sleep 0.1
done
for pid in "${pids[@]}"; do running "$pid" && kill -9 "$pid"; done
rm -f "$D"/slurmd-*.pid "$D/slurmctld.pid"
if grep -q '# slurm-ci$' /etc/hosts; then h=$(grep -v '# slurm-ci$' /etc/hosts); printf '%s\n' "$h" > /etc/hosts; fi
[ "${1:-}" = --purge ] && rm -rf "$D/state" "$D/spool" "$D/log"
echo "slurm down (stopped ${#pids[@]} daemons)"
