#!/usr/bin/env bash
# The GPU check (bench/README.md), for a lent GPU (about 8 minutes on one H100/H200). Prepare with bench/gpu_prepare.sh.
# Stages (STAGES="steps trainer study squad" by default; run a subset to split it over calls):
#   steps    bert-base step times per method, 16x128 and 16x384, fp16 and bf16 (random weights)  bench/step_time.py
#   trainer  MiniLM, SST-2 first 8,000 rows, 1 epoch: peftbench vs Trainer (dynamic padding + group_by_length, and
#            plain dynamic padding), full/BitFit/LoRA, fp16; then peftbench in bf16     bench/trainer_vs_peftbench.py
#   study    GLUE MRPC+RTE, 5 methods, the reference study's settings (3 epochs, its LRs): parallel=1 vs 2 vs 4, wall time
#   squad    one short SQuAD run per method on CUDA in fp16, against the first-sentence baseline
# Everything lands in $OUT (the device tool brings it back) or runs/gpu_check. SMOKE=1 runs it all tiny on a CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/gpu_check}"; mkdir -p "$OUT"
STAGES="${STAGES:-steps trainer study squad}"
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled TQDM_DISABLE=1 PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1 && ! python3 -c "import hydra" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}"
DATA=.gpu/data; MINILM=/tmp/minilm
if [ "${SMOKE:-0}" = 1 ]; then DEV=cpu; ROWS=200; STEPS="--steps 2 --warmup 1 --model tiny"; TRAIN="train_size=40 epochs=1"
  SQ="train_size=40 max_steps=10 task.eval_size=40 task.max_length=128 task.doc_stride=32"
else DEV=cuda; ROWS=8000; STEPS="--steps 30 --warmup 10"; TRAIN=""; SQ="train_size=4000 max_steps=1000 task.eval_size=1000"; fi
python3 - <<'PY' || exit 1
import torch
from transformers import AutoModel, AutoTokenizer
AutoModel.from_pretrained(".gpu/minilm-fp16", dtype=torch.float32).save_pretrained("/tmp/minilm")  # back to fp32
AutoTokenizer.from_pretrained(".gpu/minilm-fp16").save_pretrained("/tmp/minilm")
print("torch", torch.__version__, "| cuda", torch.cuda.is_available() and torch.cuda.get_device_name())
PY
M="model.name_or_path=$MINILM model.package=null"
t() { local s=$(date +%s%N); "$@"; local c=$?; echo "  -> $(( ($(date +%s%N) - s) / 1000000 )) ms (exit $c)"; }
for stage in $STAGES; do echo "== $stage =="; case $stage in
steps)
  for p in fp16 bf16; do t python3 bench/step_time.py --device $DEV --precision $p $STEPS --out "$OUT/steps-$p"; done ;;
trainer)
  t python3 bench/trainer_vs_peftbench.py --device $DEV --rows $ROWS --rounds 1 --model-dir $MINILM --data-dir $DATA \
      --runners peftbench trainer_grouped trainer_dynamic --methods full bitfit lora --out "$OUT/trainer-fp16"
  t python3 bench/trainer_vs_peftbench.py --device $DEV --precision bf16 --rows $ROWS --rounds 1 --model-dir $MINILM \
      --data-dir $DATA --runners peftbench --methods full bitfit lora --out "$OUT/trainer-bf16" ;;
study)
  for n in 1 2 4; do
    echo "parallel=$n"; t python3 -m peftbench.cli study glue $M data_dir=$DATA tasks=[mrpc,rte] parallel=$n \
        out="$OUT/study-p$n" tracking.mode=disabled $TRAIN device=$DEV > "$OUT/study-p$n.log" 2>&1
    tail -n 1 "$OUT/study-p$n.log"
  done ;;
squad)
  declare -A LR=([full]=1e-4 [bitfit]=5e-3 [bitfit_subset]=5e-3 [lora]=2e-3 [prompt]=1e-2)
  for m in full bitfit bitfit_subset lora prompt; do
    t python3 -m peftbench.cli train task=squad method=$m lr=${LR[$m]} $M task.data_dir=$DATA/squad-devsplit $SQ \
        schedule=steps precision=fp16 device=$DEV tracking.mode=disabled out="$OUT/squad/$m" 2>&1 | tail -n 2
  done
  python3 - "$OUT/squad" <<'PY'
import json, sys
from pathlib import Path
from peftbench.report.baselines import baseline
for f in sorted(Path(sys.argv[1]).glob("*/result.json")):
    r = json.loads(f.read_text()); b = baseline(r); f1 = r.get("metrics", {}).get("f1")
    ok = r["status"] == "completed" and f1 is not None and b is not None and f1 > b
    print(f"squad {r['run']['method']}: {r['status']}, F1 {f1}, first-sentence baseline {b}, "
          f"{r.get('train_samples_per_s')} samples/s, {r.get('precision')}: {'BEATS' if ok else 'DOES NOT BEAT'} it")
PY
  ;;
*) echo "unknown stage $stage: pick from steps trainer study squad"; exit 2 ;;
esac; done
for f in "$OUT"/steps-*/step_time.md "$OUT"/trainer-*/results.md; do [ -f "$f" ] && { echo "--- $f"; cat "$f"; }; done
