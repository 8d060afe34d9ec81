#!/usr/bin/env bash
# MERT on your own music catalogue: a directory of audio → acoustic teacher codes → MERT → MARBLE-style probes.
#
#   egs/music/mert/run.sh --music /data/my_music [--size tiny|95m|330m] [--encodec_dir DIR]
#       [--probe_data DIR] [--exp DIR] [--stage N] [--stop_stage M] [--steps N] [--rvq_steps N]
#
# stage 0  prepare       reads every audio file under $music      writes $exp/data/all.tsv, then {train,valid}.tsv
#                        (valid = $valid_percent % of the files by a hash of their path: egs/music/local/split_by_hash.py)
# stage 1  teacher       RVQ-VAE trained on that audio (recipes/mert/$rvq_recipe.yaml) → $exp/rvq/checkpoint;
#                        nothing to train with --encodec_dir (a local transformers EnCodec 24 kHz model)
# stage 2  codes         reads the teacher                        writes $exp/data/{train,valid}.codes (+ .json;
#                        [frames, 8] at 75 Hz, refused if they do not match the student)
# stage 3  MERT          recipes/mert/$size.yaml: 8 code heads + CQT reconstruction (336 bins, computed from the
#                        clean crop inside the model's forward, no files) + in-batch noise mixing → $exp/mert/exp/checkpoint
# stage 4  probes        reads $probe_data (prepared corpora: gtzan/ from `audiossl prepare gtzan`, nsynth/ from
#                        `audiossl prepare nsynth`)  writes $exp/bench/results.{md,json,csv}: MERT vs FBANK on the
#                        $probe_tasks found there (genre, instrument, pitch)
#
# Empty --steps/--rvq_steps keep the recipes' max_steps; key=value words go to the MERT trainer.
# Multi-GPU: --launcher "torchrun --nproc_per_node=8 -m" and --device cuda (labelling, probes).
# Every stage writes $exp/.done.stageN; reruns skip finished stages.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../utils/lib.sh"
root=$(cd "$here/../../.." && pwd)

music=           # your music directory (searched recursively for .wav .flac .mp3 .ogg ...)
exp=exp/music_mert
size=95m         # recipes/mert/<size>.yaml: tiny (CPU) | 95m | 330m
rvq_recipe=      # recipes/mert/<rvq_recipe>.yaml (empty: rvq_tiny for --size tiny, else rvq_base)
encodec_dir=     # local transformers EncodecModel dir: use its codes instead of training an RVQ-VAE
valid_percent=5  # share of the files held out for validation
probe_data=      # root of prepared probe corpora (gtzan/, nsynth/); empty: stage 4 is refused
probe_tasks=genre,instrument,pitch
probe_epochs=    # probe head epochs (empty: each task's default)
stage=0
stop_stage=4
steps=           # MERT steps (empty: the recipe's max_steps)
rvq_steps=       # RVQ-VAE steps (empty: the recipe's max_steps)
nj=8             # processes reading audio headers in stage 0
device=cpu       # torch device for labelling and probes
launcher="python -m"
parse_options "$@"

[ -f "$root/recipes/mert/$size.yaml" ] || die "--size $size: recipes/mert/$size.yaml not found (tiny, 95m or 330m)"
if [ -z "$rvq_recipe" ]; then
  if [ "$size" = tiny ]; then rvq_recipe=rvq_tiny; else rvq_recipe=rvq_base; fi
fi
data=$exp/data
mkdir -p "$exp"

if run_stage 0 "manifests of $music (valid: $valid_percent % by path hash)"; then
  [ -n "$music" ] || die "--music DIR is required"
  audiossl prepare dir "$music" "$data" --split all --workers "$nj"
  python "$here/../local/split_by_hash.py" "$data/all.tsv" "$data" --valid-percent "$valid_percent"
  stage_done 0
fi

if run_stage 1 "acoustic teacher"; then
  if [ -n "$encodec_dir" ]; then
    [ -f "$encodec_dir/config.json" ] || die "--encodec_dir $encodec_dir: no config.json (a transformers EncodecModel directory)"
    log "using the EnCodec model in $encodec_dir; nothing to train"
  else
    [ -f "$root/recipes/mert/$rvq_recipe.yaml" ] || die "--rvq_recipe $rvq_recipe: recipes/mert/$rvq_recipe.yaml not found"
    $launcher audiossl.cli.main tokenizer train rvq --config "$root/recipes/mert/$rvq_recipe.yaml" --manifest-dir "$data" \
      --train-split train --valid-split valid --out "$exp/rvq" ${rvq_steps:+--max-steps "$rvq_steps"}
  fi
  stage_done 1
fi

if run_stage 2 "teacher codes (8 × 75 Hz) for train and valid"; then
  for split in train valid; do
    if [ -n "$encodec_dir" ]; then
      audiossl tokenizer label encodec "$encodec_dir" "$data/$split.tsv" --ext codes --device "$device"
    else
      audiossl tokenizer label rvq "$exp/rvq/checkpoint" "$data/$split.tsv" --ext codes --device "$device"
    fi
  done
  stage_done 2
fi

if run_stage 3 "MERT-$size (code heads + CQT + noise mixing)"; then
  classes=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['num_classes'])" "$data/train.codes.json")
  $launcher audiossl.cli.main pretrain --config "$root/recipes/mert/$size.yaml" --manifest-dir "$data" \
    --train-split train --valid-split valid --labels codes --out "$exp/mert/exp" ${steps:+--max-steps "$steps"} \
    "model.num_classes=$classes" ${overrides[@]+"${overrides[@]}"}
  stage_done 3
fi

if run_stage 4 "MARBLE-style probes on $probe_data"; then
  [ -n "$probe_data" ] || die "--probe_data DIR (prepared gtzan/ and/or nsynth/) is required for stage 4; or stop at stage 3 (--stop_stage 3)"
  tasks=$(python - "$probe_data" "$probe_tasks" <<'PY'
import sys
from audiossl.eval.tasks import available
found = set(available(sys.argv[1]))
print(",".join(t for t in sys.argv[2].split(",") if t in found))
PY
)
  [ -n "$tasks" ] || die "none of $probe_tasks has data under $probe_data (expected gtzan/{train,valid,test}.tsv from \`audiossl prepare gtzan\`, nsynth/... from \`audiossl prepare nsynth\`)"
  audiossl bench "$exp/mert/exp/checkpoint" --tasks "$tasks" --data "$probe_data" --out "$exp/bench" \
    --device "$device" ${probe_epochs:+--epochs "$probe_epochs"}
  stage_done 4
fi

log "finished stages $stage..$stop_stage in $exp"
