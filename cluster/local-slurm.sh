#!/usr/bin/env bash
# Brings a real single-node Slurm (slurmctld + slurmd + munge) up and down on this machine, for
# trying cluster/slurm.sbatch and cluster/sweep.sh --slurm locally and for the ClusterTests.
#
#   cluster/local-slurm.sh start     start munged (if no munge daemon answers), slurmctld and slurmd
#   cluster/local-slurm.sh stop      cancel its jobs, stop what `start` started (by PID file)
#   cluster/local-slurm.sh status    say what runs; exit 0 when the node is up, 3 when not
#   cluster/local-slurm.sh env       print `export SLURM_CONF=...` for the client commands
#
# Then: eval "$(cluster/local-slurm.sh env)"; sbatch cluster/slurm.sbatch ...; squeue; sinfo
#
# Needs root (slurmd runs jobs as their user) and the Debian/Ubuntu packages
#   apt-get install -y slurm-wlm munge libpmix-dev
# (libpmix-dev provides the unversioned libpmix.so that `srun --mpi=pmix` loads). Nothing here uses
# systemd: the daemons are started directly and found again through their PID files, never by process
# name (/usr/sbin/slurmd is a symlink to slurmd-wlm, and other users' daemons must not be touched).
#
# Settings (environment):
#   CAVPT_SLURM_DIR    state, spool, logs and slurm.conf (default /tmp/cavpt-slurm; keep it short:
#                      PMIx puts Unix sockets below it, and their paths are limited to 107 bytes)
#   CAVPT_SLURM_CPUS   CPUs the node declares (default: the real count, at least 8). More than exist is
#                      fine for testing (SlurmdParameters=config_overrides): 3 single-CPU tasks then fit
#                      on a 2-core machine, as mpirun --oversubscribe would allow.
#   CAVPT_SLURM_PORT   slurmctld port; slurmd uses the next one (default 6817, i.e. 6817/6818)
set -euo pipefail

state_dir=${CAVPT_SLURM_DIR:-/tmp/cavpt-slurm}
ctld_port=${CAVPT_SLURM_PORT:-6817}
slurmd_port=$((ctld_port + 1))
conf=$state_dir/slurm.conf
packages="slurm-wlm munge libpmix-dev"

say() { printf 'local-slurm: %s\n' "$*"; }
die() { printf 'local-slurm: error: %s\n' "$*" >&2; exit 1; }

# Whether process PID is alive and runs a binary whose name starts with NAME. (A stale PID file may
# name a PID the kernel has since given to something else; a zombie has no exe link and counts as gone.)
running() {
    local exe
    [ -n "$1" ] && exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
    case "${exe##*/}" in "$2"*) return 0 ;; *) return 1 ;; esac
}

# The PID in FILE if that process is running NAME.
live_pid() {
    local pid
    [ -r "$1" ] || return 1
    pid=$(tr -dc '0-9' < "$1")
    running "$pid" "$2" && printf '%s\n' "$pid"
}

