#!/usr/bin/env bash
# A multi-host job on one machine: N JAX processes x D fake CPU devices each, talking over
# 127.0.0.1 with gloo collectives, exactly as hosts of a pod slice would (each reads its
# shard of the data; process 0 writes the metrics). Good for trying the multi-host path.
#
#   launch/local_multiprocess.sh --workdir=/tmp/jarl_mp [--processes=2] [--devices=2] \
#       [--config=configs/pretrain.py:demo] [--port=12355] [--dry-run] \
#       [-- --config.total_steps=50 ...]
#
# Process i logs to <workdir>/process_<i>.log; the script waits for all and fails if any does.
set -euo pipefail
source "$(dirname "$0")/common.sh"

processes=2 devices=2 config="configs/pretrain.py:demo" workdir="" port=12355
extra=()
while (($#)); do
  case "$1" in
    --processes=*) processes=$(flag_value "$1") ;;
    --devices=*) devices=$(flag_value "$1") ;;
    --config=*) config=$(flag_value "$1") ;;
    --workdir=*) workdir=$(flag_value "$1") ;;
    --port=*) port=$(flag_value "$1") ;;
    --dry-run) DRY_RUN=1 ;;
    --) shift; extra=("$@"); break ;;
    *) die "unknown flag $1 (see the header of $0)" ;;
  esac
  shift
done
[[ -n "$workdir" ]] || die "--workdir is required"
for n in "$processes" "$devices"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "--processes/--devices must be positive integers, got $n"
done

repo=$(cd "$(dirname "$0")/.." && pwd)
run mkdir -p "$workdir"
pids=()
for ((i = 0; i < processes; i++)); do
  cmd=(env JAX_PLATFORMS=cpu JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo
       XLA_FLAGS=--xla_force_host_platform_device_count="$devices"
       python -m jarl.main --multihost --coordinator=127.0.0.1:"$port"
       --num_processes="$processes" --process_id="$i" "--config=$config" "--workdir=$workdir"
       "${extra[@]}")
  if [[ "${DRY_RUN}" == 1 ]]; then
    printf '(cd %s && %s > %s 2>&1) &\n' "$(quote "$repo")" "$(quote_all "${cmd[@]}")" \
        "$(quote "$workdir/process_$i.log")"
  else
    (cd "$repo" && exec "${cmd[@]}" > "$workdir/process_$i.log" 2>&1) &
    pids+=($!)
  fi
done
if [[ "${DRY_RUN}" == 1 ]]; then
  echo wait
  exit 0
fi
status=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    echo "process $i failed; see $workdir/process_$i.log" >&2
    status=1
  fi
done
exit "$status"
