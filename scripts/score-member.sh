#!/usr/bin/env bash
# Score trained members one by one the way docs/default-model.md's rules measure them: each
# checkpoint alone, fed 224 px, with its own temperature fitted on the validation originals
# (a one-member ensemble file, --calibrate), then evaluated on the validation list, and on
# the test list (which the rules report after the choice and never choose by).
#
# usage: scripts/score-member.sh OUT_NAME CKPT [CKPT...]
# writes runs/default/OUT_NAME-{val,test}/ (metrics.json, figures) and one
# runs/default/single-<run>.ensemble per checkpoint (<run>: the checkpoint's run folder name),
# replacing one an earlier scoring wrote, so that every figure comes from this run.
set -euo pipefail
binsort=${BINSORT:-.venv/bin/binsort}
out=${1:?usage: scripts/score-member.sh OUT_NAME CKPT [CKPT...]}
shift
# The split of every default member (split seed 42), recorded once: docs/trashnet-split.json.
where=(--split docs/trashnet-split.json --root ../shared/data/trashnet)
files=()
for ckpt in "$@"; do
  run=$(basename "$(dirname "$(dirname "$(dirname "$ckpt")")")")
  file=runs/default/single-$run.ensemble
  "$binsort" ensemble "$ckpt" -o "$file" --input-size 224 --calibrate --force "${where[@]}"
  files+=("$file")
done
"$binsort" evaluate "${files[@]}" "${where[@]}" --part val --out "runs/default/$out-val"
"$binsort" evaluate "${files[@]}" "${where[@]}" --out "runs/default/$out-test"
