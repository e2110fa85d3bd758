"""Triton python-backend model that runs an ONNX file with ONNX Runtime on CPU (the CPU flavour).

The Triton server that installs from PyPI (nvidia-pytriton) has no onnxruntime backend, so every CPU model is this
file next to its `model.onnx`. Dynamic batching hands `execute` several requests at once; they are concatenated
into ONE session.run and the outputs split back per request, which is where batching's throughput comes from.

Input and output names come from the model's config.pbtxt, so this one file serves every network. Runs inside the
server's own environment (numpy<2, onnxruntime): it must not import facecast, torch or anything else of ours.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        # 0 lets ONNX Runtime use every core; with several instances each gets a share (config.pbtxt sets it).
        options.intra_op_num_threads = int(parameters.get("intra_op_threads", "0"))
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        model_path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        self.input_names = [entry["name"] for entry in config["input"]]
        self.output_names = [entry["name"] for entry in config["output"]]
        session_inputs = {i.name for i in self.session.get_inputs()}
        missing = set(self.input_names) - session_inputs
        if missing:
            raise pb_utils.TritonModelException(
                f"config.pbtxt names inputs {sorted(missing)} that {model_path} does not have "
                f"({sorted(session_inputs)})"
            )

    def execute(self, requests):
        arrays = {
            name: [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for r in requests] for name in self.input_names
        }
        sizes = [len(a) for a in arrays[self.input_names[0]]]
        feed = {name: parts[0] if len(parts) == 1 else np.concatenate(parts) for name, parts in arrays.items()}
        try:
            outputs = self.session.run(self.output_names, feed)
        except Exception as error:  # one bad batch must answer every request, not hang them
            message = f"ONNX Runtime failed on a batch of {sum(sizes)}: {error}"
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(message)) for _ in requests]
        responses, start = [], 0
        for size in sizes:
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(value[start : start + size]))
                for name, value in zip(self.output_names, outputs)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses

    def finalize(self):
        self.session = None
