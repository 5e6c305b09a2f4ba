#!/usr/bin/env bash
# Train one member of the default model: shufflenet_v2_x1_0 from scratch in three stages,
# 128 px, then 160 px, then 192 px (each stage starts from the previous stage's last weights
# with a fresh cosine schedule). Every member uses the same --split-seed 42 split, so the
# ensemble can be scored on a test split none of its members saw; --seed SEED gives each
# member its own initialisation, batch order and augmentation.
#
# usage: [NAME=member] [MODEL=arch] [EXTRA="train options"] scripts/default-member.sh SEED [FIRST_STAGE]
# EXTRA is added to every stage: the lighter augmentation that passed the stage-1 trial in
# docs/default-model.md is NAME=light EXTRA="--rotation 10 --shear 5 --perspective 0.05".
# MODEL is the torchvision architecture (default shufflenet_v2_x1_0).
# needs: binsort resize ../shared/data/trashnet data/trashnet160 --size 160
#        binsort resize ../shared/data/trashnet data/trashnet224 --size 224
# Runs go to runs/NAME-SEED-{128,160,192}/version_0. To pin a member to one core of a
# 2-core machine (two members side by side): OMP_NUM_THREADS=1 taskset -c 0 scripts/...
set -euo pipefail
seed=${1:?usage: scripts/default-member.sh SEED [FIRST_STAGE]}
first=${2:-1}
binsort=${BINSORT:-.venv/bin/binsort}
name=${NAME:-member}-$seed
# shellcheck disable=SC2206  # EXTRA is a list of options, split on spaces on purpose
extra=(${EXTRA:-})
source "$(dirname "$0")/recipe.sh"
common=(--model "${MODEL:-shufflenet_v2_x1_0}" "${member_recipe[@]}" --batch 32 --seed "$seed"
  --workers 0 "${extra[@]}")
last() { echo "runs/$name-$1/version_0/checkpoints/last.ckpt"; }

if [ "$first" -le 1 ]; then
  "$binsort" train --root data/trashnet160 --name "$name-128" --input-size 128 --epochs 90 \
    --lr 2e-3 --warmup-epochs 3 --aug-scale 0.2 "${common[@]}"
fi
if [ "$first" -le 2 ]; then
  "$binsort" train --root data/trashnet160 --name "$name-160" --input-size 160 --epochs 35 \
    --weights "$(last 128)" --lr 1e-3 --warmup-epochs 2 --aug-scale 0.25 "${common[@]}"
fi
if [ "$first" -le 3 ]; then
  "$binsort" train --root data/trashnet224 --name "$name-192" --input-size 192 --epochs 30 \
    --weights "$(last 160)" --lr 5e-4 --warmup-epochs 2 --aug-scale 0.25 "${common[@]}"
fi
