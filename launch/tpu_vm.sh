#!/usr/bin/env bash
# Train JARL on a Cloud TPU VM or pod slice: create it, install this checkout on every
# worker, run `python -m jarl.main --multihost` on all workers at once, tail worker 0's
# log until training ends, delete the VM.
#
#   launch/tpu_vm.sh --name=jarl-base --zone=us-central2-b --accelerator=v4-32 \
#       --bucket=gs://my-bucket --config=configs/pretrain.py:base [--dry-run] \
#       [-- --config.total_steps=1000 ...]     # anything after -- goes to jarl.main
#
# It ships the COMMITTED tree (`git archive HEAD`): uncommitted changes do not run, and the
# script says so when there are any. --bucket also sets where configs/pretrain.py's base and
# large (and the fine-tune configs built on them) read their tokenizer and shards: it adds
# `bucket=<bucket>` to the config argument (`<bucket>/spm/c4_en_32k.model`,
# `<bucket>/cc12m/*.arrayrecord`), unless the config argument already sets `bucket=`.
#
# Flags: --project (gcloud default), --version (TPU runtime, default tpu-ubuntu2204-base),
# --workdir (default <bucket>/jarl/<name>), --tfds_data_dir (default
# <bucket>/tensorflow_datasets), --spot (preemptible capacity: the run resumes from its
# workdir when relaunched), --keep (do not delete the VM at the end), --dry-run (print the
# commands, run nothing). On a pod slice every worker runs the same command;
# jax.distributed.initialize() finds the coordinator from the TPU metadata.
set -euo pipefail
source "$(dirname "$0")/common.sh"

name="" zone="" project="" accelerator="v4-8" version="tpu-ubuntu2204-base" bucket=""
config="configs/pretrain.py:base" workdir="" tfds_data_dir="" spot=0 keep=0
extra=()
while (($#)); do
  case "$1" in
    --name=*) name=$(flag_value "$1") ;;
    --zone=*) zone=$(flag_value "$1") ;;
    --project=*) project=$(flag_value "$1") ;;
    --accelerator=*) accelerator=$(flag_value "$1") ;;
    --version=*) version=$(flag_value "$1") ;;
    --bucket=*) bucket=$(flag_value "$1") ;;
    --config=*) config=$(flag_value "$1") ;;
    --workdir=*) workdir=$(flag_value "$1") ;;
    --tfds_data_dir=*) tfds_data_dir=$(flag_value "$1") ;;
    --spot) spot=1 ;;
    --keep) keep=1 ;;
    --dry-run) DRY_RUN=1 ;;
    --) shift; extra=("$@"); break ;;
    *) die "unknown flag $1 (see the header of $0)" ;;
  esac
  shift
done
[[ -n "$name" ]] || die "--name is required"
[[ -n "$zone" ]] || die "--zone is required"
[[ "$bucket" == gs://* ]] || die "--bucket=gs://... is required (workdir and TFDS data live there), got '${bucket}'"
bucket=${bucket%/}
workdir=${workdir:-$bucket/jarl/$name}
if [[ "$config" != *bucket=* ]]; then
  if [[ "$config" == *:* ]]; then config="$config,bucket=$bucket"; else config="$config:bucket=$bucket"; fi
fi
tfds_data_dir=${tfds_data_dir:-$bucket/tensorflow_datasets}

gcloud_tpu=(gcloud compute tpus tpu-vm)
where=(--zone="$zone")
[[ -n "$project" ]] && where+=(--project="$project")
create_flags=(--accelerator-type="$accelerator" --version="$version")
((spot)) && create_flags+=(--spot)

repo=$(cd "$(dirname "$0")/.." && pwd)
tarball=/tmp/jarl-$name.tar.gz
# The committed tree, not the working copy: what runs is what `git log` names.
if [[ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]]; then
  echo "$(basename "$0"): warning: uncommitted changes in $repo will not run; only HEAD ($(git -C "$repo" rev-parse --short HEAD)) ships" >&2
fi
run git -C "$repo" archive --format=tar.gz --prefix=jarl/ -o "$tarball" HEAD
run "${gcloud_tpu[@]}" create "$name" "${where[@]}" "${create_flags[@]}"
run "${gcloud_tpu[@]}" scp "$tarball" "$name:jarl.tar.gz" "${where[@]}" --worker=all
run "${gcloud_tpu[@]}" ssh "$name" "${where[@]}" --worker=all \
    --command="rm -rf ~/jarl && tar -xzf ~/jarl.tar.gz -C ~ && cd ~/jarl && pip install -q -e '.[tpu]'"

main=(python -m jarl.main --multihost "--config=$config" "--workdir=$workdir"
      "--config.data.tfds_data_dir=$tfds_data_dir" "${extra[@]}")
main_line=$(quote_all "${main[@]}")
# nohup + background: the ssh session may drop; the log stays on each worker.
run "${gcloud_tpu[@]}" ssh "$name" "${where[@]}" --worker=all \
    --command="cd ~/jarl && export TFDS_DATA_DIR=$tfds_data_dir && nohup ${main_line} > ~/jarl.log 2>&1 &"
# Follow worker 0 (it writes the metrics) until its trainer exits. `jarl[.]main` matches
# the trainer's command line but not this shell's own.
run "${gcloud_tpu[@]}" ssh "$name" "${where[@]}" --worker=0 --command='sleep 5; pid=$(pgrep -f "^python -m jarl[.]main" | head -n 1); if [ -n "$pid" ]; then tail --pid="$pid" -n +1 -f ~/jarl.log; else cat ~/jarl.log; fi'
if ((keep)); then
  echo "kept $name; delete it with: ${gcloud_tpu[*]} delete $name ${where[*]} --quiet" >&2
else
  run "${gcloud_tpu[@]}" delete "$name" "${where[@]}" --quiet
fi
