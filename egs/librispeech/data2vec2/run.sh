#!/usr/bin/env bash
# data2vec 2.0 on LibriSpeech (fairseq base_audio_only_task), for a user with LibriSpeech on disk.
#
#   egs/librispeech/data2vec2/run.sh --librispeech /data/LibriSpeech [--size tiny|base|large | --config YAML]
#       [--exp DIR] [--stage N] [--stop_stage M] [--steps N] [key=value ...]
#
# stage 0  prepare     reads $librispeech/<split>/<spk>/<chap>/*.flac + *.trans.txt
#                      writes $exp/data/{train,valid}.tsv (+ .wrd .ltr .spk; train = $train_splits merged),
#                      the same preparation as egs/librispeech/hubert stage 0
# stage 1  pretrain    data2vec 2.0 (recipes/data2vec2/$size.yaml) on the audio alone (no labels:
#                      the targets come from the model's own EMA teacher) → $exp/exp/checkpoint
#
# The checkpoint's encoder is the student (what fairseq fine-tunes); `audiossl bench`, `audiossl extract`
# and load_upstream read $exp/exp/checkpoint directly. key=value words go to the trainer unchanged (e.g.
# data.num_accumulate=2 optim.lr=5e-4). Empty --steps keeps the recipe's max_steps (Base: 400k).
# Multi-GPU: --launcher "torchrun --nproc_per_node=8 -m". Every stage writes $exp/.done.stageN;
# reruns skip finished stages.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../utils/lib.sh"
root=$(cd "$here/../../.." && pwd)

librispeech=     # the LibriSpeech directory (holding train-clean-100/, dev-clean/, ...)
exp=exp/librispeech_data2vec2
size=base        # recipes/data2vec2/<size>.yaml: tiny (CPU) | base | large
config=          # a recipe YAML of your own (overrides --size)
stage=0
stop_stage=1
train_splits="train-clean-100 train-clean-360 train-other-500"
valid_split=dev-clean
nj=16            # processes for preparation
steps=           # training steps (empty: the recipe's max_steps)
launcher="python -m"
parse_options "$@"
[ -n "$config" ] || config=$root/recipes/data2vec2/$size.yaml
[ -f "$config" ] || die "--size $size / --config $config: recipe not found (recipes/data2vec2/{tiny,base,large}.yaml)"

if run_stage 0 "prepare LibriSpeech manifests ($train_splits + $valid_split)"; then
  [ -n "$librispeech" ] || die "--librispeech /path/to/LibriSpeech is required"
  "$root/egs/librispeech/hubert/run.sh" --librispeech "$librispeech" --exp "$exp" --stage 0 --stop_stage 0 \
    --train_splits "$train_splits" --valid_split "$valid_split" --nj "$nj"
  stage_done 0
fi

if run_stage 1 "data2vec 2.0 ($size) pretraining on the audio alone"; then
  $launcher audiossl.cli.main pretrain --config "$config" --manifest-dir "$exp/data" \
    --train-split train --valid-split valid --labels none --out "$exp/exp" ${steps:+--max-steps "$steps"} \
    ${overrides[@]+"${overrides[@]}"}
  stage_done 1
fi
log "finished stages $stage..$stop_stage in $exp"
