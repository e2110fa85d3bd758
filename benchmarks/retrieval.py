"""Library search at scale: end-to-end query latency (now and as it was before issue 16, in one run), HNSW recall
against exact search over an efSearch sweep, and what each size costs (fill, index build, memory).

    python -m benchmarks.retrieval [--sizes 10000 100000 [1000000]] [--queries 60] [--url HOST:PORT]

1,000,000 items take about 15 minutes more on these 2 shared cores (fill ~5 min, HNSW build ~8 min on one thread) and
~9 GB of memory at the peak (~13 GB during the recall measurement): add 1000000 to --sizes when there is the time.

Writes the `retrieval` section of docs/benchmarks.md (benchmarks/report.py). Without --url it starts its own Triton
with the three embedders (as training/evaluate_retrieval.py does).

The libraries are filled from REAL embeddings: `--base` stills of held-out characters are embedded by the served
image_embedder, and each library item is a perturbed copy of one of them (Gaussian noise of norm ≈ 0.3, then
re-normalised: cosine ≈ 0.95 to its source) with that still's labels and a synthetic character id; thumbnails are a
tiny shared PNG. That keeps the neighbourhood structure of real embeddings (clusters by emotion and style) at
sizes the renderer could not draw in minutes. Rows go into DuckDB through the store (Arrow bulk insert) and the
FAISS index is built by opening the library (the build time is reported).

Latency is `Library.search(...)` wall time per query, one query at a time: query encoding on Triton (text_query for
a text; image_embedder + query_fuser otherwise), HNSW candidates (200), the candidates' ranking rows, re-rank; top 10.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
from PIL import Image

from benchmarks.report import write_section
from facecast.clients.embedders import Embedders
from facecast.library import Library, Query
from facecast.library.vector_index import EF_SEARCH_BY_SIZE, ef_search_for
from facecast.store import EMBEDDING_DIM, LibraryItem, open_store
from facecast.vocab import EMOTIONS, STYLES
from training.evaluate_retrieval import QUERY_SEED, TEST_CHARACTERS, caption_queries, served_embedders

BASE_SEED = 36
NOISE_NORM = 0.3


def base_embeddings(embedders: Embedders, count: int) -> tuple[np.ndarray, list[dict]]:
    from training.data.synthetic import sample_still

    faces, labels = [], []
    for i in range(count):
        seed = BASE_SEED * 1_000_003 + i
        character = TEST_CHARACTERS[i % len(TEST_CHARACTERS)]
        image, label = sample_still(seed, character_id=character)
        faces.append(np.asarray(image))
        labels.append(label)
    vectors, _, _ = embedders.embed_faces(np.stack(faces))
    return vectors, labels


def fill(db_path: Path, size: int, vectors: np.ndarray, labels: list[dict], rng: np.random.Generator) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 200, 200)).save(buffer, format="PNG")
    thumbnail = buffer.getvalue()
    with open_store(db_path) as store:
        for start in range(0, size, 20_000):
            count = min(20_000, size - start)
            source = rng.integers(0, len(vectors), count)
            noisy = vectors[source] + rng.normal(size=(count, EMBEDDING_DIM)).astype(np.float32) * (
                NOISE_NORM / np.sqrt(EMBEDDING_DIM)
            )
            noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
            items = []
            for j in range(count):
                label = labels[source[j]]
                items.append(
                    LibraryItem(
                        content_sha256=f"bench-{size}-{start + j}",
                        source="benchmark",
                        source_path=f"filler/{start + j}",
                        emotion=label["emotion"],
                        style=label["style"],
                        emotion_probs=np.eye(7)[EMOTIONS.index(label["emotion"])],
                        style_probs=np.eye(4)[STYLES.index(label["style"])],
                        embedding=noisy[j],
                        thumbnail=thumbnail,
                        labelled=True,
                        character=f"f{int(rng.integers(5000)):04d}",
                        intensity=label["intensity"],
                        params=np.asarray([label[k] for k in ("mouth", "eye", "brow", "cheek")], np.float32),
                    )
                )
            store.library.add(items)


def query_sets(count: int, rng: np.random.Generator) -> dict[str, list[Query]]:
    from training.data.synthetic import sample_still

    images = []
    for i in range(count):
        seed = QUERY_SEED * 1_000_003 + 900_000 + i
        image, _ = sample_still(seed, character_id=TEST_CHARACTERS[i % len(TEST_CHARACTERS)])
        images.append(np.asarray(image))
    texts = [q.text for q, _ in caption_queries(count, rng, named_style=True)]
    return {
        "text": [Query(text=t) for t in texts],
        "image": [Query(image=im) for im in images],
        "emotion": [Query(emotion=EMOTIONS[i % 7]) for i in range(count)],
        "style": [Query(style=STYLES[i % 4]) for i in range(count)],
        "mixed": [Query(image=im, emotion=EMOTIONS[i % 7]) for i, im in enumerate(images)],
    }


# efSearch values the recall sweep measures (the library's: vector_index.EF_SEARCH_BY_SIZE; below 200 it makes no
# difference: the first stage asks for 200 candidates and FAISS searches at least that wide)
EF_SWEEP = (256, 384, 512, 768, 1024, 1536, 2048)
# The alternative measured beside HNSW: IVF-Flat (exact distances inside the probed lists), √N lists trained on a
# sample, nprobe swept. Not what the library runs; what the numbers say about moving to it at 1M.
NPROBE_SWEEP = (8, 16, 32, 64)
IVF_TRAINING_SAMPLE = 50_000
TARGET_P50_MS, TARGET_P95_MS, TARGET_RECALL = 10.0, 20.0, 0.98
STAGES = ("encode", "ann", "fetch", "rerank")


def recall_at_10(library: Library, vectors: np.ndarray) -> dict[str, float]:
    """Recall@10 of the first stage (200 candidates, top 10 of them) against exact search, and the HNSW time per
    query, at each efSearch of EF_SWEEP."""
    ids, stored = library.store.library.embeddings()
    exact = ids[np.argsort(-(vectors @ stored.T), axis=1)[:, :10]]
    measured = ivf_recall(ids, stored, vectors, exact)
    del stored
    for ef in EF_SWEEP:
        started = time.perf_counter()
        found = np.concatenate([library.index.search(v, 200, ef_search=ef)[0] for v in vectors])[:, :10]
        milliseconds = 1000 * (time.perf_counter() - started) / len(vectors)
        measured[f"recall@10 ef {ef}"] = float(np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)]))
        measured[f"ann ms ef {ef}"] = milliseconds
    return measured


def ivf_recall(ids: np.ndarray, stored: np.ndarray, vectors: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    """Recall@10 and ms per query of an IVF-Flat index over the same vectors (NPROBE_SWEEP), and its build time."""
    lists = max(16, int(np.sqrt(len(ids))))
    started = time.perf_counter()
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(stored.shape[1]), stored.shape[1], lists, faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(0).choice(len(stored), min(len(stored), IVF_TRAINING_SAMPLE), replace=False)
    index.train(stored[np.sort(sample)])
    index.add_with_ids(stored, ids)
    measured = {"IVF lists": lists, "IVF build s": time.perf_counter() - started}
    for nprobe in NPROBE_SWEEP:
        index.nprobe = nprobe
        started = time.perf_counter()
        found = np.concatenate([index.search(v[None], 200)[1] for v in vectors])[:, :10]
        measured[f"IVF ms nprobe {nprobe}"] = 1000 * (time.perf_counter() - started) / len(vectors)
        measured[f"IVF recall@10 nprobe {nprobe}"] = float(
            np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)])
        )
    return measured


def smallest_ef(recall: dict[str, float]) -> int | None:
    """The smallest swept efSearch whose recall@10 reaches TARGET_RECALL, or None."""
    return next((ef for ef in EF_SWEEP if recall[f"recall@10 ef {ef}"] >= TARGET_RECALL), None)


def reset_peak_rss() -> None:
    """Start a new peak-RSS window (Linux: writing 5 to clear_refs resets VmHWM)."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2
    return float("nan")


