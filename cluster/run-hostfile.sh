#!/usr/bin/env bash
# Starts one cavpt-dist training run with mpirun: on this workstation (-np N), or over the nodes of
# an Open MPI hostfile (--hostfile FILE --ppn N) without a scheduler. Under Slurm use slurm.sbatch.
#
#   cluster/run-hostfile.sh -np 2 configs/my-run.yaml --set train.epochs=50
#   cluster/run-hostfile.sh --hostfile cluster/hosts --ppn 4 configs/my-run.yaml
#   cluster/run-hostfile.sh --hostfile cluster/hosts --ppn 2 --threads 8 --pin -- --dataset dtd --method coop
#
# Options (before the train arguments; `--` ends them):
#   -np N              ranks on this machine (workstation form; default 2)
#   --hostfile FILE    run on the nodes in FILE (see cluster/hostfile.example)
#   --ppn N            ranks per node with --hostfile (default 1); all nodes together run
#                      N × nodes ranks, placed by --map-by ppr:N:node
#   --threads T        BLAS threads per rank (CAVPT_DIST_BLAS_THREADS); default: cavpt-dist's own,
#                      cores on the node ÷ ranks on the node
#   --pin              bind each rank to T cores of its own (--map-by ...:PE=T --bind-to core) instead of
#                      --bind-to none; keeps ranks from sharing cores on busy or large nodes
#   --mpirun-arg ARG   one more mpirun option, e.g. --mpirun-arg=--oversubscribe (repeatable)
#   --dry-run          print the mpirun command and run nothing
# The first train argument, when it does not start with "-", is the config file (--config).
#
# Environment: CAVPT_DIST_BINARY (default <repo>/.build/release/cavpt-dist, the same path on every
# node), CAVPT_DIST_COMMAND (default train). Variables other nodes need are forwarded with -x:
# CAVPT_DIST_BLAS_THREADS, OPENBLAS_CORETYPE, CAVPT_DIST_NO_REEXEC, LD_LIBRARY_PATH when set, and PATH.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
binary=${CAVPT_DIST_BINARY:-$(dirname "$script_dir")/.build/release/cavpt-dist}
command=${CAVPT_DIST_COMMAND:-train}
ranks=2 hostfile='' ppn=1 threads='' pin=0 dry_run=0
extra=()

die() { printf 'run-hostfile: error: %s\n' "$*" >&2; exit 2; }
positive() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 needs a positive integer, got \"$2\""; }
quote() {
    local word out=()
    for word in "$@"; do
        if [[ $word =~ ^[A-Za-z0-9_./:=,%+@-]+$ ]]; then out+=("$word"); else out+=("'${word//\'/\'\\\'\'}'"); fi
    done
    printf '%s' "${out[*]}"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --*=*) value=${1#*=}; option=${1%%=*}; shift; set -- "$option" "$value" "$@"; continue ;;
        -np | -n | --np | --hostfile | --ppn | --threads | --mpirun-arg)
            [ $# -ge 2 ] || die "$1 needs a value"
            case "$1" in
                -np | -n | --np) positive "$1" "$2"; ranks=$2 ;;
                --hostfile) [ -r "$2" ] || die "hostfile $2 cannot be read"; hostfile=$2 ;;
                --ppn) positive "$1" "$2"; ppn=$2 ;;
                --threads) positive "$1" "$2"; threads=$2 ;;
                --mpirun-arg) extra+=("$2") ;;
            esac
            shift 2
            ;;
        --pin) pin=1; shift ;;
        --dry-run) dry_run=1; shift ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        --) shift; break ;;
        *) break ;;  # the train arguments
    esac
done
# --dry-run is never a train option: honour it wherever it stands (also after the config file).
train_args=()
for word in "$@"; do
    if [ "$word" = --dry-run ]; then dry_run=1; else train_args+=("$word"); fi
done
set -- ${train_args[@]+"${train_args[@]}"}
if [ "$command" = train ] && [ $# -gt 0 ] && [[ $1 != -* ]]; then set -- --config "$@"; fi

per_node=$([ -n "$hostfile" ] && echo "$ppn" || echo "$ranks")
if [ $pin = 1 ] && [ -z "$threads" ]; then
    # Assumes the other nodes have as many cores as this one.
    threads=$(( $(nproc) / per_node > 0 ? $(nproc) / per_node : 1 ))
fi
[ -z "$threads" ] || export CAVPT_DIST_BLAS_THREADS=$threads

launch=(mpirun)
if [ -n "$hostfile" ]; then
    # ppr = processes per resource: N ranks on every node of the hostfile; -np follows from it.
    mapping=ppr:$ppn:node
    [ $pin = 0 ] || mapping+=:PE=$threads
    launch+=(--hostfile "$hostfile" --map-by "$mapping")
    # Only OMPI_* variables reach other nodes by themselves; name the others.
    for name in CAVPT_DIST_BLAS_THREADS OPENBLAS_CORETYPE CAVPT_DIST_NO_REEXEC LD_LIBRARY_PATH PATH; do
        if [ -n "${!name:-}" ]; then launch+=(-x "$name"); fi
    done
else
    launch+=(-np "$ranks")
    [ $pin = 0 ] || launch+=(--map-by "slot:PE=$threads")
fi
# Without --pin no binding: Open MPI would otherwise pin each rank to one core (or socket), and
# its BLAS threads would pile onto it.
if [ $pin = 1 ]; then launch+=(--bind-to core); else launch+=(--bind-to none); fi
launch+=(${extra[@]+"${extra[@]}"} "$binary" "$command" "$@")

if [ $dry_run = 1 ]; then
    echo "${threads:+CAVPT_DIST_BLAS_THREADS=$threads }$(quote "${launch[@]}")"
    exit 0
fi
[ -x "$binary" ] || die "$binary is not an executable; build it (swift build -c release) or set CAVPT_DIST_BINARY"
# Containers and CI run as root, which Open MPI refuses unless told; a normal user is unaffected.
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
exec "${launch[@]}"
