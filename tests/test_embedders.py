"""Retrieval embedders: caption generation, tokenisation, MiniLM, checkpoints, and the three models on a real Triton."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from facecast.config import PROJECT_ROOT
from facecast.tokenizer import MAX_TOKENS, QueryTextError, tokenize
from facecast.vocab import EMOTIONS, STYLES
from training.data.captions import (
    EMOTION_WORDS,
    HELDOUT_TEMPLATES,
    STYLE_ADJECTIVES,
    STYLE_PHRASES,
    TRAIN_TEMPLATES,
    caption_matches,
    make_caption,
)

WEIGHTS = PROJECT_ROOT / "weights"


# ---- captions ----------------------------------------------------------------------------------------------


def test_heldout_templates_are_disjoint_from_training_templates() -> None:
    assert set(HELDOUT_TEMPLATES).isdisjoint(TRAIN_TEMPLATES)
    rng = np.random.default_rng(0)
    frames = {make_caption("anger", "cartoon", rng, intensity=0.9, split="heldout").template for _ in range(400)}
    assert frames <= set(HELDOUT_TEMPLATES) and len(frames) == len(HELDOUT_TEMPLATES)


def test_captions_name_the_emotion_style_and_intensity_they_claim() -> None:
    rng = np.random.default_rng(1)
    for _ in range(300):
        emotion, style = EMOTIONS[rng.integers(7)], STYLES[rng.integers(4)]
        intensity = float(rng.uniform(0.35, 1.0))
        caption = make_caption(emotion, style, rng, intensity=intensity, split="train")
        words = [w for band in EMOTION_WORDS[emotion].values() for w in band]
        assert caption.emotion == emotion
        assert caption.style in (None, style)
        if caption.style is not None:
            named = [s for s in STYLE_ADJECTIVES[style] + STYLE_PHRASES[style] if s in caption.text]
            assert named, caption.text
        if caption.band is not None:
            assert any(w in caption.text for w in EMOTION_WORDS[emotion][caption.band]), caption.text
        elif "{emo}" in caption.template or "{a_emo}" in caption.template:
            assert any(w in caption.text for w in words), caption.text
        assert caption_matches(caption, emotion, style, intensity)
        assert not caption_matches(caption, EMOTIONS[(EMOTIONS.index(emotion) + 1) % 7], style, intensity)


def test_strong_words_are_used_for_strong_faces() -> None:
    rng = np.random.default_rng(2)
    texts = " | ".join(make_caption("happiness", "anime", rng, intensity=0.95).text for _ in range(300))
    assert re.search(r"beaming|ecstatic|overjoyed|laughing", texts)
    assert "anime" in texts or "manga" in texts


def test_make_caption_rejects_unknown_labels() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown emotion"):
        make_caption("joyous", "cartoon", rng)
    with pytest.raises(ValueError, match="unknown style"):
        make_caption("happiness", "pixel", rng)
    with pytest.raises(ValueError, match="split"):
        make_caption("happiness", "cartoon", rng, split="test")


# ---- tokeniser and MiniLM ------------------------------------------------------------------------------------


def test_tokenize_pads_and_truncates_to_the_served_length() -> None:
    ids, mask = tokenize(["a furious face in cartoon style", "word " * 200])
    assert ids.shape == mask.shape == (2, MAX_TOKENS) and ids.dtype == mask.dtype == np.int64
    assert ids[0, 0] == 101 and mask[0].sum() < MAX_TOKENS  # [CLS] ... [SEP] then padding
    assert ids[0, mask[0].sum() - 1] == 102 and (ids[0, mask[0].sum() :] == 0).all()
    assert mask[1].all() and ids[1, -1] == 102  # truncated, still closed by [SEP]


def test_tokenize_can_pad_to_the_batch_longest_text_instead() -> None:
    """text_query's token axis is dynamic: a batch is padded to its longest text (at most MAX_TOKENS), and the
    tokens are the same as the fixed-length ones up to there."""
    texts = ["a furious face", "a furious face in cartoon style"]
    fixed_ids, fixed_mask = tokenize(texts)
    ids, mask = tokenize(texts, pad_to_longest=True)
    longest = int(fixed_mask.sum(1).max())
    assert ids.shape == mask.shape == (2, longest) and longest < MAX_TOKENS
    assert (ids == fixed_ids[:, :longest]).all() and (mask == fixed_mask[:, :longest]).all()
    assert mask[1].all() and not mask[0].all()
    assert tokenize(["word " * 200], pad_to_longest=True)[0].shape == (1, MAX_TOKENS)  # still truncated at 32


@pytest.mark.parametrize("bad", [[""], ["   "], [None], "a single string"])
def test_tokenize_rejects_bad_texts(bad) -> None:
    with pytest.raises(QueryTextError):
        tokenize(bad)


def test_minilm_puts_paraphrases_closer_than_unrelated_sentences() -> None:
    from training.networks.minilm import pretrained_minilm

    sentences = [
        "The cat sat on the mat.",
        "A feline rested on a rug.",
        "Stock markets fell sharply today.",
        "a furious cartoon face",
        "an enraged toon character",
        "a calm realistic portrait",
    ]
    ids, mask = tokenize(sentences)
    with torch.no_grad():
        vectors = torch.nn.functional.normalize(
            pretrained_minilm()(torch.from_numpy(ids), torch.from_numpy(mask)), dim=-1
        )
    similarity = (vectors @ vectors.T).numpy()
    assert similarity[0, 1] > similarity[0, 2] + 0.3
    assert similarity[3, 4] > similarity[3, 5]


def test_text_checkpoint_holds_the_projection_only_and_loads_minilm_from_the_package() -> None:
    from safetensors.torch import load_file

    from training.checkpoints import load_checkpoint
    from training.networks.minilm import minilm_model_dir

    path = WEIGHTS / "text_embedder-cpu.pt"
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    assert not any(key.startswith("encoder.") for key in state)
    assert path.stat().st_size < 5e6
    model = load_checkpoint(path)
    reference = load_file(str(minilm_model_dir() / "model.safetensors"))
    assert torch.equal(
        model.encoder.encoder.layer[5].output.dense.weight, reference["encoder.layer.5.output.dense.weight"]
    )


def test_fuser_ignores_inputs_marked_absent() -> None:
    from training.checkpoints import load_checkpoint

    fuser = load_checkpoint(WEIGHTS / "query_fuser-cpu.pt")
    present = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    emotion, style = torch.eye(7)[[2]], torch.eye(4)[[1]]
    with torch.no_grad():
        a = fuser(torch.zeros(1, 512), torch.zeros(1, 512), emotion, style, present)["embedding"]
        b = fuser(torch.randn(1, 512), torch.randn(1, 512), emotion, style, present)["embedding"]
        nothing = fuser(
            torch.zeros(1, 512), torch.zeros(1, 512), torch.zeros(1, 7), torch.zeros(1, 4), torch.zeros(1, 4)
        )["embedding"]
    assert torch.allclose(a, b, atol=1e-6)
    assert torch.isfinite(nothing).all() and abs(nothing.norm().item() - 1) < 1e-4


# ---- real Triton ---------------------------------------------------------------------------------------------


def _stills(emotion: str, style: str, count: int, first_seed: int) -> np.ndarray:
    """Stills of held-out characters whose drawn label is exactly (emotion, style)."""
    from training.data.synthetic import sample_still

    faces, seed = [], first_seed
    while len(faces) < count:
        image, labels = sample_still(seed, style=style, emotion=emotion, character_id=f"c{1300 + seed % 200:05d}")
        if labels["emotion"] == emotion:
            faces.append(np.asarray(image))
        seed += 1
    return np.stack(faces)


@pytest.fixture(scope="module")
def embedders(full_server):
    from facecast import vocab
    from facecast.clients import embedders
    from facecast.serving.client import TritonModelClient

    urls = [full_server.triton_url]
    image = embedders.ImageEmbedder(TritonModelClient(vocab.IMAGE_EMBEDDER, urls))
    text = embedders.TextEmbedder(TritonModelClient(vocab.TEXT_EMBEDDER, urls))
    query = embedders.QueryEncoder(text, image, TritonModelClient(vocab.QUERY_FUSER, urls))
    return image, text, query


@pytest.fixture(scope="module")
def cartoon_library():
    angry, happy = _stills("anger", "cartoon", 8, 100), _stills("happiness", "cartoon", 8, 300)
    angry_anime = _stills("anger", "anime", 8, 500)
    return np.concatenate([angry, happy, angry_anime]), np.array(["angry"] * 8 + ["happy"] * 8 + ["angry_anime"] * 8)


@pytest.mark.triton
def test_text_query_ranks_angry_cartoon_stills_above_happy_ones(embedders, cartoon_library) -> None:
    image, text, _ = embedders
    faces, kinds = cartoon_library
    vectors, emotion_probs, style_probs = image.embed(faces)
    assert vectors.shape == (24, 512) and emotion_probs.shape == (24, 7) and style_probs.shape == (24, 4)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    query = text.embed(["a furious face in cartoon style"])[0]
    scores = vectors @ query
    assert scores[kinds == "angry"].min() > scores[kinds == "happy"].max()
    top = np.argsort(-scores)[:8]
    assert (kinds[top] == "angry").mean() >= 0.75, kinds[top]


@pytest.mark.triton
def test_served_text_embedder_matches_torch(embedders) -> None:
    from training.checkpoints import load_checkpoint

    _, text, _ = embedders
    sentences = ["beaming anime girl", "a teary realistic portrait, tears streaming"]
    served = text.embed(sentences)
    ids, mask = tokenize(sentences)
    with torch.no_grad():
        reference = load_checkpoint(WEIGHTS / "text_embedder-cpu.pt")(torch.from_numpy(ids), torch.from_numpy(mask))[
            "embedding"
        ].numpy()
    assert np.abs(served - reference).max() < 1e-4


@pytest.mark.triton
def test_served_text_query_is_text_embedder_then_query_fuser_in_one_call(full_server) -> None:
    """text_query answers what text_embedder (32 tokens) → query_fuser answer in two calls, for texts of different
    lengths sent at once (the dynamic batcher only joins requests of one length: none may get another's answer)."""
    from concurrent.futures import ThreadPoolExecutor

    from facecast.clients.embedders import Embedders

    embedders = Embedders.for_urls(full_server.triton_url)
    assert embedders.text_query is not None
    assert embedders.text_query.client.signature.inputs[0].dims == (-1,)
    texts = ["furious", "a furious face in cartoon style", "beaming anime girl with her eyes shut tight in joy"] * 8
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda text: embedders.text_query.encode([text]), texts))
    for text, (fused, text_vector) in zip(texts, answers):
        expected_text = embedders.text.embed([text])[0]
        expected = embedders.fuse(expected_text, None, None, None)
        assert np.abs(text_vector[0] - expected_text).max() < 1e-4, text
        assert np.abs(fused[0] - expected).max() < 1e-4, text


