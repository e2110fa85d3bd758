#!/usr/bin/env bash
# Copy a GPU-flavour model repository down to what Triton serves: <model>/config.pbtxt + <model>/<version>/model.plan.
# Used by docker/triton-gpu.Dockerfile (stage `plans`). Fails, naming what is missing, when
#   - a model listed in $MODELS (space-separated) has no config.pbtxt,
#   - a config is not a TensorRT one (platform: "tensorrt_plan"), or
#   - a version directory has no model.plan (plans not built yet: docker/README.md "GPU box" says how).
#
#   collect_plans.sh SOURCE_REPOSITORY DEST_REPOSITORY
set -euo pipefail
src=${1:?usage: collect_plans.sh SOURCE DEST}
dest=${2:?usage: collect_plans.sh SOURCE DEST}
models=${MODELS:?MODELS must list the served model names}
hint="build the plans first: docker/README.md, section 'GPU box'"

mkdir -p "$dest"
for model in $models; do
  config="$src/$model/config.pbtxt"
  [ -f "$config" ] || { echo "collect_plans: $config is missing ($hint)" >&2; exit 1; }
  grep -q '^platform: "tensorrt_plan"' "$config" \
    || { echo "collect_plans: $config is not a TensorRT config (the CPU repository?)" >&2; exit 1; }
  mkdir -p "$dest/$model"
  cp "$config" "$dest/$model/config.pbtxt"
  versions=0
  for version_dir in "$src/$model"/[0-9]*; do
    [ -d "$version_dir" ] || continue
    plan="$version_dir/model.plan"
    [ -s "$plan" ] || { echo "collect_plans: $plan is missing or empty ($hint)" >&2; exit 1; }
    mkdir -p "$dest/$model/$(basename "$version_dir")"
    cp "$plan" "$dest/$model/$(basename "$version_dir")/model.plan"
    versions=$((versions + 1))
  done
  [ "$versions" -gt 0 ] || { echo "collect_plans: $src/$model has no version directory ($hint)" >&2; exit 1; }
  echo "collect_plans: $model ($versions version(s))"
done
