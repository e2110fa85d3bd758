"""Retrieval quality of the expression library, end to end through the served embedders (writes
docs/results-retrieval.md).

    python -m training.evaluate_retrieval [--stills 2000] [--url HOST:PORT] [--doc docs/results-retrieval.md]

Without --url it exports weights/{image_embedder,text_embedder,query_fuser}-cpu.pt into a temporary Triton
repository and starts its own server on free ports (as the tests do).

Libraries (both ingested through facecast.library, i.e. image_embedder + DuckDB + FAISS):
* synthetic: `--stills` stills of the held-out test characters c01300–c01499 (never seen by any trained model),
  rendered with training.data.synthetic.sample_still from a seed namespace no training set uses;
* emoji: the licensed emoji of data/emoji/manifest.csv (`make emoji`), all cartoon style.
Each is evaluated twice: "labelled" (ingested with its manifest, so emotion/style are a person's labels) and
"unlabelled" (no labels: the image_embedder's own heads label the items). Relevance always uses the true labels.

Query types (seed 003 Table 7), each run through Library.search (HNSW candidates + context-aware re-rank):
* text → emotion + style: held-out caption templates (training/data/captions.py HELDOUT_TEMPLATES) that name an
  emotion and a style; relevant = same emotion AND style.
* text → emotion: emotion-only sentence frames defined here (not used in training); relevant = same emotion.
* image: a still of a held-out character that is not in the library; relevant = same emotion (and, second row,
  same emotion AND style).
* emotion: Query(emotion=E); relevant = same emotion. style: Query(style=S); relevant = same style.
* mixed ("like this one, but <emotion>"): a reference still plus another emotion; relevant = that emotion AND the
  reference's style.
Metrics: P@1/5/10/20, R@50 (relevant found in the top 50 / all relevant in the library; its ceiling when more than
50 items are relevant is shown), MAP (average precision over the top 100), nDCG@20 (binary gains).

Feedback (seed 003 §4.3), a held-out simulated-user protocol on the labelled synthetic library: each simulated user
has a hidden preference (anime style; a set of 20 favourite characters; strong expressions). On training queries
(emotion-only held-out captions) they look at the top 10 ranked with their profile and select the relevant items
they like (at most 3); everything else shown counts as skipped; the profile re-learns after every query. Then on
different held-out queries P@10 w.r.t. "right emotion AND liked" is compared with the default ranking (no profile).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from facecast.clients.embedders import Embedders
from facecast.config import PROJECT_ROOT
from facecast.library import Library, Query
from facecast.vocab import EMOTIONS, STYLES
from training.evaluation import served_weights

EMBEDDER_WEIGHTS = [
    PROJECT_ROOT / "weights" / f"{name}-cpu.pt" for name in ("image_embedder", "text_embedder", "query_fuser")
]
LIBRARY_SEED = 34  # still seed namespace: build.py uses 0-2, the embedders' training/eval 31-32
QUERY_SEED = 35
TEST_CHARACTERS = [f"c{i:05d}" for i in range(1300, 1500)]
DOC = PROJECT_ROOT / "docs" / "results-retrieval.md"
RETRIEVE = 100


# --------------------------------------------------------------------------------------------------------------------
# server and data
# --------------------------------------------------------------------------------------------------------------------


def served_embedders(url: str | None) -> contextlib.AbstractContextManager[str]:
    """A Triton URL serving the embedders (and text_query, built from two of them): the given one, or a server
    started here on free ports."""
    return served_weights(EMBEDDER_WEIGHTS, url, prefix="facecast-retrieval-")


def render_synthetic(folder: Path, count: int, seed: int) -> Path:
    """`count` stills of held-out characters as PNG files plus a manifest; returns the manifest path."""
    from training.data.synthetic import sample_still

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        still_seed = seed * 1_000_003 + i
        character = TEST_CHARACTERS[int(np.random.default_rng([still_seed, 7]).integers(len(TEST_CHARACTERS)))]
        image, labels = sample_still(still_seed, character_id=character)
        path = folder / f"{i:06d}.png"
        image.save(path)
        rows.append({"path": path.name, **labels})
    manifest = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def ingest(db_path: Path, manifest: Path, embedders: Embedders, labelled: bool) -> Library:
    library = Library.open(db_path, embedders=embedders)
    if labelled:
        report = library.add_manifest(manifest)
    else:
        files = [manifest.parent / p if not Path(p).is_absolute() else Path(p) for p in pd.read_csv(manifest)["path"]]
        report = library.add_images(files, source="folder")
    if report.failed:
        raise SystemExit(f"ingest failed for {len(report.failed)} files, first: {report.failed[0]}")
    return library


def truth_of(library: Library, manifest: Path) -> pd.DataFrame:
    """True labels per library item id (joined on the file path)."""
    labels = pd.read_csv(manifest)
    labels["path"] = [str((manifest.parent / p).resolve()) for p in labels["path"]]
    items = library.store.library.items(limit=None)[["id", "source_path"]]
    items["path"] = [str(Path(p).resolve()) for p in items["source_path"]]
    return items.merge(labels, on="path", how="inner", suffixes=("", "_label")).set_index("id")


# --------------------------------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------------------------------


def ranking_metrics(relevant_flags: np.ndarray, total_relevant: int) -> dict[str, float]:
    """Metrics of one ranked list (binary relevance, best first)."""
    flags = np.asarray(relevant_flags, bool)

    def precision(k: int) -> float:
        return float(flags[:k].sum()) / k

    hits = np.cumsum(flags[:RETRIEVE])
    ap_denominator = min(total_relevant, RETRIEVE)
    average_precision = (
        float(((hits / np.arange(1, len(hits) + 1)) * flags[:RETRIEVE]).sum() / ap_denominator)
        if ap_denominator
        else 0.0
    )
    gains = flags[:20] / np.log2(np.arange(2, min(20, len(flags)) + 2))
    ideal = (1 / np.log2(np.arange(2, min(20, total_relevant) + 2))).sum()
    return {
        "P@1": precision(1),
        "P@5": precision(5),
        "P@10": precision(10),
        "P@20": precision(20),
        "R@50": float(flags[:50].sum()) / total_relevant if total_relevant else 0.0,
        "R@50 ceiling": min(50, total_relevant) / total_relevant if total_relevant else 0.0,
        "MAP": average_precision,
        "nDCG@20": float(gains.sum() / ideal) if ideal else 0.0,
        "P@10 ceiling": min(10, total_relevant) / 10,
    }


def evaluate_queries(
    library: Library, truth: pd.DataFrame, queries: list[tuple[Query, dict]], profile: str | None = None
) -> dict[str, float]:
    """Mean metrics over queries; each query comes with the label values that make an item relevant."""
    rows, latencies = [], []
    for query, wanted in queries:
        relevant = np.ones(len(truth), bool)
        for column, value in wanted.items():
            relevant &= truth[column].to_numpy() == value
        relevant_ids = set(truth.index[relevant].tolist())
        results = library.search(query, top_k=RETRIEVE, profile=profile)
        latencies.append(results.timings_ms["total"])
        rows.append(ranking_metrics(np.array([r.id in relevant_ids for r in results.results]), len(relevant_ids)))
    means = pd.DataFrame(rows).mean().to_dict()
    means["queries"] = len(queries)
    means["mean ms"] = float(np.mean(latencies))
    return means


# --------------------------------------------------------------------------------------------------------------------
# queries
# --------------------------------------------------------------------------------------------------------------------


# Every held-out template of training/data/captions.py names a style, so emotion-only queries use these frames,
# which are not among its TRAIN_TEMPLATES either (its style-free training frames are "{a_emo} {noun}",
# "{emo} {noun}" and "character feeling {emo}").
EMOTION_ONLY_TEMPLATES = (
    "show me someone {emo}",
    "looking {emo}",
    "{emo_noun} on a {noun}",
    "reference of {a_emo} {noun}",
    "someone who is {emo}",
    "find me {a_emo} {noun}",
)


def emotion_only_caption(emotion: str, rng: np.random.Generator) -> str:
    from training.data.captions import EMOTION_NOUNS, EMOTION_WORDS, NOUNS

    words = EMOTION_WORDS[emotion]
    emo = str(rng.choice([w for band in words.values() for w in band]))
    template = EMOTION_ONLY_TEMPLATES[int(rng.integers(len(EMOTION_ONLY_TEMPLATES)))]
    article = "an " if emo[0].lower() in "aeiou" else "a "
    return template.format(
        emo=emo, a_emo=article + emo, emo_noun=str(rng.choice(EMOTION_NOUNS[emotion])), noun=str(rng.choice(NOUNS))
    )


def caption_queries(
    count: int,
    rng: np.random.Generator,
    *,
    named_style: bool,
    styles: tuple[str, ...] = STYLES,
    emotions: tuple[str, ...] = EMOTIONS,
) -> list[tuple[Query, dict]]:
    from training.data.captions import make_caption

    queries = []
    while len(queries) < count:
        emotion = emotions[len(queries) % len(emotions)]
        if not named_style:
            queries.append((Query(text=emotion_only_caption(emotion, rng)), {"emotion": emotion}))
            continue
        style = styles[int(rng.integers(len(styles)))]
        caption = make_caption(emotion, style, rng, split="heldout", extra_probability=0.0)
        if caption.style is None:
            continue
        queries.append((Query(text=caption.text), {"emotion": emotion, "style": style}))
    return queries


def image_queries(count: int, seed: int, with_style: bool) -> list[tuple[Query, dict]]:
    from training.data.synthetic import sample_still

    queries = []
    for i in range(count):
        still_seed = seed * 1_000_003 + i
        character = TEST_CHARACTERS[int(np.random.default_rng([still_seed, 7]).integers(len(TEST_CHARACTERS)))]
        image, labels = sample_still(still_seed, character_id=character)
        wanted = {"emotion": labels["emotion"], **({"style": labels["style"]} if with_style else {})}
        queries.append((Query(image=np.asarray(image)), wanted))
    return queries


def mixed_queries(count: int, seed: int, rng: np.random.Generator) -> list[tuple[Query, dict]]:
    from training.data.synthetic import sample_still

    queries = []
    for i in range(count):
        still_seed = seed * 1_000_003 + 500_000 + i
        character = TEST_CHARACTERS[int(np.random.default_rng([still_seed, 7]).integers(len(TEST_CHARACTERS)))]
        image, labels = sample_still(still_seed, character_id=character)
        other = [e for e in EMOTIONS if e != labels["emotion"]]
        emotion = other[int(rng.integers(len(other)))]
        queries.append(
            (Query(image=np.asarray(image), emotion=emotion), {"emotion": emotion, "style": labels["style"]})
        )
    return queries


def synthetic_query_sets(rng: np.random.Generator, per_type: int) -> dict[str, list[tuple[Query, dict]]]:
    return {
        "text → emotion + style": caption_queries(per_type, rng, named_style=True),
        "text → emotion": caption_queries(per_type // 2, rng, named_style=False),
        "image → emotion": image_queries(per_type, QUERY_SEED, with_style=False),
        "image → emotion + style": image_queries(per_type, QUERY_SEED, with_style=True),
        "emotion": [(Query(emotion=e), {"emotion": e}) for e in EMOTIONS],
        "style": [(Query(style=s), {"style": s}) for s in STYLES],
        "mixed (image + other emotion)": mixed_queries(per_type, QUERY_SEED, rng),
    }


def emoji_query_sets(rng: np.random.Generator, per_type: int) -> dict[str, list[tuple[Query, dict]]]:
    return {
        "text → emotion + style": caption_queries(per_type, rng, named_style=True, styles=("cartoon",)),
        "text → emotion": caption_queries(per_type // 2, rng, named_style=False),
        "emotion": [(Query(emotion=e), {"emotion": e}) for e in EMOTIONS],
    }


# --------------------------------------------------------------------------------------------------------------------
# feedback protocol
# --------------------------------------------------------------------------------------------------------------------


def simulated_users(truth: pd.DataFrame, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Hidden preferences: which library items each simulated user likes (boolean per truth row)."""
    favourites = set(rng.choice(sorted(truth["character"].unique()), size=20, replace=False).tolist())
    return {
        "likes anime": (truth["style"] == "anime").to_numpy(),
        "likes 20 characters": truth["character"].isin(favourites).to_numpy(),
        "likes strong expressions": (truth["intensity"] >= 0.75).to_numpy(),
    }


