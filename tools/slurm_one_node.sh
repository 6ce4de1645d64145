#!/usr/bin/env bash
# tools/slurm_one_node.sh: a one-node Slurm cluster on this machine, as a Kaldi user
# would run one to try slurm.pl (Debian's slurm-wlm + munge). Needs root.
#
#   bash tools/slurm_one_node.sh install   # apt-get install slurm-wlm munge (if missing)
#   bash tools/slurm_one_node.sh start     # write slurm.conf, start munged, slurmctld, slurmd
#   bash tools/slurm_one_node.sh stop
# Re-running start on a running cluster is a no-op; `sinfo` then shows one idle node.
set -euo pipefail
conf_dir=/etc/slurm
state=/var/lib/speechlm-slurm
node=$(hostname -s)
cpus=$(nproc)
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))

case "${1:-start}" in
  install)
    command -v slurmctld >/dev/null && command -v munged >/dev/null && exit 0
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends slurm-wlm munge \
      || { apt-get update && apt-get install -y --no-install-recommends slurm-wlm munge; }
    ;;
  start)
    if pgrep -x slurmd >/dev/null && pgrep -x slurmctld >/dev/null \
        && sinfo -h -o %T 2>/dev/null | grep -qE "idle|mix"; then
      echo "slurm: already up"; exit 0
    fi
    mkdir -p "${conf_dir}" "${state}/ctld" "${state}/d" /var/log/slurm /run/munge /var/lib/munge
    if [ ! -s /etc/munge/munge.key ]; then
      mkdir -p /etc/munge; dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
    fi
    chown -R munge: /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
    chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
    pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
    cat > "${conf_dir}/slurm.conf" <<CONF
ClusterName=speechlm
SlurmctldHost=${node}
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
StateSaveLocation=${state}/ctld
SlurmdSpoolDir=${state}/d
SlurmctldPidFile=${state}/slurmctld.pid
SlurmdPidFile=${state}/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MpiDefault=none
NodeName=${node} CPUs=${cpus} RealMemory=${mem_mb} State=UNKNOWN
PartitionName=cpu Nodes=${node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
    rm -f "${conf_dir}/cgroup.conf"  # 22.05 knows no "disabled"; proctrack/linuxproc needs none
    pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
    pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
    for _ in $(seq 1 30); do
      if sinfo -h -o %T 2>/dev/null | grep -qE "idle|mix"; then echo "slurm: up (${node}, ${cpus} CPUs)"; exit 0; fi
      sleep 1
    done
    echo "slurm: the node did not come up; see /var/log/slurm/" >&2; sinfo >&2 || true; exit 1
    ;;
  stop)
    pkill -x slurmd || true; pkill -x slurmctld || true
    ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