@pytest.mark.triton
def test_a_text_only_library_query_is_one_served_call(full_server, monkeypatch) -> None:
    from facecast.clients.embedders import Embedders
    from facecast.library.search import Query, encode_query
    from facecast.serving.client import TritonModelClient

    embedders = Embedders.for_urls(full_server.triton_url)
    embedders.prototypes()  # computed once per process, not per query
    calls: list[str] = []
    infer = TritonModelClient.infer

    def counted(self, *args, **kwargs):
        calls.append(self.model_name)
        return infer(self, *args, **kwargs)

    monkeypatch.setattr(TritonModelClient, "infer", counted)
    vector, context = encode_query(embedders, Query(text="an angry face in anime style"), [])
    assert calls == ["text_query"]
    assert context.emotion is not None and EMOTIONS[int(np.argmax(context.emotion))] == "anger"
    calls.clear()
    monkeypatch.setattr(embedders, "text_query", None)  # without text_query: the two calls of before
    two_calls, _ = encode_query(embedders, Query(text="an angry face in anime style"), [])
    assert calls == ["text_embedder", "query_fuser"] and np.abs(two_calls - vector).max() < 1e-4
    calls.clear()
    encode_query(embedders, Query(text="an angry face", style="anime"), [])  # mixed: text_embedder + fuser
    assert calls == ["text_embedder", "query_fuser"]


