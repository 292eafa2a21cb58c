#!/usr/bin/env bash
# Runs the paper's table as a sweep: every method × dataset × seed gets its own training run in
# runs/<dataset>/<method>/seed<k> (train's own layout; a dataset given as a YAML file is named by
# the file, without folders or .yaml), with the launcher's output in the run's launcher.log, either locally (a bounded number of runs at a time) or as one
# Slurm job array through cluster/slurm.sbatch. Runs whose results.json exists are skipped, so an
# interrupted sweep is finished by starting it again. `cavpt-dist report runs` then prints the tables
# (`cavpt-dist sweep` does the same inside one MPI job, with fault isolation and resume).
#
#   cluster/sweep.sh --data-root ~/data --model ~/models/ViT-B-32 --jobs 2 --np 1
#   cluster/sweep.sh --slurm --np 4 --jobs 8 --data-root /shared/data --model /shared/ViT-B-32
#   cluster/sweep.sh --methods coop,vpt_deep,vlp_cavpt --datasets eurosat,dtd --dry-run
#   cluster/sweep.sh ... -- --set train.epochs=50     (everything after -- goes to every `train`)
#
# Options:
#   --methods LIST     comma-separated method presets (default vlp_cavpt)
#   --datasets LIST    comma-separated dataset names (default: the paper's eight, see below)
#   --seeds LIST       comma-separated seeds (default 1,2,3)
#   --runs DIR         where run folders go (default runs)
#   --data-root DIR    passed to train
#   --model PATH       passed to train
#   --np N             MPI ranks per run (local default 1: the binary runs without mpirun;
#                      --slurm default: the #SBATCH lines of slurm.sbatch)
#   --jobs J           local: runs at a time (default 1); --slurm: array tasks at a time (default: all)
#   --resume           pass --resume to runs whose folder exists without results.json (interrupted)
#   --slurm            submit a job array with sbatch instead of running here
#   --sbatch-arg ARG   one more sbatch option, e.g. --sbatch-arg=--partition=cpu (repeatable)
#   --dry-run          print what would run (commands, run list, sbatch line) and run nothing
#
# Environment: CAVPT_DIST_BINARY (default <repo>/.build/release/cavpt-dist); CAVPT_DIST_BLAS_THREADS
# (local default: cores ÷ (runs at a time × ranks per run), so concurrent runs do not oversubscribe).
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(dirname "$script_dir")
binary=${CAVPT_DIST_BINARY:-$repo_dir/.build/release/cavpt-dist}

methods=vlp_cavpt
datasets=eurosat,caltech101,oxford_flowers,food101,fgvc_aircraft,dtd,oxford_pets,stanford_cars
seeds=1,2,3
runs_dir=runs
data_root='' model='' np='' jobs='' resume=0 slurm=0 dry_run=0
sbatch_args=() train_args=()

die() { printf 'sweep: error: %s\n' "$*" >&2; exit 2; }
# Shell-quotes words, leaving plain ones bare, so printed commands can be pasted and lists eval'ed.
quote() {
    local word out=()
    for word in "$@"; do
        if [[ $word =~ ^[A-Za-z0-9_./:=,%+@-]+$ ]]; then out+=("$word"); else out+=("'${word//\'/\'\\\'\'}'"); fi
    done
    printf '%s' "${out[*]}"
}
positive() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 needs a positive integer, got \"$2\""; }

while [ $# -gt 0 ]; do
    option=$1
    case "$option" in
        --*=*) value=${option#*=}; option=${option%%=*}; shift; set -- "$option" "$value" "$@" ;;
    esac
    case "$1" in
        --methods | --datasets | --seeds | --runs | --data-root | --model | --np | --jobs | --sbatch-arg)
            [ $# -ge 2 ] || die "$1 needs a value"
            case "$1" in
                --methods) methods=$2 ;;
                --datasets) datasets=$2 ;;
                --seeds) seeds=$2 ;;
                --runs) runs_dir=$2 ;;
                --data-root) data_root=$2 ;;
                --model) model=$2 ;;
                --np) positive "$1" "$2"; np=$2 ;;
                --jobs) positive "$1" "$2"; jobs=$2 ;;
                --sbatch-arg) sbatch_args+=("$2") ;;
            esac
            shift 2
            ;;
        --resume) resume=1; shift ;;
        --slurm) slurm=1; shift ;;
        --dry-run) dry_run=1; shift ;;
        --) shift; train_args=("$@"); break ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) die "unknown option \"$1\" (train options go after --)" ;;
    esac
done

IFS=, read -r -a method_list <<< "$methods"
IFS=, read -r -a dataset_list <<< "$datasets"
IFS=, read -r -a seed_list <<< "$seeds"
for seed in "${seed_list[@]}"; do [[ $seed =~ ^[0-9]+$ ]] || die "seed \"$seed\" is not a number"; done

