#!/usr/bin/env bash
# data2vec 2.0 on the embedded demo corpus (speech), CPU-sized; trained on the audio alone.
#
#   egs/demo/data2vec2/run.sh [--exp DIR] [--corpus DIR] [--stage N] [--stop_stage M] [--size small] [--steps N]
#
# stage 0  synth            writes $exp/corpus unless --corpus points at an existing demo corpus
# stage 1  pretrain         data2vec2-tiny (recipes/data2vec2/tiny.yaml) on corpus/speech/{train,valid}.tsv
#                           with --labels none                      → $exp/exp/checkpoint (the student encoder)
# stage 2  layer features   layer $layer of the student             → $exp/feats/L$layer/{train,valid}
# stage 3  unit quality     k-means (k=$k) on them, PNMI against the phone alignments → $exp/quality.json
#
# Every stage writes $exp/.done.stageN when it finishes; a rerun skips finished stages. key=value
# words go to the trainer (e.g. optim.lr=5e-4).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../utils/lib.sh"
root=$(cd "$here/../../.." && pwd)

exp=exp/demo_data2vec2
corpus=          # existing demo corpus (e.g. the HuBERT demo's); empty: synthesise one in $exp/corpus
stage=0
stop_stage=3
size=small
seed=0
nj=2
steps=1500       # data2vec2-tiny steps (3 crops × 8 masked copies each; ~67 audio-s/s on 2 idle cores: about the wall time of HuBERT-tiny iteration 1)
layer=2          # student layer to cluster (of 3)
k=100            # clusters for the unit-quality check (as the HuBERT demo's iteration 1)
percent=1.0      # fraction of frames per utterance used to fit k-means
synth_tasks=all,intents,conversations,music_beats   # the default corpus + the IC, SD and beat sets
parse_options "$@"

[ -n "$corpus" ] || corpus=$exp/corpus
mkdir -p "$exp"

if run_stage 0 "synthesise the demo corpus ($size, seed $seed)"; then
  [ -f "$corpus/corpus.json" ] || audiossl synth "$corpus" --size "$size" --seed "$seed" --workers "$nj" --tasks "$synth_tasks" --overwrite
  stage_done 0
fi

if run_stage 1 "data2vec2-tiny ($steps steps on the speech audio, no labels)"; then
  audiossl pretrain --config "$root/recipes/data2vec2/tiny.yaml" --manifest-dir "$corpus/speech" \
    --train-split train --valid-split valid --labels none --out "$exp/exp" --max-steps "$steps" \
    ${overrides[@]+"${overrides[@]}"}
  stage_done 1
fi

if run_stage 2 "layer-$layer features of the student"; then
  for split in train valid; do
    audiossl features model "$corpus/speech/$split.tsv" "$exp/feats/L$layer/$split" \
      --ckpt "$exp/exp/checkpoint" --layer "$layer" --workers 1
  done
  stage_done 2
fi

if run_stage 3 "k-means (k=$k) on layer $layer, PNMI against the phone alignments"; then
  audiossl kmeans fit "$exp/feats/L$layer/train" "$exp/km/L$layer" --k "$k" --percent "$percent" --seed "$seed"
  audiossl kmeans label "$exp/km/L$layer" "$exp/feats/L$layer/train" "$exp/units/train.km" --manifest "$corpus/speech/train.tsv"
  audiossl kmeans quality "$exp/units/train.km" --ref "$corpus/speech/train.ali" --ref-rate 100 --json "$exp/quality.json"
  stage_done 3
fi

log "finished stages $stage..$stop_stage in $exp"
