#!/usr/bin/env bash
# The large-data experiment (sweep and freeze depth, full profile) on a lent GPU machine, in one call (issue 16).
#
# That machine has PyTorch and no network: it cannot fetch the weights or the data, nor install the course.
#
#   bash data_scripts/device_plan.sh pack     # here, in a set-up checkout: fill .device/ (git-ignored, ~45 MB)
#   bash data_scripts/device_plan.sh run      # there, from the repository root, with .device carried
#
# `pack` copies the MobileNetV2 checkpoint and Fashion-MNIST's four raw files (gzipped) into .device/, and the GPU
# results of an earlier call (RESUME=DIR, the folder a call brought back) so that the next call resumes them.
# `run` unpacks them, runs `course sweep --experiment large-data --profile full --device cuda` for at most
# BUDGET_S seconds (default 480; each finished point is written at once, so a run cut short keeps its points),
# prints the status, and copies the results files to $OUT/cuda/. Commit those files as
# course_utils/experiments/results/cuda/, beside the CPU files: one device per file.
# PYTHON (default python3), DEVICE (default cuda) and PROFILE (default full) are for trying the plumbing on a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
PROFILE=${PROFILE:-full}
RESULTS="data/cache/experiments/$DEVICE-$PROFILE"

case "${1:-}" in
pack)
  checkpoint="$(.venv/bin/python -c 'from course_utils.weights import hub_checkpoint_dir; print(hub_checkpoint_dir())')/mobilenet_v2-b0353104.pth"
  [ -f "$checkpoint" ] || { echo "no $checkpoint: run \`make setup\` first" >&2; exit 1; }
  ls data/FashionMNIST/raw/*-ubyte >/dev/null || { echo "no Fashion-MNIST in data/: run \`make setup\` first" >&2; exit 1; }
  rm -rf .device && mkdir -p .device/resume
  cp "$checkpoint" .device/
  for raw in data/FashionMNIST/raw/*-ubyte; do gzip -c "$raw" > ".device/$(basename "$raw").gz"; done
  if [ -n "${RESUME:-}" ]; then cp "$RESUME"/*.json .device/resume/; fi
  du -sh .device
  ;;
run)
  [ -f .device/mobilenet_v2-b0353104.pth ] || { echo "no .device/: run \`$0 pack\` here and carry .device" >&2; exit 1; }
  export TORCH_HOME="$PWD/.device/torch" PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
  mkdir -p "$TORCH_HOME/hub/checkpoints" data/FashionMNIST/raw "$RESULTS"
  cp .device/mobilenet_v2-b0353104.pth "$TORCH_HOME/hub/checkpoints/"
  for packed in .device/*-ubyte.gz; do
    raw="data/FashionMNIST/raw/$(basename "$packed" .gz)"
    [ -f "$raw" ] || gzip -dc "$packed" > "$raw"
  done
  for earlier in .device/resume/*.json; do  # an earlier call's points, unless this machine still has newer ones
    [ -f "$earlier" ] && [ ! -f "$RESULTS/$(basename "$earlier")" ] && cp "$earlier" "$RESULTS/"
  done
  "$PY" -c "import torch; print('torch', torch.__version__, '| device:', '$DEVICE', torch.cuda.get_device_name(0) if '$DEVICE' == 'cuda' else '')"
  status=0
  timeout "${BUDGET_S:-480}" "$PY" -m course_utils.tools.cli sweep --experiment large-data --profile "$PROFILE" \
    --device "$DEVICE" --out-dir "$RESULTS" --note "data_scripts/device_plan.sh on a lent $DEVICE machine" || status=$?
  [ "$status" = 124 ] && echo "stopped after BUDGET_S=${BUDGET_S:-480} s: the finished points are kept; run again to resume"
  "$PY" -m course_utils.tools.cli sweep --experiment large-data --profile "$PROFILE" --out-dir "$RESULTS" --status
  if [ -n "${OUT:-}" ]; then mkdir -p "$OUT/$DEVICE" && cp "$RESULTS"/*.json "$RESULTS"/*.csv "$OUT/$DEVICE/"; fi
  [ "$status" = 0 ] || [ "$status" = 124 ]
  ;;
*)
  echo "usage: $0 pack|run   (pack here, then run on the GPU machine with .device carried)" >&2
  exit 2
  ;;
esac