@pytest.mark.triton
def test_fused_queries_follow_emotion_and_style(embedders, cartoon_library) -> None:
    image, _, query = embedders
    faces, kinds = cartoon_library
    vectors = image.embed(faces)[0]
    by_labels = vectors @ query.encode(emotion="anger", style="cartoon")
    assert by_labels[kinds == "angry"].mean() > by_labels[kinds == "happy"].mean()
    assert by_labels[kinds == "angry"].mean() > by_labels[kinds == "angry_anime"].mean()
    # "like this happy cartoon face, but angry": the angry cartoon stills beat the angry anime and happy ones
    mixed = vectors @ query.encode(image=faces[kinds == "happy"][0], emotion="anger")
    assert mixed[kinds == "angry"].mean() > max(mixed[kinds == "happy"].mean(), mixed[kinds == "angry_anime"].mean())


@pytest.mark.triton
def test_bad_queries_get_clear_errors(embedders) -> None:
    from facecast.clients.embedders import QueryError

    image, text, query = embedders
    with pytest.raises(QueryError, match="empty query"):
        query.encode()
    with pytest.raises(QueryTextError, match="empty"):
        query.encode(text="  ")
    with pytest.raises(QueryError, match="unknown emotion"):
        query.encode(emotion="hangry")
    with pytest.raises(QueryError, match="uint8"):
        image.embed(np.zeros((2, 64, 64), np.float32))
    long_query = text.embed(["a furious face " * 700])  # ~10 kB: truncated to 32 tokens, still a unit vector
    assert long_query.shape == (1, 512) and abs(np.linalg.norm(long_query) - 1) < 1e-4
    quoted = text.embed(['\'; DROP TABLE faces; -- "angry"'])
    assert np.isfinite(quoted).all()


