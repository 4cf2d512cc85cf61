#!/usr/bin/env bash
# Bring up a one-machine SLURM cluster (slurmctld + N emulated nodes) for batchlaw's CI and tests,
# from Debian's packages, without systemd. Idempotent; root required. Adapted from the workplace's
# shared/tools/slurm-local/up.sh. Settings: SLURM_LOCAL_DIR, SLURM_CI_NODES, SLURM_CI_CPUS, SLURM_CI_MEM, SLURM_CI_GPUS.
set -euo pipefail
D=${SLURM_LOCAL_DIR:-${TMPDIR:-/tmp}/slurm-local}     # state/spool/logs/pids live here
NODES=${SLURM_CI_NODES:-2}            # emulated nodes n1..nN
CPUS=${SLURM_CI_CPUS:-4}              # CPUs advertised per node (may exceed real cores)
MEM=${SLURM_CI_MEM:-2000}             # MB advertised per node
GPUS=${SLURM_CI_GPUS:-4}              # fake GPU GRES per node (so --gpus-per-node/--gres=gpu:N are accepted)
T0=$(date +%s.%N)
running() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"; }  # zombies don't count
alive() { [ -s "$1" ] && running "$(cat "$1")"; }

# 1. packages (only if missing)
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge libpmix2 >/dev/null
fi
# Debian's mpi_pmix plugin dlopens the unversioned name (normally from libpmix-dev)
P=/usr/lib/x86_64-linux-gnu/pmix2/lib
if [ -e $P/libpmix.so.2 ] && [ ! -e $P/libpmix.so ]; then ln -s libpmix.so.2 $P/libpmix.so; fi

# 2. munge
if [ ! -s /etc/munge/munge.key ]; then mungekey --create --keyfile=/etc/munge/munge.key; fi
chown -R munge:munge /etc/munge; chmod 700 /etc/munge; chmod 400 /etc/munge/munge.key
install -d -o munge -g munge -m 755 /run/munge
install -d -o munge -g munge -m 711 /var/lib/munge; install -d -o munge -g munge -m 700 /var/log/munge
if ! alive /run/munge/munged.pid; then
  runuser -u munge -- /usr/sbin/munged
fi
for i in $(seq 50); do munge -n </dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done

# 3. config
mkdir -p "$D/state" "$D/log"
NODELINES=""; HOSTALIASES=""; GRES=""; NEWGRES="AutoDetect=off"
if [ "$GPUS" -gt 0 ]; then
  # fake GPUs: dummy char devices (= /dev/null); slurm sets CUDA_VISIBLE_DEVICES from their indices
  mkdir -p "$D/dev"
  for g in $(seq 0 $((GPUS-1))); do [ -e "$D/dev/nvidia$g" ] || mknod "$D/dev/nvidia$g" c 1 3; done
  GRES=" Gres=gpu:$GPUS"; NEWGRES+=$'\n'"Name=gpu File=$D/dev/nvidia[0-$((GPUS-1))]"
fi
for i in $(seq 1 "$NODES"); do
  mkdir -p "$D/spool/n$i"
  NODELINES+="NodeName=n$i NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((17000+i)) CPUs=$CPUS RealMemory=$MEM$GRES State=UNKNOWN"$'\n'
  HOSTALIASES+=" n$i"
done
NEWCONF=$(cat <<EOF
ClusterName=ci
GresTypes=gpu
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,bf_interval=2
ReturnToService=2
SlurmdParameters=config_overrides
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool/%n
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd-%n.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd-%n.log
SlurmctldPort=6817
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
${NODELINES}PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
)
if [ "$(cat /etc/slurm/slurm.conf 2>/dev/null)" != "$NEWCONF" ] || [ "$(cat /etc/slurm/gres.conf 2>/dev/null)" != "$NEWGRES" ]; then
  # config changed: stop running daemons so they pick it up
  old=""; for p in "$D"/slurmd-*.pid "$D/slurmctld.pid"; do
    if alive "$p"; then old+=" $(cat "$p")"; kill "$(cat "$p")"; fi; done
  for pid in $old; do for i in $(seq 100); do running "$pid" || break; sleep 0.1; done; done
  printf '%s\n' "$NEWCONF" > /etc/slurm/slurm.conf
  printf '%s\n' "$NEWGRES" > /etc/slurm/gres.conf
fi
# node names must resolve (MASTER_ADDR=$(scontrol show hostnames ... | head -1))
# (no sed -i: /etc/hosts is often a bind mount in containers)
if ! grep -qx "127.0.0.1$HOSTALIASES # slurm-ci" /etc/hosts; then
  h=$(grep -v '# slurm-ci$' /etc/hosts || true)
  printf '%s\n127.0.0.1%s # slurm-ci\n' "$h" "$HOSTALIASES" > /etc/hosts
fi

# 4. daemons
alive "$D/slurmctld.pid" || slurmctld
for i in $(seq 1 "$NODES"); do alive "$D/slurmd-n$i.pid" || slurmd -N "n$i"; done

# 5. wait until all nodes idle (or busy with jobs)
for i in $(seq 300); do
  bad=$(sinfo -h -N -o '%N %t' 2>/dev/null | awk '$2!~/^(idle|alloc|mix)$/' | wc -l || true)
  if sinfo -h >/dev/null 2>&1 && [ "$bad" = 0 ]; then
    printf 'slurm up in %.1fs\n' "$(echo "$(date +%s.%N) - $T0" | bc)"; sinfo -N; exit 0
  fi
  sleep 0.1
done
echo "slurm did not come up; see $D/log" >&2; sinfo -N -l >&2 || true; exit 1
