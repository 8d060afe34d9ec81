#!/usr/bin/env bash
# ESC-50 5-fold evaluation of BEATs checkpoints (frozen upstream, weighted layers, pooled MLP head).
#
#   egs/esc50/beats/run.sh --esc50 /data/ESC-50-master --upstream "exp/audioset_beats/it3/exp/checkpoint beats:BEATs_iter3.pt"
#       [--exp DIR] [--stage N] [--stop_stage M] [--epochs N] [--device cuda] [--esc10 true]
#
# stage 0  prepare   reads $esc50/audio/*.wav + $esc50/meta/esc50.csv  writes $exp/data/esc50/fold{1..5}.tsv (+ .lbl .target)
# stage 1  bench     reads $exp/data, each upstream in --upstream      writes $exp/bench/results.{md,json,csv} (+ FBANK row)
#
# --upstream: one or more (space-separated) audiossl checkpoint dirs or beats:<released .pt file>.
# Each fold is the test set once (train 3 folds, dev 1, test 1); the table reports the mean accuracy.
# Every stage writes $exp/.done.stageN; reruns skip finished stages (and the bench resumes finished pairs).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../utils/lib.sh"

esc50=           # the ESC-50 directory (audio/ and meta/esc50.csv)
upstream=        # upstream spec(s): checkpoint dir and/or beats:<file>, space-separated
exp=exp/esc50_beats
stage=0
stop_stage=1
esc10=false      # true: only the ESC-10 subset
epochs=          # head epochs (empty: the task's default, 50)
device=cpu       # torch device for the upstreams and heads
nj=4             # processes reading audio headers in stage 0
parse_options "$@"

data=$exp/data
mkdir -p "$exp"

if run_stage 0 "prepare ESC-50 folds from $esc50"; then
  [ -n "$esc50" ] || die "--esc50 DIR (with audio/ and meta/esc50.csv) is required"
  opts=()
  [ "$esc10" = true ] && opts+=(--esc10)
  audiossl prepare esc50 "$esc50" "$data/esc50" --workers "$nj" "${opts[@]}"
  stage_done 0
fi

if run_stage 1 "ESC-50 5-fold bench: $upstream + FBANK"; then
  [ -n "$upstream" ] || die "--upstream 'CKPT_DIR | beats:FILE ...' is required"
  read -r -a ups <<< "$upstream"
  audiossl bench "${ups[@]}" --tasks esc50 --data "$data" --out "$exp/bench" --device "$device" ${epochs:+--epochs "$epochs"}
  stage_done 1
fi

log "finished stages $stage..$stop_stage in $exp"
