#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, bound to 127.0.0.1, for trying and testing cluster launches.
#
#   scripts/slurm-local.sh up       install slurm-wlm and munge if missing (apt-get, as root), write
#                                   slurm.conf for this machine, start munged, slurmctld and slurmd, and
#                                   wait until the node is idle; does nothing more when it already is
#   scripts/slurm-local.sh status   the daemons and sinfo's view of the node
#   scripts/slurm-local.sh down     stop the daemons and remove their state and the slurm.conf written here
#
# The node has this machine's CPUs and memory (as `slurmd -C` measures them) and one partition, `debug`
# (the default, 60-minute limit). Process tracking and task launch work without cgroups (containers):
# proctrack/linuxproc, task/none. Jobs run as root; no accounting database (sacct has nothing to show;
# `scontrol show job ID` keeps a finished job's state and exit code for MinJobAge seconds).
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# written by convnextpose-eval scripts/slurm-local.sh"
STATE=/var/lib/slurm-local
LOGS=/var/log/slurm-local
RUN=/run/slurm-local
PARTITION=debug

say() { echo "slurm-local: $*" >&2; }
die() { say "error: $*"; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts system daemons)"; }

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && command -v sinfo >/dev/null; then
        return
    fi
    say "installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null
}

node_name() { hostname -s; }

write_conf() {
    local node cpus memory
    node=$(node_name)
    # slurmd -C prints this machine as slurm.conf wants it: CPUs=2 Boards=1 ... RealMemory=24105
    cpus=$(slurmd -C | sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' | head -1)
    memory=$(slurmd -C | sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' | head -1)
    [ -n "$cpus" ] && [ -n "$memory" ] || die "slurmd -C did not report CPUs and RealMemory"
    if [ -e "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
        die "$CONF exists and was not written by this script; not touching a real cluster's configuration"
    fi
    mkdir -p "$(dirname "$CONF")"
    cat >"$CONF.tmp" <<EOF
$MARK
ClusterName=local
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=6817
SlurmdPort=6818
# Daemons bind to the addresses named here (127.0.0.1), not to every interface.
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# No cgroups in a container: track processes through /proc, launch tasks without binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=2048
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
KillWait=10
MinJobAge=600
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=$PARTITION Nodes=$node Default=YES MaxTime=60 State=UP
EOF
    mv "$CONF.tmp" "$CONF"
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_munge() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        return
    fi
    mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey --create --keyfile=/etc/munge/munge.key
    fi
    # A munged once started as root leaves root-owned files behind (its log, seed, socket, key), which the
    # munge user's munged then refuses ("Logfile is insecure: ... should be owned by UID ..."): give every
    # one of them back to munge, with the modes munged accepts.
    chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
    chmod 0700 /etc/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    chmod 0400 /etc/munge/munge.key
    find /var/log/munge /var/lib/munge -type f -exec chmod go-rwx {} +
    runuser -u munge -- /usr/sbin/munged
    mkdir -p "$RUN" && touch "$RUN/munged.ours"
    for _ in $(seq 50); do
        munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return
        sleep 0.2
    done
    die "munged did not answer"
}

node_state() { sinfo -h -n "$(node_name)" -o %T 2>/dev/null | head -1; }

wait_idle() {
    local state=""
    for _ in $(seq 120); do
        state=$(node_state || true)
        case "$state" in
            idle | mixed | allocated) return ;;
            *down* | *drain* | *fail*) scontrol update nodename="$(node_name)" state=resume >/dev/null 2>&1 || true ;;
        esac
        sleep 0.5
    done
    die "node $(node_name) is '${state:-not answering}' after 60 s; see $LOGS/"
}

up() {
    need_root
    install_packages
    if [ -f "$CONF" ] && grep -qF "$MARK" "$CONF" && pid_alive "$RUN/slurmctld.pid" && pid_alive "$RUN/slurmd.pid"; then
        wait_idle
        say "up: partition $PARTITION, node $(node_name) $(node_state)"
        return
    fi
    stop_daemons
    write_conf
    mkdir -p "$STATE/ctld" "$STATE/d" "$LOGS" "$RUN"
    start_munge
    slurmctld -i
    slurmd
    wait_idle
    # A node that was down in an earlier state comes back here too.
    scontrol update nodename="$(node_name)" state=resume >/dev/null 2>&1 || true
    say "up: partition $PARTITION, node $(node_name) $(node_state)"
}

stop_pidfile() {
    local file=$1
    if pid_alive "$file"; then
        local pid
        pid=$(cat "$file")
        kill "$pid"
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$file"
}

stop_daemons() {
    stop_pidfile "$RUN/slurmd.pid"
    stop_pidfile "$RUN/slurmctld.pid"
}

down() {
    need_root
    if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
        die "$CONF was not written by this script; not stopping a real cluster"
    fi
    if [ -f "$CONF" ] && command -v scancel >/dev/null && pid_alive "$RUN/slurmctld.pid"; then
        scancel --full --quiet --partition="$PARTITION" 2>/dev/null || true
    fi
    stop_daemons
    if [ -f "$RUN/munged.ours" ]; then stop_pidfile /run/munge/munged.pid; fi
    rm -rf "$STATE" "$RUN" "$LOGS"
    rm -f "$CONF"
    say "down"
}

status() {
    local code=0
    for daemon in slurmctld slurmd; do
        if pid_alive "$RUN/$daemon.pid"; then echo "$daemon: running (pid $(cat "$RUN/$daemon.pid"))"; else echo "$daemon: stopped"; code=1; fi
    done
    if [ "$code" = 0 ]; then sinfo; fi
    return "$code"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
