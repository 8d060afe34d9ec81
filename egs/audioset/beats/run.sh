#!/usr/bin/env bash
# BEATs on AudioSet, the paper's three iterations, from segment CSVs + a directory of downloaded clips.
#
#   egs/audioset/beats/run.sh --clips /data/audioset/clips --train_csv balanced_train_segments.csv \
#       --valid_csv eval_segments.csv [--class_labels class_labels_indices.csv] [--size tiny|base]
#       [--exp DIR] [--stage N] [--stop_stage M] [--steps1 N --steps2 N --steps3 N --tok_steps N]
#
# stage 0  prepare        reads $train_csv, $valid_csv, clips under $clips  writes $exp/data/{train,valid}.tsv
#                         (+ .tags .mid; rows without a clip → $exp/data/missing_*.txt, bad clips → skipped.txt)
# stage 1  it-1 tokens    frozen random projection of fbank patches  writes $exp/tok0, $exp/data/{train,valid}.rp
# stage 2  iteration 1    BEATs (recipes/beats/$size.yaml) on .rp     writes $exp/it1/exp/checkpoint
# stage 3  tokenizer 1    self-distilled VQ tokenizer, teacher = it1  writes $exp/tok1/checkpoint
# stage 4  it-2 tokens    label the corpus with tokenizer 1           writes $exp/data/{train,valid}.tok1
# stage 5  iteration 2    BEATs on .tok1                              writes $exp/it2/exp/checkpoint
# stage 6  tokenizer 2    self-distilled VQ tokenizer, teacher = it2  writes $exp/tok2/checkpoint
# stage 7  it-3 tokens    label the corpus with tokenizer 2           writes $exp/data/{train,valid}.tok2
# stage 8  iteration 3    BEATs on .tok2                              writes $exp/it3/exp/checkpoint
#
# --size tiny runs on a CPU (recipes/beats/{tiny,tokenizer_tiny}.yaml); base is the paper's model.
# Empty --steps*/--tok_steps keep the recipe's max_steps; key=value words go to the BEATs trainer
# (e.g. optim.lr=5e-4 data.num_accumulate=2). Multi-GPU: --launcher "torchrun --nproc_per_node=8 -m"
# and --device cuda (labelling). Every stage writes $exp/.done.stageN; reruns skip finished stages.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../../utils/lib.sh"
root=$(cd "$here/../../.." && pwd)

clips=           # directory of downloaded clips (<YTID>.wav, Y<YTID>.wav, <YTID>_<start>[_<end>].flac, ...)
train_csv=       # segments CSV of the training split (balanced_train / unbalanced_train_segments.csv)
valid_csv=       # segments CSV of the validation split (eval_segments.csv)
class_labels=    # class_labels_indices.csv: display names in .tags (empty: label ids)
exp=exp/audioset_beats
size=base        # recipes/beats/<size>.yaml and tokenizer_<size>.yaml: tiny (CPU) | base
stage=0
stop_stage=8
steps1=          # BEATs steps per iteration (empty: the recipe's max_steps)
steps2=
steps3=
tok_steps=       # tokenizer steps per iteration (empty: the recipe's max_steps)
seed=0           # seed of the random-projection tokenizer
nj=8             # processes reading audio headers in stage 0
device=cpu       # torch device for labelling (cuda for a GPU)
launcher="python -m"
parse_options "$@"

[ -n "$clips" ] && [ -n "$train_csv" ] && [ -n "$valid_csv" ] || die "--clips DIR --train_csv CSV --valid_csv CSV are required (see --help)"
for f in "$root/recipes/beats/$size.yaml" "$root/recipes/beats/tokenizer_$size.yaml"; do
  [ -f "$f" ] || die "--size $size: $f not found (use tiny or base)"
done
data=$exp/data
mkdir -p "$exp"

if run_stage 0 "prepare AudioSet manifests from $train_csv, $valid_csv and $clips"; then
  audiossl prepare audioset "$clips" "$data" --csv "train=$train_csv" "valid=$valid_csv" \
    ${class_labels:+--class-labels "$class_labels"} --workers "$nj"
  stage_done 0
fi

if run_stage 1 "iteration-1 tokens: frozen random projection (1024 codes, seed $seed)"; then
  audiossl tokenizer label random-projection "$data/train.tsv" --ext rp --seed "$seed" --save "$exp/tok0" --device "$device"
  audiossl tokenizer label random-projection "$data/valid.tsv" --ext rp --tokenizer "$exp/tok0" --device "$device"
  stage_done 1
fi

pretrain() {  # $1 = iteration dir, $2 = label extension, $3 = steps (empty: recipe)
  $launcher audiossl.cli.main pretrain --config "$root/recipes/beats/$size.yaml" --manifest-dir "$data" \
    --train-split train --valid-split valid --labels "$2" --out "$exp/$1/exp" ${3:+--max-steps "$3"} ${overrides[@]+"${overrides[@]}"}
}

tokenizer() {  # $1 = tokenizer dir, $2 = teacher iteration dir
  $launcher audiossl.cli.main tokenizer train beats --config "$root/recipes/beats/tokenizer_$size.yaml" \
    --teacher "$exp/$2/exp/checkpoint" --manifest-dir "$data" --train-split train --valid-split valid \
    --out "$exp/$1" ${tok_steps:+--max-steps "$tok_steps"}
}

label() {  # $1 = tokenizer dir (also the label extension)
  for split in train valid; do
    audiossl tokenizer label beats "$exp/$1/checkpoint" "$data/$split.tsv" --ext "$1" --device "$device"
  done
}

if run_stage 2 "BEATs ($size) iteration 1 on random-projection tokens"; then pretrain it1 rp "$steps1"; stage_done 2; fi
if run_stage 3 "tokenizer 1 (teacher = iteration 1)"; then tokenizer tok1 it1; stage_done 3; fi
if run_stage 4 "iteration-2 tokens from tokenizer 1"; then label tok1; stage_done 4; fi
if run_stage 5 "BEATs ($size) iteration 2 on tokenizer-1 tokens"; then pretrain it2 tok1 "$steps2"; stage_done 5; fi
if run_stage 6 "tokenizer 2 (teacher = iteration 2)"; then tokenizer tok2 it2; stage_done 6; fi
if run_stage 7 "iteration-3 tokens from tokenizer 2"; then label tok2; stage_done 7; fi
if run_stage 8 "BEATs ($size) iteration 3 on tokenizer-2 tokens"; then pretrain it3 tok2 "$steps3"; stage_done 8; fi

log "finished stages $stage..$stop_stage in $exp"