@pytest.mark.triton
def test_served_models_refuse_bad_tensors_by_name_and_still_answer_good_requests(full_server) -> None:
    """export/python_backend/model.py checks each request before it joins a batch: a token id past the vocabulary,
    a mask that is not 0/1 or a NaN gets a message naming the model and input (not ONNX Runtime's "Gather …
    indices element out of data bounds"), and good requests batched with a bad one are answered as usual."""
    from concurrent.futures import ThreadPoolExecutor

    from facecast import vocab
    from facecast.serving.client import TritonModelClient
    from facecast.serving.errors import InferenceFailed

    text = TritonModelClient(vocab.TEXT_EMBEDDER, full_server.triton_url)
    ids, mask = tokenize(["a furious face"])
    bad_ids = ids.copy()
    bad_ids[0, 1] = 10_000_000
    with pytest.raises(InferenceFailed, match=r"text_embedder: input input_ids must lie within \[0, \d+\], got"):
        text.infer({"input_ids": bad_ids, "attention_mask": mask})
    with pytest.raises(
        InferenceFailed, match=r"input attention_mask must lie within \[0, 1\], got values from -2 to 1"
    ):
        text.infer({"input_ids": ids, "attention_mask": mask - 2 * (mask == 0)})

    fuser = TritonModelClient(vocab.QUERY_FUSER, full_server.triton_url)
    fused = {
        "text_embedding": np.full((1, 512), np.nan, np.float32),
        "image_embedding": np.zeros((1, 512), np.float32),
        "emotion": np.zeros((1, 7), np.float32),
        "style": np.zeros((1, 4), np.float32),
        "present": np.array([[1, 0, 0, 0]], np.float32),
    }
    with pytest.raises(InferenceFailed, match="query_fuser: input text_embedding has NaN or infinite values"):
        fuser.infer(fused)

    def one(good: bool):
        try:
            return text.infer({"input_ids": ids if good else bad_ids, "attention_mask": mask})["embedding"]
        except InferenceFailed as error:
            return error

    with ThreadPoolExecutor(8) as pool:  # concurrent requests: the dynamic batcher mixes good and bad ones
        answers = list(pool.map(one, [i % 2 == 0 for i in range(64)]))
    assert all(isinstance(a, np.ndarray) and np.isfinite(a).all() for a in answers[::2])
    assert all(isinstance(a, InferenceFailed) for a in answers[1::2])
