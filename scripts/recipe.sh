# shellcheck shell=bash
# The options every default-model member shares, defined once and sourced by
# scripts/default-member.sh (three CPU stages) and scripts/gpu-default.sh (one GPU stage); each
# adds its own input sizes, epochs, batch, learning rates and warm-up.
# The split of docs/trashnet-split.json: every member holds out the same test photos.
# shellcheck disable=SC2034  # used by the scripts that source this file
member_split=(--split 0.1 --test-split 0.15 --split-seed 42)
# shellcheck disable=SC2034
member_recipe=(--cache --channels-last --opt adamw --weight-decay 0.05 --scheduler cosine
  --label-smoothing 0.1 "${member_split[@]}")
# The lighter augmentation that passed the stage-1 trial in docs/default-model.md (the default
# is --rotation 20 --shear 10 --perspective 0.1).
# shellcheck disable=SC2034
light_augmentation=(--rotation 10 --shear 5 --perspective 0.05)