queue_empty() { [ -z "$(SLURM_CONF=$conf squeue -h -o %A 2>/dev/null)" ]; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

# Waits up to $1 tenths of a second for the command in the remaining arguments to succeed.
wait_for() {
    local tenths=$1; shift
    local i
    for ((i = 0; i < tenths; i++)); do
        if "$@"; then return 0; fi
        sleep 0.1
    done
    "$@"
}

node_name() { slurmd -C | sed -n 's/^NodeName=\([^ ]*\).*/\1/p'; }

node_state() { SLURM_CONF=$conf sinfo -h -n "$1" -o %T 2>/dev/null | head -n 1; }

require_setup() {
    [ "$(id -u)" = 0 ] || die "must run as root (slurmd starts jobs as their owner); try: sudo $0 $*"
    local missing=()
    for tool in slurmctld slurmd sinfo scontrol squeue scancel munged munge unmunge mungekey runuser; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    [ ${#missing[@]} -eq 0 ] || die "${missing[*]} not found; install: apt-get install -y $packages"
}

start_munge() {
    if munge_works; then return 0; fi  # a munge daemon (ours or the system's) already answers
    # munged refuses to run as root ("Logfile is insecure"): key, socket and log folders belong to munge.
    install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
    install -d -o munge -g munge -m 0755 /run/munge
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey --create --keyfile=/etc/munge/munge.key
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0600 /etc/munge/munge.key
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid </dev/null >/dev/null 2>&1 9>&-
    # Remember that this script started it, so `stop` ends it and nothing else.
    wait_for 50 test -s /run/munge/munged.pid || die "munged wrote no /run/munge/munged.pid; see /var/log/munge/munged.log"
    cp /run/munge/munged.pid "$state_dir/munged.pid"
    wait_for 50 munge_works || die "munged started but munge -n | unmunge fails; see /var/log/munge/munged.log"
}

write_conf() {
    local name=$1 cpus memory
    # `slurmd -C` prints the node's real CPUs and memory. RealMemory is declared below what it reports
    # (the kernel's figure moves a little; a node whose memory is under its declared value drains).
    read -r cpus memory < <(slurmd -C | sed -n 's/^NodeName=.* CPUs=\([0-9]*\) .*RealMemory=\([0-9]*\).*/\1 \2/p')
    if [ -z "${cpus:-}" ] || [ -z "${memory:-}" ]; then die "could not read CPUs and RealMemory from \`slurmd -C\`"; fi
    cpus=${CAVPT_SLURM_CPUS:-$(( cpus > 8 ? cpus : 8 ))}
    memory=$(( memory * 9 / 10 ))
    cat > "$conf" <<EOF
# Written by cluster/local-slurm.sh: one node, everything root-owned, state under $state_dir.
ClusterName=cavpt-local
SlurmctldHost=$name(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$state_dir/state
SlurmdSpoolDir=$state_dir/spool
SlurmctldPidFile=$state_dir/slurmctld.pid
SlurmdPidFile=$state_dir/slurmd.pid
SlurmctldLogFile=$state_dir/log/slurmctld.log
SlurmdLogFile=$state_dir/log/slurmd.log
# No cgroups and no systemd here: track processes through /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Open MPI reads the PMIx server slurmstepd provides (Debian's Open MPI has no PMI-1/2 support).
MpiDefault=pmix
SwitchType=switch/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
# A node that went down comes back when its slurmd registers again.
ReturnToService=2
# Trust the CPU count below rather than the hardware, so tests may place more tasks than cores.
SlurmdParameters=config_overrides
InactiveLimit=0
KillWait=5
# Finished jobs stay visible to squeue/scontrol for 5 minutes (how callers read their final state).
MinJobAge=300
NodeName=$name NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$name Default=YES MaxTime=INFINITE State=UP
EOF
}

daemons_up() {
    live_pid "$state_dir/slurmctld.pid" slurmctld >/dev/null && live_pid "$state_dir/slurmd.pid" slurmd >/dev/null \
        && port_open "$ctld_port" && port_open "$slurmd_port"
}

node_ready() {
    case "$(node_state "$1")" in
        idle | mixed | allocated | completing) return 0 ;;
        *) return 1 ;;
    esac
}

# A drained or down node stays so across restarts (slurmctld keeps node state); put it back in service.
resume_node() {
    local name=$1 current
    current=$(node_state "$name")
    case "$current" in
        drain* | down* | fail*)
            say "node $name is $current; resuming it"
            SLURM_CONF=$conf scontrol update nodename="$name" state=resume
            ;;
    esac
}

start() {
    require_setup start
    local name
    name=$(node_name)
    [ -n "$name" ] || die "\`slurmd -C\` printed no NodeName"
    mkdir -p "$state_dir"
    # Serialises start and stop; the daemons are started with fd 9 closed, so they never hold it.
    exec 9> "$state_dir/lock"
    flock -w 60 9 || die "another local-slurm.sh holds $state_dir/lock"

    if daemons_up; then
        say "already running (slurmctld pid $(cat "$state_dir/slurmctld.pid"), slurmd pid $(cat "$state_dir/slurmd.pid"))"
    else
        stop_daemons  # whatever half of a previous start is still alive
        for port in "$ctld_port" "$slurmd_port"; do
            # (A daemon just stopped may hold its port for a moment while it exits.)
            wait_for 30 eval "! port_open $port" \
                || die "port $port is in use by another program; set CAVPT_SLURM_PORT to another base port"
        done
        mkdir -p "$state_dir/state" "$state_dir/spool" "$state_dir/log"
        start_munge
        write_conf "$name"
        # -c: start from empty job state; the jobs of an earlier local cluster are of no use.
        slurmctld -c -f "$conf" </dev/null >>"$state_dir/log/daemons.out" 2>&1 9>&- || die "slurmctld failed to start; see $state_dir/log/slurmctld.log"
        wait_for 100 port_open "$ctld_port" \
            || die "slurmctld is not listening on port $ctld_port; see $state_dir/log/slurmctld.log"
        slurmd -f "$conf" </dev/null >>"$state_dir/log/daemons.out" 2>&1 9>&- || die "slurmd failed to start; see $state_dir/log/slurmd.log"
        wait_for 100 daemons_up || die "slurmd is not up; see $state_dir/log/slurmd.log and slurmctld.log"
    fi

    wait_for 50 node_ready "$name" || resume_node "$name"
    wait_for 100 node_ready "$name" \
        || die "node $name is $(node_state "$name"), not idle; see $state_dir/log/slurmctld.log"
    say "node $name is $(node_state "$name"); clients need: export SLURM_CONF=$conf"
}

# Stops the daemons recorded in PID files (arguments FILE NAME FILE NAME ...): SIGTERM to all of them,
# then up to 10 s for them to exit before SIGKILL.
stop_pid_files() {
    local pids=() names=() pid i
    while [ $# -ge 2 ]; do
        if pid=$(live_pid "$1" "$2"); then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            names+=("$2")
        fi
        rm -f "$1"
        shift 2
    done
    for i in "${!pids[@]}"; do
        pid=${pids[$i]}
        if ! wait_for 100 eval "! running $pid ${names[$i]}"; then
            say "${names[$i]} (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        say "stopped ${names[$i]} (pid $pid)"
    done
}

stop_daemons() {
    stop_pid_files "$state_dir/slurmd.pid" slurmd "$state_dir/slurmctld.pid" slurmctld
}

stop() {
    [ "$(id -u)" = 0 ] || die "must run as root"
    [ -d "$state_dir" ] || { say "nothing to stop ($state_dir does not exist)"; return 0; }
    exec 9> "$state_dir/lock"
    flock -w 60 9 || die "another local-slurm.sh holds $state_dir/lock"
    # Cancel this cluster's jobs first, so no job step outlives slurmd.
    if live_pid "$state_dir/slurmctld.pid" slurmctld >/dev/null; then
        local jobs
        jobs=$(SLURM_CONF=$conf squeue -h -o %A 2>/dev/null | tr '\n' ' ')
        if [ -n "${jobs// /}" ]; then
            # shellcheck disable=SC2086  # one job id per word
            SLURM_CONF=$conf scancel $jobs 2>/dev/null || true
            wait_for 100 queue_empty || true
        fi
    fi
    # munged too, if this script started it (a system munge daemon stays); all end in parallel.
    local daemons=("$state_dir/slurmd.pid" slurmd "$state_dir/slurmctld.pid" slurmctld)
    [ ! -f "$state_dir/munged.pid" ] || daemons+=("$state_dir/munged.pid" munged)
    stop_pid_files "${daemons[@]}"
}

status() {
    local up=0 pid name
    if munge_works; then say "munge: answers"; else say "munge: not answering"; up=3; fi
    for daemon in slurmctld slurmd; do
        if pid=$(live_pid "$state_dir/$daemon.pid" "$daemon"); then
            say "$daemon: running, pid $pid"
        else
            say "$daemon: not running"
            up=3
        fi
    done
    if [ $up = 0 ]; then
        name=$(node_name)
        say "node $name: $(node_state "$name")"
        node_ready "$name" || up=3
        SLURM_CONF=$conf sinfo
    fi
    return $up
}

# Daemons must not inherit the caller's descriptors: a pipe or lock held by munged or slurmd would keep
# the caller (a test harness, `... | tee`) waiting for an end that never comes. Bash keeps 255 (the
# script) close-on-exec itself.
for fd_path in "/proc/$$/fd"/*; do
    fd=${fd_path##*/}
    if [ "$fd" -gt 2 ] && [ "$fd" -lt 255 ]; then eval "exec $fd>&-"; fi
done

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) printf 'export SLURM_CONF=%q\n' "$conf" ;;
    *) printf 'usage: %s start|stop|status|env\n' "$0" >&2; exit 2 ;;
esac
