#!/usr/bin/env bash
# Launches `cavpt-dist sweep` — the paper's table (or any grid of runs) in one MPI job — on this
# machine, over the nodes of a hostfile, or as one Slurm job (one allocation). The sweep itself
# splits the ranks into groups of --ranks-per-job, trains every job in
# ROOT/<dataset>/<method>/<shots>shot/<grid>/seed<S>, isolates failing jobs, skips finished ones
# and resumes interrupted ones when started again, and prints the report at the end.
#
#   cluster/sweep.sh --np 2 --methods coop,vlp_cavpt --datasets eurosat,dtd --ranks-per-job 1 \
#       --data-root ~/data --model ~/models/ViT-B-32 --output runs/table1
#   cluster/sweep.sh --hostfile cluster/hosts --ppn 8 --plan table3.yaml --ranks-per-job 4 --data-root /shared/data ...
#   cluster/sweep.sh --slurm --sbatch-arg=--nodes=4 --sbatch-arg=--ntasks-per-node=8 --plan table1.yaml ...
#
# Launch options (everything else goes to `cavpt-dist sweep`; see `cavpt-dist sweep --help`):
#   --np N             ranks on this machine (default 2)
#   --hostfile FILE    run over the nodes in FILE with --ppn ranks each (through run-hostfile.sh)
#   --ppn N            ranks per node with --hostfile (default 1)
#   --slurm            submit one Slurm job running the sweep (through slurm.sbatch)
#   --sbatch-arg ARG   one more sbatch option, e.g. --sbatch-arg=--partition=cpu (repeatable)
#   --dry-run          print the launch command and run nothing (`cavpt-dist sweep --dry-run`, given
#                      after `--`, lists the jobs instead)
#
# Environment: CAVPT_DIST_BINARY (default <repo>/.build/release/cavpt-dist).
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
binary=${CAVPT_DIST_BINARY:-$(dirname "$script_dir")/.build/release/cavpt-dist}
np=2 hostfile='' ppn=1 slurm=0 dry_run=0
sbatch_args=() sweep_args=()

die() { printf 'sweep: error: %s\n' "$*" >&2; exit 2; }
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
        --np=* | --hostfile=* | --ppn=* | --sbatch-arg=*) value=${1#*=}; option=${1%%=*}; shift; set -- "$option" "$value" "$@"; continue ;;
        --np | -np | --hostfile | --ppn | --sbatch-arg)
            [ $# -ge 2 ] || die "$1 needs a value"
            case "$1" in
                --np | -np) positive "$1" "$2"; np=$2 ;;
                --hostfile) [ -r "$2" ] || die "hostfile $2 cannot be read"; hostfile=$2 ;;
                --ppn) positive "$1" "$2"; ppn=$2 ;;
                --sbatch-arg) sbatch_args+=("$2") ;;
            esac
            shift 2
            ;;
        --slurm) slurm=1; shift ;;
        --dry-run) dry_run=1; shift ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        --) shift; sweep_args+=("$@"); break ;;
        *) sweep_args+=("$1"); shift ;;
    esac
done
[ ${#sweep_args[@]} -gt 0 ] || die "give the sweep's arguments (--datasets, --methods, … or --plan FILE); see cavpt-dist sweep --help"

if [ $slurm = 1 ]; then
    launch=(sbatch --job-name=cavpt-sweep ${sbatch_args[@]+"${sbatch_args[@]}"} "$script_dir/slurm.sbatch" "${sweep_args[@]}")
    if [ $dry_run = 1 ]; then echo "CAVPT_DIST_COMMAND=sweep CAVPT_DIST_BINARY=$(quote "$binary") $(quote "${launch[@]}")"; exit 0; fi
    command -v sbatch >/dev/null || die "sbatch not found: run on a Slurm login node, or drop --slurm"
    CAVPT_DIST_COMMAND=sweep CAVPT_DIST_BINARY=$binary exec "${launch[@]}"
fi
if [ -n "$hostfile" ]; then
    launch=("$script_dir/run-hostfile.sh" --hostfile "$hostfile" --ppn "$ppn")
    [ $dry_run = 0 ] || launch+=(--dry-run)
    CAVPT_DIST_COMMAND=sweep CAVPT_DIST_BINARY=$binary exec "${launch[@]}" -- "${sweep_args[@]}"
fi
launch=(mpirun -np "$np" --bind-to none "$binary" sweep "${sweep_args[@]}")
if [ $dry_run = 1 ]; then quote "${launch[@]}"; echo; exit 0; fi
[ -x "$binary" ] || die "$binary is not an executable; build it (swift build -c release) or set CAVPT_DIST_BINARY"
# Containers and CI run as root, which Open MPI refuses unless told; a normal user is unaffected.
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
exec "${launch[@]}"
