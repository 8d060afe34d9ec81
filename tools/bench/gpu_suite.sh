#!/usr/bin/env bash
# One command for every GPU figure the README quotes (one H100/H200, <= 8 minutes: each step has its
# own `timeout`, so a slow or hung step is recorded as such and the others still run).
#
#   bash tools/bench/gpu_suite.sh [--out DIR]      # GPU: writes DIR/gpu_suite.json + DIR/gpu_suite.txt
#   bash tools/bench/gpu_suite.sh --dry-run        # CPU, tiny sizes, same code paths (tests/test_gpu_suite.py)
#
# Steps (cap in seconds):
#   gpu_tests        pytest -m gpu                                                          (90)
#   hubert_base      HuBERT Base step, bucket vs crop_to_shortest: MFU, audio-s/s, padding eff, peak mem (60)
#   hubert_vs_ta     HuBERT Base step vs torchaudio HuBERTPretrainModel, same weights and batch (60)
#   beats_base       BEATs Base step MFU (bucket: its recipe's mode; flex attention)        (45)
#   mert_95m         MERT-95M step MFU (crop_to_shortest: its recipe's mode)               (45)
#   extract_bf16     bf16 extraction vs transformers HubertModel                           (45)
#   kmeans_stream    k-means fit / label frames/s, 2M x 768 streamed from disk, k = 500    (120)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=gpu_suite_out
DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) OUT="$2"; shift ;;
    *) echo "usage: $0 [--dry-run] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$OUT"
PY=${PYTHON:-python}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ "$DRY" = 1 ]; then
  DEV=cpu; HB="--size tiny --batch 2 --seconds 1 --steps 1 --warmup 1"; TA="--size tiny --batch 2 --seconds 1 --steps 1 --warmup 1"
  BB="--size tiny --batch 2 --seconds 2 --steps 1 --warmup 0"; MB="--size tiny --batch 2 --seconds 1 --steps 1 --warmup 0"
  EX="--quick --repeats 1 --no-torchaudio --device cpu"; KM="--stream 20000 --dim 32 --k 8 --device cpu --threads 1"
  TESTS="tests/test_gpu_sync.py"
else
  DEV=cuda; HB="--size base --batch 8 --seconds 10 --steps 10 --warmup 3"; TA="--size base --batch 8 --seconds 10 --steps 10 --warmup 3"
  BB="--size base --batch 10 --seconds 10 --steps 8 --warmup 3"; MB="--size 95m --batch 10 --seconds 5 --steps 8 --warmup 3"
  EX="--batch 8 --seconds 10 --repeats 3 --no-torchaudio --device cuda --dtype bfloat16"; KM="--stream 2000000 --dim 768 --k 500 --device cuda"
  TESTS=""
fi

run() {  # name cap cmd...: records rc (124 = hit its cap) and wall seconds in $OUT/NAME.status
  local name=$1 cap=$2; shift 2
  local t0=$SECONDS
  echo "== $name (cap ${cap}s): $*" >&2
  timeout -k 5 "$cap" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "$rc $((SECONDS - t0))" >"$OUT/$name.status"
  tail -3 "$OUT/$name.log" >&2
}

run gpu_tests 90 $PY -m pytest -q -m gpu -p no:cacheprovider $TESTS
run hubert_base 60 $PY tools/bench/family_step.py --family hubert $HB --device $DEV --json "$OUT/hubert_base.json"
run hubert_vs_ta 60 $PY tools/bench/pretrain.py $TA --device $DEV
run beats_base 45 $PY tools/bench/family_step.py --family beats $BB --modes bucket --device $DEV --json "$OUT/beats_base.json"
run mert_95m 45 $PY tools/bench/family_step.py --family mert $MB --modes crop_to_shortest --device $DEV --json "$OUT/mert_95m.json"
run extract_bf16 45 $PY tools/bench/extract.py $EX --json "$OUT/extract_bf16.json"
run kmeans_stream 120 $PY tools/bench/kmeans.py $KM --json "$OUT/kmeans_stream.json"

$PY tools/bench/gpu_suite_report.py "$OUT" --dry-run "$DRY"
