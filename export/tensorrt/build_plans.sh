#!/usr/bin/env bash
# Build TensorRT plans for the GPU flavour of the model repository, inside NVIDIA's Triton container.
#
#   make repository-gpu            # writes model_repository_gpu/<model>/{config.pbtxt,1/model.onnx}
#   export/tensorrt/build_plans.sh [model_repository_gpu]
#
# The plan must be built by the same TensorRT that serves it, so this runs trtexec in the Triton container of the
# pinned version (TRITON_IMAGE; 24.10 is Triton 2.51, the server the CPU flavour runs from PyPI). fp16, one
# optimisation profile over batch sizes 1..max_batch_size from config.pbtxt for every input, optimised for OPT_BATCH.
# Needs a Docker engine with the NVIDIA container toolkit and a GPU; it does not run on the CPU dev machines.
set -euo pipefail
repo=$(realpath "${1:-model_repository_gpu}")
image=${TRITON_IMAGE:-nvcr.io/nvidia/tritonserver:24.10-py3}
opt_batch=${OPT_BATCH:-32}
# A dims entry of -1 is a dynamic axis (text_query's tokens: facecast.tokenizer.MAX_TOKENS at most); its profile:
dynamic_min=${DYNAMIC_MIN:-1} dynamic_opt=${DYNAMIC_OPT:-16} dynamic_max=${DYNAMIC_MAX:-32}
trtexec=${TRTEXEC:-}

for config in "$repo"/*/config.pbtxt; do
  model_dir=$(dirname "$config")
  name=$(basename "$model_dir")
  grep -q 'platform: "tensorrt_plan"' "$config" || { echo "skip $name: not a tensorrt_plan model"; continue; }
  max_batch=$(sed -n 's/^max_batch_size: \([0-9]*\)/\1/p' "$config")
  # one min/opt/max shape per input (every input has the dynamic batch axis first), from config.pbtxt's input block
  opt=$((opt_batch < max_batch ? opt_batch : max_batch))
  inputs=$(awk '/^input \[/{f=1; next} /^output \[/{f=0}
                f && /name:/ {gsub(/"/, "", $2); name=$2}
                f && /dims:/ {gsub(/[][ ]/, ""); sub("dims:", ""); gsub(",", "x"); print name ":" $0}' "$config")
  min_shapes="" opt_shapes="" max_shapes=""
  for entry in $inputs; do
    input=${entry%%:*} dims=${entry#*:}
    min_shapes+="${min_shapes:+,}${input}:1x${dims//-1/$dynamic_min}"
    opt_shapes+="${opt_shapes:+,}${input}:${opt}x${dims//-1/$dynamic_opt}"
    max_shapes+="${max_shapes:+,}${input}:${max_batch}x${dims//-1/$dynamic_max}"
  done
  shapes="--minShapes=$min_shapes --optShapes=$opt_shapes --maxShapes=$max_shapes"
  for version_dir in "$model_dir"/[0-9]*; do
    echo "building $name/$(basename "$version_dir")/model.plan (fp16, batch 1..$max_batch, inputs ${inputs//$'\n'/ })"
    args="--onnx=/models/$name/$(basename "$version_dir")/model.onnx --saveEngine=/models/$name/$(basename "$version_dir")/model.plan --fp16 $shapes"
    if [ -n "$trtexec" ]; then
      # Already inside the container (or a machine with the matching TensorRT): run trtexec directly.
      (cd "$repo" && $trtexec ${args//\/models/$repo})
    else
      docker run --rm --gpus all -v "$repo":/models "$image" /usr/src/tensorrt/bin/trtexec $args
    fi
  done
done
echo "done: serve with  docker run --gpus all -p8000:8000 -v $repo:/models $image tritonserver --model-repository=/models"
