#!/usr/bin/env bash
# MERT on the synthetic music of the demo corpus, CPU-sized (called by `make demo`).
#
#   egs/demo/mert/run.sh [--exp DIR] [--corpus DIR] [--stage N] [--stop_stage M] [--size small]
#
# stage 0  synth            writes $exp/corpus unless --corpus points at an existing demo corpus
# stage 1  manifests        music notes + keys (train, valid) → $exp/data/{train,valid}.tsv
# stage 2  RVQ-VAE          acoustic teacher trained on that audio (24 kHz, 8 levels, 75 Hz) → $exp/rvq/checkpoint
# stage 3  teacher codes    $exp/data/{train,valid}.rvq ([frames, 8] at 75 Hz, checked against the student)
# stage 4  MERT-tiny        RVQ code heads + CQT reconstruction + in-batch noise mixing → $exp/mert/exp/checkpoint
#
# Every stage writes $exp/.done.stageN when it finishes; a rerun skips finished stages.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../utils/lib.sh"
root=$(cd "$here/../../.." && pwd)

exp=exp/demo_mert
corpus=          # existing demo corpus (e.g. the HuBERT demo's); empty: synthesise one in $exp/corpus
stage=0
stop_stage=4
size=small
seed=0
nj=2
rvq_steps=800    # RVQ-VAE steps (~0.13 s each on 2 cores)
steps=1000       # MERT-tiny steps (~0.26 s each on 2 cores)
synth_tasks=all,intents,conversations,music_beats   # the default corpus + the IC, SD and beat sets
parse_options "$@"

[ -n "$corpus" ] || corpus=$exp/corpus
data=$exp/data
mkdir -p "$exp"

if run_stage 0 "synthesise the demo corpus ($size, seed $seed)"; then
  [ -f "$corpus/corpus.json" ] || audiossl synth "$corpus" --size "$size" --seed "$seed" --workers "$nj" --tasks "$synth_tasks" --overwrite
  stage_done 0
fi

if run_stage 1 "one manifest of the demo music per split"; then
  mkdir -p "$data"
  for split in train valid; do
    python "$here/../local/merge_manifests.py" "$data/$split.tsv" "$corpus/music/notes/$split.tsv" "$corpus/music/keys/$split.tsv"
  done
  stage_done 1
fi

if run_stage 2 "RVQ-VAE acoustic teacher ($rvq_steps steps)"; then
  audiossl tokenizer train rvq --config "$root/recipes/mert/rvq_tiny.yaml" --manifest-dir "$data" \
    --train-split train --valid-split valid --out "$exp/rvq" --max-steps "$rvq_steps"
  stage_done 2
fi

if run_stage 3 "teacher codes for the student (8 × 75 Hz)"; then
  for split in train valid; do
    audiossl tokenizer label rvq "$exp/rvq/checkpoint" "$data/$split.tsv" --ext rvq
  done
  stage_done 3
fi

if run_stage 4 "MERT-tiny ($steps steps: code heads + CQT + noise mixing)"; then
  classes=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['num_classes'])" "$data/train.rvq.json")
  audiossl pretrain --config "$root/recipes/mert/tiny.yaml" --manifest-dir "$data" \
    --train-split train --valid-split valid --labels rvq --out "$exp/mert/exp" --max-steps "$steps" \
    "model.num_classes=$classes"
  stage_done 4
fi

log "finished stages $stage..$stop_stage in $exp"