# Every run's arguments to `cavpt-dist train`, one shell-quoted line each; done runs are reported.
pending=() outputs=()
done_count=0
for method in "${method_list[@]}"; do
    for dataset in "${dataset_list[@]}"; do
        for seed in "${seed_list[@]}"; do
            name=$(basename "$dataset"); name=${name%.yaml}; name=${name%.yml}
            output=$runs_dir/$name/$method/seed$seed
            if [ -f "$output/results.json" ]; then
                echo "# skip $output: results.json exists"
                done_count=$((done_count + 1))
                continue
            fi
            args=(--dataset "$dataset" --method "$method" --seed "$seed" --output "$output")
            [ -z "$data_root" ] || args+=(--data-root "$data_root")
            [ -z "$model" ] || args+=(--model "$model")
            if [ $resume = 1 ] && [ -d "$output" ]; then args+=(--resume); fi
            args+=(${train_args[@]+"${train_args[@]}"})
            pending+=("$(quote "${args[@]}")")
            outputs+=("$output")
        done
    done
done

if [ ${#pending[@]} -eq 0 ]; then
    echo "# nothing to run: all $done_count runs have results.json"
    exit 0
fi

if [ $slurm = 1 ]; then
    # One array task per pending run; slurm.sbatch reads its line of the run list. The list is named
    # by its content, so the same sweep submitted twice reuses one file.
    list_text=$(printf '%s\n' "${pending[@]}")
    list_file=$(cd "$(dirname "$runs_dir")" && pwd)/$(basename "$runs_dir")/.sweep/runs-$(printf '%s\n' "$list_text" | cksum | cut -d' ' -f1).list
    array="0-$(( ${#pending[@]} - 1 ))${jobs:+%$jobs}"
    submit=(sbatch --array="$array" --job-name=cavpt-sweep)
    [ -z "$np" ] || submit+=(--nodes=1 --ntasks-per-node="$np")
    submit+=(--output="$runs_dir/.sweep/slurm-%A_%a.out"
             --export="ALL,CAVPT_DIST_RUN_LIST=$list_file,CAVPT_DIST_BINARY=$binary"
             ${sbatch_args[@]+"${sbatch_args[@]}"} "$script_dir/slurm.sbatch")
    echo "# ${#pending[@]} runs to submit, $done_count done already; run list $list_file:"
    printf '#   %s\n' "${pending[@]}"
    quote "${submit[@]}"
    echo
    [ $dry_run = 0 ] || exit 0
    command -v sbatch >/dev/null || die "sbatch not found: run on a Slurm login node, or drop --slurm"
    mkdir -p "$(dirname "$list_file")"
    printf '%s\n' "$list_text" > "$list_file"
    exec "${submit[@]}"
fi

# Local: J runs at a time, each with N ranks; BLAS threads share the cores among all of them.
np=${np:-1}
jobs=${jobs:-1}
cores=$(nproc)
threads=${CAVPT_DIST_BLAS_THREADS:-$(( cores / (jobs * np) > 0 ? cores / (jobs * np) : 1 ))}
launch=("$binary")
if [ "$np" -gt 1 ]; then launch=(mpirun -np "$np" --bind-to none "$binary"); fi
echo "# ${#pending[@]} runs to do, $done_count done already; $jobs at a time, $np ranks each, $threads BLAS threads per rank"

commands=()
for line in "${pending[@]}"; do
    commands+=("CAVPT_DIST_BLAS_THREADS=$threads $(quote "${launch[@]}") train $line")
done
if [ $dry_run = 1 ]; then
    printf '%s\n' "${commands[@]}"
    exit 0
fi
[ -x "$binary" ] || die "$binary is not an executable; build it (swift build -c release) or set CAVPT_DIST_BINARY"
# Containers and CI run as root, which Open MPI refuses unless told; a normal user is unaffected.
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export CAVPT_DIST_BLAS_THREADS=$threads

declare -A run_of_pid=()
failed=()
finished=0
# Reaps every run that has ended (bash keeps a finished child's status for `wait PID`).
reap() {
    local pid status
    for pid in "${!run_of_pid[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            status=0
            wait "$pid" || status=$?
            finished=$((finished + 1))
            if [ $status = 0 ]; then
                echo "done   ${run_of_pid[$pid]}"
            else
                echo "FAILED ${run_of_pid[$pid]} (exit $status, log ${run_of_pid[$pid]}/launcher.log)"
                failed+=("${run_of_pid[$pid]}")
            fi
            unset "run_of_pid[$pid]"
        fi
    done
}
# Ctrl-C or a cancelled job: end the runs this script started (mpirun passes SIGTERM to its ranks).
trap 'trap - INT TERM; [ ${#run_of_pid[@]} -eq 0 ] || kill -TERM "${!run_of_pid[@]}" 2>/dev/null; exit 130' INT TERM

for index in "${!pending[@]}"; do
    while [ ${#run_of_pid[@]} -ge "$jobs" ]; do
        wait -n || true
        reap
    done
    eval "args=(${pending[$index]})"
    output=${outputs[$index]}
    mkdir -p "$output"
    echo "start  $output"
    "${launch[@]}" train "${args[@]}" > "$output/launcher.log" 2>&1 &
    run_of_pid[$!]=$output
done
while [ ${#run_of_pid[@]} -gt 0 ]; do
    wait -n || true
    reap
done
echo "# $finished runs finished, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
