"""Accuracy gates for reduced precision (issue 16): every model the CPU flavour serves in int8 loses at most 0.5
point of its results doc's main metric and agrees with its fp32 graph on ≥ 99 % of held-out decisions
(training/evaluate_precision.py says what each model's metric and agreement are).

The graphs gated are the served repository's own model.onnx and the model.fp32.onnx kept beside it, run with ONNX
Runtime as Triton's python backend runs them; test_quality_floors.py then holds the served int8 models to the
product's floors through a real Triton. Also: the preprocessing fold and the backend's requested-outputs path."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.graph_passes import fold_affine_chains
from export.triton_repository import CPU_SERVING, FP32_REFERENCE
from facecast.clients.expression_encoder import ExpressionRecognizer
from facecast.serving.client import TritonModelClient
from facecast.vocab import EXPRESSION_ENCODER
from training.evaluate_precision import GATES, MAX_POINT_LOSS, MIN_AGREEMENT, failures

INT8_MODELS = sorted(name for name, settings in CPU_SERVING.items() if settings.precision == "int8")


def test_the_int8_models_are_the_gated_ones() -> None:
    assert INT8_MODELS, "nothing is served in int8: the gates below would test nothing"
    assert set(INT8_MODELS) <= set(GATES), f"int8 without an accuracy gate: {set(INT8_MODELS) - set(GATES)}"


@pytest.mark.parametrize("name", INT8_MODELS)
def test_int8_model_keeps_its_accuracy(full_repository, name: str) -> None:
    version = full_repository / name / "1"
    assert (version / FP32_REFERENCE).is_file(), f"{name}: the served repository has no fp32 reference"
    result = GATES[name](version / FP32_REFERENCE, version / "model.onnx")
    print(result)
    assert 100 * (result["fp32"] - result["reduced"]) <= MAX_POINT_LOSS, result
    assert min(result["agreement"].values()) >= MIN_AGREEMENT, result
    assert not failures(result)


def test_the_gate_fails_a_model_that_reads_faces_differently(full_repository, tmp_path) -> None:
    """The gate is not vacuous: the encoder's own int8 graph with its emotion head's weights shuffled (a model as
    fast and as confident, answering differently) fails it."""
    version = full_repository / EXPRESSION_ENCODER / "1"
    model = onnx.load(str(version / FP32_REFERENCE))
    head = next(t for t in model.graph.initializer if t.name.startswith("network.emotion_head") and "weight" in t.name)
    weights = numpy_helper.to_array(head)
    head.CopyFrom(numpy_helper.from_array(weights[np.random.default_rng(0).permutation(len(weights))], head.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    result = GATES[EXPRESSION_ENCODER](version / FP32_REFERENCE, broken, per_emotion=20)
    assert failures(result)


def test_affine_chains_fold_into_one_multiply_and_add() -> None:
    """uint8 → Cast → /255 → −mean → /std, as the image networks' serving graphs do it, becomes x·a + b."""
    mean, std = np.array([0.4, 0.5, 0.6], np.float32).reshape(1, 3, 1, 1), np.float32(0.25)
    nodes = [
        helper.make_node("Cast", ["image"], ["floats"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["floats", "c255"], ["unit"]),
        helper.make_node("Sub", ["unit", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["normalised"]),
        helper.make_node("Relu", ["normalised"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, [None, 3, 4, 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, 3, 4, 4])],
        [
            numpy_helper.from_array(np.float32(255.0), "c255"),
            numpy_helper.from_array(mean, "mean"),
            numpy_helper.from_array(std, "std"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    image = np.random.default_rng(0).integers(0, 256, (2, 3, 4, 4), dtype=np.uint8)

    import onnxruntime as ort

    before = ort.InferenceSession(model.SerializeToString()).run(None, {"image": image})[0]
    assert fold_affine_chains(model) == 1
    assert [node.op_type for node in model.graph.node] == ["Cast", "Mul", "Add", "Relu"]
    onnx.checker.check_model(model)
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"image": image})[0]
    np.testing.assert_allclose(after, before, atol=1e-5)
    np.testing.assert_allclose(after, np.maximum((image / 255.0 - mean) / std, 0), atol=1e-5)


def test_served_model_answers_only_the_outputs_asked_for(full_server) -> None:
    """The python backend computes and returns only requested outputs (Triton lists all when a client names none),
    and what it returns equals the full answer's; the recognizer's vectors=False asks for the three heads only."""
    import tritonclient.http as triton_http

    faces = np.random.default_rng(1).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    client = TritonModelClient(EXPRESSION_ENCODER, full_server.triton_url)
    full = client.infer({"image": faces})
    heads = client.infer({"image": faces}, outputs=("emotion_logits", "action_params"))
    assert sorted(heads) == ["action_params", "emotion_logits"]
    for name, value in heads.items():
        np.testing.assert_array_equal(value, full[name])
    raw = triton_http.InferenceServerClient(full_server.triton_url.removeprefix("http://"))
    tensor = triton_http.InferInput("image", list(faces.shape), "UINT8")
    tensor.set_data_from_numpy(faces)
    answer = raw.infer(EXPRESSION_ENCODER, [tensor], outputs=[triton_http.InferRequestedOutput("emotion_logits")])
    assert [output["name"] for output in answer.get_response()["outputs"]] == ["emotion_logits"]
    with pytest.raises(ValueError, match="no output"):
        client.infer({"image": faces}, outputs=("logits",))

    lean = ExpressionRecognizer(client).predict(faces, vectors=False)
    whole = ExpressionRecognizer(client).predict(faces)
    assert [p.as_dict() for p in lean] == [p.as_dict() for p in whole]
    assert lean[0].expression is None and whole[0].expression.shape == (256,)