class Before:
    """The search as it was before issue 16 goal 3, switched on for one query: two Triton calls for a text (32-token
    text_embedder, then query_fuser), candidate rows from DuckDB, efSearch 1024."""

    EF_SEARCH = 1024

    def __init__(self, library: Library) -> None:
        self.library = library

    def __enter__(self) -> None:
        embedders = self.library.need_embedders()
        self.saved = (embedders.text_query, self.library.rows, self.library.index.ef_search)
        embedders.text_query, self.library.rows, self.library.index.ef_search = None, None, self.EF_SEARCH

    def __exit__(self, *exc_info: object) -> None:
        embedders = self.library.need_embedders()
        embedders.text_query, self.library.rows, self.library.index.ef_search = self.saved


def latency_row(size: int, kind: str, variant: str, timings: list[dict[str, float]]) -> dict:
    total = np.array([t["total"] for t in timings])
    return {
        "items": size,
        "query": kind,
        "search": variant,
        "p50 ms": np.percentile(total, 50),
        "p95 ms": np.percentile(total, 95),
        **{f"{stage} p50": np.median([t[stage] for t in timings]) for stage in STAGES},
    }


def measure_size(size: int, scratch: Path, embedders: Embedders, vectors, labels, queries) -> tuple[list, dict]:
    db = scratch / f"library-{size}.duckdb"
    reset_peak_rss()
    mark = time.perf_counter()
    fill(db, size, vectors, labels, np.random.default_rng(size))
    filled = time.perf_counter() - mark
    mark = time.perf_counter()
    library = Library.open(db, embedders=embedders)  # no index yet: built from DuckDB's vectors
    built = time.perf_counter() - mark
    mark = time.perf_counter()
    assert library.rows is not None
    library.rows.refresh()
    rows_loaded = time.perf_counter() - mark
    latency = []
    for kind, batch in queries.items():
        library.search(batch[0], top_k=10)  # warm: prototypes, connections
        after, before = [], []
        for query in batch:  # before and after alternate, so both see the same moments of a noisy machine
            after.append(library.search(query, top_k=10).timings_ms)
            if kind == "text":
                with Before(library):
                    before.append(library.search(query, top_k=10).timings_ms)
        if before:
            latency.append(latency_row(size, kind, "before (2 calls, 32 tokens, DuckDB rows, ef 1024)", before))
        latency.append(latency_row(size, kind, f"now (ef {library.index.current_ef_search()})", after))
    peak_rss = peak_rss_gb()  # before the recall measurement, which holds more copies of the vectors
    query_vectors = np.stack([library.encode_query(q, [])[0] for q in queries["text"] + queries["image"]])
    recall = recall_at_10(library, query_vectors)
    index_mb = library.index_path.stat().st_size / 1e6
    scale = {
        "items": size,
        "DuckDB fill s": filled,
        "fill items/s": size / filled,
        "index build s": built,
        "build items/s": size / built,
        "row copy load s": rows_loaded,
        "row copy MB": library.rows.nbytes / 1e6,
        "index file MB": index_mb,
        "peak RSS GB": peak_rss,
        "library ef": ef_search_for(size),
        **recall,
    }
    scale["recall@10 at library ef"] = recall[f"recall@10 ef {ef_search_for(size)}"]
    print({k: round(v, 3) if isinstance(v, float) else v for k, v in scale.items()}, flush=True)
    library.close()
    return latency, scale


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=60, help="queries per type")
    parser.add_argument("--base", type=int, default=1000, help="real embedded stills the library is drawn from")
    parser.add_argument("--threads", type=int, default=1, help="FAISS/OpenMP threads")
    parser.add_argument("--url")
    parser.add_argument("--no-write", action="store_true", help="print the section, leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    faiss.omp_set_num_threads(args.threads)
    started = time.perf_counter()
    latency_rows, scale_rows = [], []
    with served_embedders(args.url) as url, tempfile.TemporaryDirectory(prefix="facecast-bench-") as scratch:
        embedders = Embedders.for_urls(url)
        vectors, labels = base_embeddings(embedders, args.base)
        queries = query_sets(args.queries, np.random.default_rng(3))
        for size in args.sizes:
            latency, scale = measure_size(size, Path(scratch), embedders, vectors, labels, queries)
            latency_rows += latency
            scale_rows.append(scale)
    markdown = report(args, pd.DataFrame(latency_rows), pd.DataFrame(scale_rows), time.perf_counter() - started)
    print(markdown)
    if not args.no_write:
        print(f"[bench] wrote the retrieval section of {write_section('retrieval', markdown)}")


def verdict(value: float, target: float, higher_is_better: bool = False) -> str:
    met = value >= target if higher_is_better else value <= target
    if met:
        return "met"
    return f"missed by {abs(value - target):.2f}" + ("" if higher_is_better else " ms")


def report(args: argparse.Namespace, latency: pd.DataFrame, scale: pd.DataFrame, seconds: float) -> str:
    from training.evaluation import markdown_table

    largest = max(args.sizes)
    goal_size = 100_000 if 100_000 in args.sizes else largest
    text = latency[latency["query"] == "text"]
    now = text[text["search"].str.startswith("now") & (text["items"] == goal_size)].iloc[0]
    before = text[text["search"].str.startswith("before") & (text["items"] == goal_size)].iloc[0]
    by_size = scale.set_index("items")
    ef_rows = []
    for _, row in scale.iterrows():
        ef = smallest_ef(row)
        ef_rows.append(f"{int(row['items']):,} items: {'efSearch ' + str(ef) if ef else 'none of the swept values'}")
    goals = pd.DataFrame(
        [
            [
                "text query p50",
                f"{goal_size:,}",
                f"{now['p50 ms']:.1f} ms",
                f"{before['p50 ms']:.1f} ms",
                "≤ 10 ms",
                verdict(now["p50 ms"], TARGET_P50_MS),
            ],
            [
                "text query p95",
                f"{goal_size:,}",
                f"{now['p95 ms']:.1f} ms",
                f"{before['p95 ms']:.1f} ms",
                "≤ 20 ms",
                verdict(now["p95 ms"], TARGET_P95_MS),
            ],
            [
                f"recall@10 at library efSearch ({ef_search_for(goal_size)})",
                f"{goal_size:,}",
                f"{by_size.loc[goal_size, 'recall@10 at library ef']:.3f}",
                f"{by_size.loc[goal_size, 'recall@10 ef 1024']:.3f} (ef 1024)",
                "≥ 0.98",
                verdict(by_size.loc[goal_size, "recall@10 at library ef"], TARGET_RECALL, True),
            ],
        ],
        columns=["goal", "items", "now", "before", "target", "verdict"],
    )
    if largest != goal_size:  # goal 4: the largest library measured, against the same recall target
        goals.loc[len(goals)] = [
            f"recall@10 at library efSearch ({ef_search_for(largest)})",
            f"{largest:,}",
            f"{by_size.loc[largest, 'recall@10 at library ef']:.3f}",
            f"{by_size.loc[largest, 'recall@10 ef 1024']:.3f} (ef 1024)",
            "≥ 0.98",
            verdict(by_size.loc[largest, "recall@10 at library ef"], TARGET_RECALL, True),
        ]
    stage_columns = ["items", "query", "search", "p50 ms", "p95 ms", *[f"{s} p50" for s in STAGES]]
    recall_columns = ["items", *[f"recall@10 ef {ef}" for ef in EF_SWEEP]]
    ann_columns = ["items", *[f"ann ms ef {ef}" for ef in EF_SWEEP]]
    ivf_columns = [
        "items",
        "IVF lists",
        "IVF build s",
        *[f"IVF {what} nprobe {n}" for n in NPROBE_SWEEP for what in ("recall@10", "ms")],
    ]
    scale_columns = [
        "items",
        "DuckDB fill s",
        "fill items/s",
        "index build s",
        "build items/s",
        "row copy load s",
        "row copy MB",
        "index file MB",
        "peak RSS GB",
    ]
    curve = latency[latency["search"].str.startswith("now")].pivot(index="items", columns="query", values="p50 ms")
    curve.columns = [f"{c} p50 ms" for c in curve.columns]
    curve = curve.join(by_size[["library ef", "recall@10 at library ef"]])
    ef_by_size = ", ".join(f"≤ {limit:,} items: {ef}" if limit else f"more: {ef}" for limit, ef in EF_SEARCH_BY_SIZE)
    command = f"python -m benchmarks.retrieval --sizes {' '.join(map(str, args.sizes))} --queries {args.queries}"
    return f"""## Library search at scale (`{command}`)

Items are perturbed copies (cosine ≈ 0.95) of {args.base} real image_embedder vectors of held-out synthetic
characters, with those stills' labels and synthetic character ids (tiny shared thumbnails): a stand-in for a large
studio library, said so because the renderer cannot draw 100k faces in the time budget. One query at a time,
top 10, {args.queries} queries per type, FAISS on {args.threads} thread(s), Triton (CPU, python backend + ONNX Runtime)
on the same 2 shared cores. `Library.search` wall time; stage columns are medians in ms: encode = the query through
Triton, ann = HNSW (M=16, 200 candidates), fetch = the candidates' ranking rows (filters applied), rerank = φ and R.

**now**: a text-only query is one call to `text_query` (text_embedder → query_fuser in one graph, tokens padded to
the text's own length), candidate rows come from the in-process copy (facecast/library/candidate_rows.py), efSearch
by library size ({ef_by_size}; facecast/library/vector_index.py). **before** (switched back per query in the same
run, alternating with **now**): text_embedder at 32 tokens then query_fuser (two calls), rows from DuckDB (a file
open per search), efSearch 1024.

### Issue 16, goals 3 and 4

{markdown_table(goals, index=False)}

Smallest swept efSearch with recall@10 ≥ {TARGET_RECALL}: {"; ".join(ef_rows)}.

{markdown_table(latency[stage_columns], index=False, floatfmt=".2f")}

### HNSW recall@10 and efSearch

Recall@10 against exact inner-product search over the same vectors ({2 * args.queries} text + image query vectors),
for the first stage as the library runs it (200 candidates, top 10 compared); then the HNSW time per query (ms):

{markdown_table(scale[recall_columns], index=False, floatfmt=".3f")}

{markdown_table(scale[ann_columns], index=False, floatfmt=".2f")}

Beside it, not what the library runs: IVF-Flat over the same vectors (√N inverted lists trained on
{IVF_TRAINING_SAMPLE:,} of them, exact inner products inside the probed lists), recall@10 and ms per query by nprobe:

{markdown_table(scale[ivf_columns], index=False, floatfmt=".3f")}

### Issue 16, goal 4: cost against library size

Fill = rows into DuckDB through the store (Arrow bulk insert, 20k a transaction); index build = opening the library
with no index (every vector read from DuckDB, HNSW M=16, efConstruction 64 built on {args.threads} thread(s)); row
copy = the first load of the ranking rows into memory; peak RSS = this process's high-water mark from the fill to
the end of that size's queries (DuckDB's buffers, the vectors read for the build, the index, the row copy; not the
recall measurement's extra copies).

{markdown_table(scale[scale_columns], index=False, floatfmt=".2f")}

p50 (ms) of every query type and recall@10 at library efSearch, by size:

{markdown_table(curve.reset_index(), index=False, floatfmt=".3f")}

Total benchmark time {seconds / 60:.1f} min.
"""


if __name__ == "__main__":
    main()