def feedback_protocol(
    library: Library, truth: pd.DataFrame, rng: np.random.Generator, train_queries: int, test_queries: int
) -> pd.DataFrame:
    emotions = tuple(e for e in EMOTIONS if e != "neutral")  # neutral has no intensity to prefer
    train = caption_queries(train_queries, rng, named_style=False, emotions=emotions)
    test = caption_queries(test_queries, rng, named_style=False, emotions=emotions)
    ids = truth.index.to_numpy()
    rows = []
    for name, liked in simulated_users(truth, rng).items():
        liked_ids = set(ids[liked].tolist())
        profile = f"sim:{name}"

        def relevant(wanted: dict, liked_ids: set[int] = liked_ids) -> set[int]:
            return set(ids[(truth["emotion"] == wanted["emotion"]).to_numpy()].tolist()) & liked_ids

        def p_at_10(profile_name: str | None) -> tuple[float, float]:
            liked_hits, emotion_hits = [], []
            for query, wanted in test:
                shown = library.search(query, top_k=10, profile=profile_name).results
                good = relevant(wanted)
                liked_hits.append(sum(r.id in good for r in shown) / 10)
                emotion_hits.append(sum(r.emotion == wanted["emotion"] for r in shown) / 10)
            return float(np.mean(liked_hits)), float(np.mean(emotion_hits))

        before, before_emotion = p_at_10(None)
        selections = 0
        for query, wanted in train:
            results = library.search(query, top_k=10, profile=profile)
            good = relevant(wanted)
            picked = [r.id for r in results.results if r.id in good][:3]
            library.record_selection(profile, results, picked)
            selections += len(picked)
        after, after_emotion = p_at_10(profile)
        weights = library.profile(profile)[0]
        rows.append(
            {
                "simulated user": name,
                "train queries": len(train),
                "selections": selections,
                "test queries": len(test),
                "P@10 liked, before": before,
                "P@10 liked, after": after,
                "P@10 emotion, before": before_emotion,
                "P@10 emotion, after": after_emotion,
                "learned weights (emo, sty, tmp, chr, pref)": ", ".join(f"{w:.2f}" for w in weights),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------------------------


METRIC_COLUMNS = [
    "queries",
    "P@1",
    "P@5",
    "P@10",
    "P@10 ceiling",
    "P@20",
    "R@50",
    "R@50 ceiling",
    "MAP",
    "nDCG@20",
    "mean ms",
]


def table(results: dict[str, dict[str, float]]) -> str:
    from training.evaluation import markdown_table

    frame = pd.DataFrame(results).T[METRIC_COLUMNS]
    frame["queries"] = frame["queries"].astype(int)
    return markdown_table(frame)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stills", type=int, default=2000, help="synthetic library size")
    parser.add_argument("--queries", type=int, default=140, help="queries per generated query type")
    parser.add_argument("--url", help="use this Triton (host:port) instead of starting one")
    parser.add_argument("--emoji", type=Path, default=PROJECT_ROOT / "data" / "emoji" / "manifest.csv")
    parser.add_argument("--feedback-train", type=int, default=36)
    parser.add_argument("--feedback-test", type=int, default=30)
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--threads", type=int, default=1, help="FAISS/OpenMP threads")
    args = parser.parse_args(argv)
    import faiss

    faiss.omp_set_num_threads(args.threads)
    started = time.perf_counter()
    sections: list[str] = []
    with served_embedders(args.url) as url, tempfile.TemporaryDirectory(prefix="facecast-eval-") as scratch:
        scratch = Path(scratch)
        embedders = Embedders.for_urls(url)
        manifest = render_synthetic(scratch / "synthetic", args.stills, LIBRARY_SEED)
        print(f"[retrieval] rendered {args.stills} stills ({time.perf_counter() - started:.0f} s)", flush=True)
        summary: dict[str, float] = {}
        for labelled in (True, False):
            name = "labelled" if labelled else "unlabelled"
            library = ingest(scratch / f"synthetic-{name}.duckdb", manifest, embedders, labelled)
            truth = truth_of(library, manifest)
            results = {
                kind: evaluate_queries(library, truth, queries)
                for kind, queries in synthetic_query_sets(np.random.default_rng(5), args.queries).items()
            }
            summary[f"synthetic {name}"] = results["text → emotion + style"]["P@10"]
            sections.append(
                f"### Synthetic library, {name} ({len(truth)} items, held-out characters)\n\n" + table(results)
            )
            print(sections[-1], flush=True)
            if labelled:
                feedback = feedback_protocol(
                    library, truth, np.random.default_rng(11), args.feedback_train, args.feedback_test
                )
                from training.evaluation import markdown_table

                feedback_md = markdown_table(feedback.set_index("simulated user"))
                print(feedback_md, flush=True)
            library.close()
        if args.emoji.is_file():
            for labelled in (True, False):
                name = "labelled" if labelled else "unlabelled"
                library = ingest(scratch / f"emoji-{name}.duckdb", args.emoji, embedders, labelled)
                truth = truth_of(library, args.emoji)
                results = {
                    kind: evaluate_queries(library, truth, queries)
                    for kind, queries in emoji_query_sets(np.random.default_rng(6), args.queries).items()
                }
                summary[f"emoji {name}"] = results["text → emotion + style"]["P@10"]
                counts = truth["emotion"].value_counts().to_dict()
                sections.append(
                    f"### Emoji library, {name} ({len(truth)} items, all cartoon; per emotion: "
                    + ", ".join(f"{k} {v}" for k, v in counts.items())
                    + ")\n\n"
                    + table(results)
                )
                print(sections[-1], flush=True)
                library.close()
        else:
            sections.append(f"Emoji library: {args.emoji} missing (`make emoji`), not evaluated.")
    elapsed = time.perf_counter() - started
    targets = (
        f"- text → emotion + style P@10, synthetic: labelled {summary['synthetic labelled']:.3f}, unlabelled "
        f"{summary['synthetic unlabelled']:.3f} (target ≥ 0.95)\n"
    )
    if "emoji labelled" in summary:
        targets += (
            f"- text → emotion + style P@10, emoji: labelled {summary['emoji labelled']:.3f}, unlabelled "
            f"{summary['emoji unlabelled']:.3f} (target ≥ 0.80; see the P@10 ceiling column: emotions with "
            "fewer than 10 emoji cap it)\n"
        )
    doc = f"""# Retrieval results (expression library)

Written by `python -m training.evaluate_retrieval --stills {args.stills} --queries {args.queries}` in
{elapsed / 60:.1f} min (it starts its own Triton with the embedders). Everything goes through the product
path: images ingested by `facecast.library` (image_embedder on Triton → DuckDB + FAISS HNSW), queries encoded by the
served models (a text-only query by text_query, text_embedder → query_fuser in one graph; the others by
image_embedder / text_embedder and query_fuser), HNSW candidates (200) re-ranked by `facecast.library.ranking` with
the seed's default weights (0.45 / 0.25 / 0.15 / 0.10 / 0.05).

"Labelled": the library was ingested with its manifest (emotion, style, character, intensity are a person's labels).
"Unlabelled": plain image files; the image_embedder's heads label the items. Relevance always uses the true labels.
Text queries use caption templates held out from the embedders' training; synthetic items and image queries are of
held-out characters (c01300–c01499). P@10 ceiling / R@50 ceiling: the best possible value when fewer than 10
items are relevant / more than 50 are. MAP is over the top {RETRIEVE}. Latency here is the library's own
measurement on a shared 2-core machine with one query at a time (see docs/benchmarks.md for p50/p95 at scale).

## Targets

{targets}
## Per query type

{(chr(10) * 2).join(sections)}

## Feedback: simulated users with hidden preferences

Held-out protocol on the labelled synthetic library: each simulated user runs {args.feedback_train} training
queries (emotion-only held-out captions), sees the top 10 ranked with their profile, selects up to 3 shown items
that have the asked emotion and that they like (the rest count as skipped); the profile re-learns after each query
(facecast.library.feedback: Beta-smoothed selection rates for style / character / intensity band, pairwise-logistic
weights). Then {args.feedback_test} different held-out queries are ranked with the default weights ("before") and
with the learned profile ("after"). "P@10 liked": right emotion AND liked by the user; "P@10 emotion": right emotion.

{feedback_md}
"""
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(doc)
    print(f"[retrieval] wrote {args.doc} in {elapsed / 60:.1f} min")


if __name__ == "__main__":
    main()
