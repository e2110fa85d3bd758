"""Triton python-backend model that runs an ONNX file with ONNX Runtime on CPU (the CPU flavour).

The Triton server that installs from PyPI (nvidia-pytriton) has no onnxruntime backend, so every CPU model is this
file next to its `model.onnx`. Dynamic batching hands `execute` several requests at once; they are concatenated
into ONE session.run and the outputs split back per request, which is where batching's throughput comes from.

Input and output names come from the model's config.pbtxt, so this one file serves every network. Runs inside the
server's own environment (numpy<2, onnxruntime): it must not import facecast, torch or anything else of ours.

Each request is checked before it joins the batch: every float input must be finite, and inputs named in the
config's `input_bounds` parameter must lie within them (e.g. text_embedder's token ids within the vocabulary).
A request that fails gets an error naming the model, the input and what was wrong, instead of ONNX Runtime's
"Gather ... indices element out of data bounds"; the other requests of the same batch are answered as usual,
which they would not be if the bad one reached session.run with them. (The GPU flavour's TensorRT plans have no
such hook; facecast's clients never send such values, so there it guards only against other callers.)
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


def parse_bounds(text):
    """`name:low:high;…` (export/triton_repository.py writes it) → {name: (low, high)}."""
    bounds = {}
    for entry in filter(None, text.split(";")):
        name, low, high = entry.rsplit(":", 2)
        bounds[name] = (float(low), float(high))
    return bounds


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        # 0 lets ONNX Runtime use every core; with several instances each gets a share (config.pbtxt sets it).
        options.intra_op_num_threads = int(parameters.get("intra_op_threads", "0"))
        options.inter_op_num_threads = 1
        # "0": idle pool threads sleep instead of spinning (export/triton_repository.py ServingSettings.spinning)
        options.add_session_config_entry("session.intra_op.allow_spinning", parameters.get("intra_op_spinning", "1"))
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        model_path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        self.input_names = [entry["name"] for entry in config["input"]]
        self.output_names = [entry["name"] for entry in config["output"]]
        self.model_name = args["model_name"]
        self.bounds = parse_bounds(parameters.get("input_bounds", ""))
        unknown = set(self.bounds) - set(self.input_names)
        if unknown:
            raise pb_utils.TritonModelException(f"input_bounds names inputs {sorted(unknown)} the config does not have")
        session_inputs = {i.name for i in self.session.get_inputs()}
        missing = set(self.input_names) - session_inputs
        if missing:
            raise pb_utils.TritonModelException(
                f"config.pbtxt names inputs {sorted(missing)} that {model_path} does not have "
                f"({sorted(session_inputs)})"
            )

    def problem(self, arrays):
        """What is wrong with one request's inputs, in words, or None."""
        for name, array in arrays.items():
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                return f"{self.model_name}: input {name} has NaN or infinite values"
            if name in self.bounds and array.size:
                low, high = self.bounds[name]
                smallest, largest = array.min(), array.max()
                if smallest < low or largest > high:
                    return (
                        f"{self.model_name}: input {name} must lie within [{low:g}, {high:g}], "
                        f"got values from {smallest:g} to {largest:g}"
                    )
        return None

    def execute(self, requests):
        responses = [None] * len(requests)
        valid, feeds = [], []
        for index, request in enumerate(requests):
            arrays = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.input_names}
            problem = self.problem(arrays)
            if problem is None:
                valid.append(index)
                feeds.append(arrays)
            else:
                responses[index] = pb_utils.InferenceResponse(error=pb_utils.TritonError(problem))
        if not valid:
            return responses
        sizes = [len(arrays[self.input_names[0]]) for arrays in feeds]
        feed = {
            name: feeds[0][name] if len(feeds) == 1 else np.concatenate([arrays[name] for arrays in feeds])
            for name in self.input_names
        }
        # Compute and copy back only the outputs someone in this batch asked for (Triton lists every output when a
        # client names none): the detector's pipeline reads 2 of its outputs, the analysis 3 of the encoder's 5,
        # and each output is a copy into shared memory per request.
        wanted = [set(requests[index].requested_output_names()) for index in valid]
        needed = [name for name in self.output_names if any(name in names for names in wanted)]
        try:
            outputs = dict(zip(needed, self.session.run(needed, feed)))
        except Exception as error:  # one bad batch must answer every request, not hang them
            message = f"{self.model_name}: ONNX Runtime failed on a batch of {sum(sizes)}: {error}"
            for index in valid:
                responses[index] = pb_utils.InferenceResponse(error=pb_utils.TritonError(message))
            return responses
        start = 0
        for index, size, names in zip(valid, sizes, wanted):
            # a row slice of a C-contiguous batch is contiguous: the Tensor is built from a view, not a copy
            tensors = [pb_utils.Tensor(name, outputs[name][start : start + size]) for name in needed if name in names]
            responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
            start += size
        return responses

    def finalize(self):
        self.session = None
