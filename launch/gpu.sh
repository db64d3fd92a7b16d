#!/usr/bin/env bash
# Train JARL on one host's GPUs: one process drives all of them (JAX's single-controller
# mode), the mesh's `data` axis spans the GPUs. Every GPU the machine shows is used unless
# --gpus=N picks the first N. The model computes in bfloat16 there (config.model.dtype=auto).
#
#   launch/gpu.sh --config=configs/pretrain.py:base --workdir=/data/runs/base \
#       [--gpus=N] [--install] [--dry-run] [-- --config.total_steps=1000 ...]
#
# --install first runs `pip install -e '.[gpu]'` (CUDA 12 wheels of jaxlib). Logs go to
# <workdir>/train.log as well as the terminal.
set -euo pipefail
source "$(dirname "$0")/common.sh"

gpus="" config="configs/pretrain.py:base" workdir="" install=0
extra=()
while (($#)); do
  case "$1" in
    --gpus=*) gpus=$(flag_value "$1") ;;
    --config=*) config=$(flag_value "$1") ;;
    --workdir=*) workdir=$(flag_value "$1") ;;
    --install) install=1 ;;
    --dry-run) DRY_RUN=1 ;;
    --) shift; extra=("$@"); break ;;
    *) die "unknown flag $1 (see the header of $0)" ;;
  esac
  shift
done
[[ -n "$workdir" ]] || die "--workdir is required"
[[ -z "$gpus" || "$gpus" =~ ^[1-9][0-9]*$ ]] || die "--gpus=$gpus: must be a positive integer"

repo=$(cd "$(dirname "$0")/.." && pwd)
# No --gpus: CUDA_VISIBLE_DEVICES stays as the caller has it (unset: every GPU).
devices=()
[[ -n "$gpus" ]] && devices=(CUDA_VISIBLE_DEVICES="$(seq -s, 0 $((gpus - 1)))")
((install)) && run pip install -e "$repo[gpu]"
run mkdir -p "$workdir"
# XLA_PYTHON_CLIENT_MEM_FRACTION: leave room for cuDNN/NCCL workspaces beside the
# preallocated pool (JAX takes 75% by default; 0.9 is the usual setting for training).
cmd=(env "${devices[@]}" XLA_PYTHON_CLIENT_MEM_FRACTION=0.9
     python -m jarl.main "--config=$config" "--workdir=$workdir" "${extra[@]}")
if [[ "${DRY_RUN}" == 1 ]]; then
  printf '(cd %s && %s 2>&1 | tee -a %s)\n' "$(quote "$repo")" "$(quote_all "${cmd[@]}")" \
      "$(quote "$workdir/train.log")"
else
  (cd "$repo" && "${cmd[@]}" 2>&1 | tee -a "$workdir/train.log")
fi
