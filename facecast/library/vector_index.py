"""The approximate nearest-neighbour index of the expression library: FAISS HNSW over the items' embeddings.

DuckDB is the source of truth (facecast.store, ``library_items.embedding``); this index is derived from it and lives
beside the database file as ``<db>.faiss`` plus a small JSON sidecar ``<db>.faiss.json``. Decisions:

* HNSW with inner-product metric over L2-normalised vectors (inner product = cosine), M = 16 links per node as in
  seed 003 §5.1, wrapped in an ``IndexIDMap2`` so FAISS returns the DuckDB ids directly and can hand back a
  stored vector by id (the spot check needs that).
* HNSW cannot delete. A removed id becomes a tombstone (kept in the sidecar and skipped in results); when
  tombstones pass :data:`COMPACT_FRACTION` of the index the library rebuilds it from DuckDB.
* Files are written to a temporary name unique to the process and thread (pid + random), then moved into place
  (``os.replace``), index first, sidecar second, so a crash or two writers at once leave either a whole pair or a
  pair the check at open detects and repairs.
* Other processes write the same library: a Library compares the store's change token before each search and, when
  another process committed since, brings its index up to date the same way (:func:`reconcile_index`).
* :func:`open_index` checks the index against DuckDB every time the library opens: id count and id checksum, then
  a spot check of a few stored vectors. Ids only DuckDB has are added, ids only the index has are tombstoned, and
  anything worse (unreadable file, wrong dimension, vectors that disagree) rebuilds it from DuckDB. Each repair is
  reported as a note the CLI prints.
* faiss-cpu by default. When FAISS sees a GPU (``faiss.get_num_gpus() > 0``, i.e. the faiss-gpu build on a CUDA
  host) searches go to an exact GPU flat index holding the same vectors, and HNSW stays the persisted form.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from facecast.store import Store

INDEX_FORMAT = 1
HNSW_LINKS = 16  # M: links per node (seed 003 §5.1: "a 16-node HNSW index structure")
EF_CONSTRUCTION = 64
# efSearch by library size (docs/benchmarks.md "retrieval", 2026-12-06 run: benchmarks/retrieval.py sweeps 256 … 2048
# against exact search, first stage as searched: 200 candidates, top 10 compared). Up to 100k items: 768, the smallest
# value with recall@10 ≥ 0.98 at 100k (0.985; 512 gave 0.977). Recall only falls as a library grows, so smaller
# libraries get at least that. Larger ones: 2048, the widest swept: at 1M items no swept value reaches 0.98 with M=16
# (0.870 at 2048, 0.738 at 1024); IVF-Flat measured beside it does (1.000 at nprobe 32, 5 ms a query).
EF_SEARCH_BY_SIZE = ((100_000, 768), (None, 2048))


def ef_search_for(count: int) -> int:
    """The efSearch a library of `count` items searches with (EF_SEARCH_BY_SIZE)."""
    return next(ef for limit, ef in EF_SEARCH_BY_SIZE if limit is None or count <= limit)


COMPACT_FRACTION = 0.2
SPOT_CHECKS = 8


class IndexFileError(Exception):
    """The index file or its sidecar cannot be read or does not fit (the message says which and why)."""


def index_paths(db_path: Path) -> tuple[Path, Path]:
    """(<db>.faiss, <db>.faiss.json) beside the DuckDB file."""
    db_path = Path(db_path)
    return db_path.with_name(db_path.name + ".faiss"), db_path.with_name(db_path.name + ".faiss.json")


def id_summary(ids: np.ndarray) -> tuple[int, int, int]:
    """(count, sum, sum of squares) of an id set, as Python ints (same as Store.library_id_summary)."""
    values = [int(v) for v in np.asarray(ids, np.int64)]
    return len(values), sum(values), sum(v * v for v in values)


@dataclass
class VectorIndex:
    """HNSW over (id, vector) pairs with tombstones for removed ids."""

    dim: int
    index: faiss.IndexIDMap2
    tombstones: set[int] = field(default_factory=set)
    ef_search: int | None = None  # None: by the index's size (ef_search_for)
    _gpu_index: faiss.Index | None = field(default=None, repr=False)

    @classmethod
    def empty(cls, dim: int, links: int = HNSW_LINKS, ef_construction: int = EF_CONSTRUCTION) -> VectorIndex:
        hnsw = faiss.IndexHNSWFlat(dim, links, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = ef_construction
        return cls(dim, faiss.IndexIDMap2(hnsw))

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, dim: int | None = None) -> VectorIndex:
        vectors = np.asarray(vectors, np.float32)
        built = cls.empty(dim if dim is not None else vectors.shape[1])
        built.add(ids, vectors)
        return built

    # ---- contents -------------------------------------------------------------------------------------------------

    @property
    def device(self) -> str:
        return "gpu" if self._gpu_index is not None else "cpu"

    def all_ids(self) -> np.ndarray:
        """Every id the HNSW graph holds, tombstoned ones included."""
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def live_ids(self) -> np.ndarray:
        ids = self.all_ids()
        if not self.tombstones:
            return ids
        return ids[~np.isin(ids, np.fromiter(self.tombstones, np.int64, len(self.tombstones)))]

    def __len__(self) -> int:
        return int(self.index.ntotal) - len(self.tombstones)

    def add(self, ids: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, np.int64)
        vectors = np.ascontiguousarray(vectors, np.float32).reshape(len(ids), -1)
        if vectors.shape[1] != self.dim:
            raise ValueError(f"vectors have {vectors.shape[1]} values, the index holds {self.dim}")
        if len(ids) == 0:
            return
        revived = self.tombstones.intersection(ids.tolist())
        if revived:  # an id cannot be in the graph twice: a deleted id coming back needs a rebuild
            raise ValueError(f"ids {sorted(revived)[:5]} were removed from this index; rebuild it to add them again")
        self.index.add_with_ids(vectors, ids)
        self._gpu_index = None

    def remove(self, ids: Sequence[int]) -> int:
        """Tombstone ids; returns how many of them the index held."""
        held = set(self.all_ids().tolist())
        removed = {int(i) for i in ids} & held
        self.tombstones |= removed
        self._gpu_index = None
        return len(removed)

    def needs_compaction(self) -> bool:
        return self.index.ntotal > 0 and len(self.tombstones) > COMPACT_FRACTION * self.index.ntotal

    def reconstruct(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        return (
            np.stack([self.index.reconstruct(int(i)) for i in ids]) if len(ids) else np.zeros((0, self.dim), np.float32)
        )

    # ---- search ---------------------------------------------------------------------------------------------------

    def use_gpu_if_available(self) -> bool:
        """Search on the GPU (exact flat index, same vectors) when the faiss-gpu build sees one."""
        if faiss.get_num_gpus() <= 0 or self.index.ntotal == 0:
            return False
        ids = self.all_ids()
        flat = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        flat.add_with_ids(self.reconstruct(ids), ids)
        self._gpu_index = faiss.index_cpu_to_all_gpus(flat)
        return True

    def current_ef_search(self) -> int:
        return self.ef_search or ef_search_for(len(self))

    def search(self, vectors: np.ndarray, k: int, ef_search: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 [Q, ≤k], scores float32 [Q, ≤k]) per query, best first; removed ids never appear."""
        queries = np.ascontiguousarray(vectors, np.float32).reshape(-1, self.dim)
        if self.index.ntotal == 0 or k <= 0:
            return np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32)
        wanted = min(int(self.index.ntotal), k + len(self.tombstones))
        if self._gpu_index is not None:
            scores, ids = self._gpu_index.search(queries, wanted)
        else:
            parameters = faiss.SearchParametersHNSW(efSearch=max(ef_search or self.current_ef_search(), wanted))  # type: ignore[attr-defined]
            scores, ids = self.index.search(queries, wanted, params=parameters)
        keep = ids >= 0
        if self.tombstones:
            keep &= ~np.isin(ids, np.fromiter(self.tombstones, np.int64, len(self.tombstones)))
        out_ids = np.full((len(queries), k), -1, np.int64)
        out_scores = np.full((len(queries), k), -np.inf, np.float32)
        width = 0
        for row in range(len(queries)):
            row_ids, row_scores = ids[row][keep[row]][:k], scores[row][keep[row]][:k]
            out_ids[row, : len(row_ids)], out_scores[row, : len(row_ids)] = row_ids, row_scores
            width = max(width, len(row_ids))
        return out_ids[:, :width], out_scores[:, :width]

    # ---- persistence ----------------------------------------------------------------------------------------------

    def save(self, index_path: Path, sidecar_path: Path) -> None:
        index_path, sidecar_path = Path(index_path), Path(sidecar_path)
        index_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = index_path.with_name(f".{index_path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        faiss.write_index(self.index, str(temporary))
        os.replace(temporary, index_path)
        count, total, squares = id_summary(self.live_ids())
        sidecar = {
            "format": INDEX_FORMAT,
            "kind": "faiss.IndexIDMap2(IndexHNSWFlat, inner product)",
            "dim": self.dim,
            "links": HNSW_LINKS,
            "ef_construction": EF_CONSTRUCTION,
            "ntotal": int(self.index.ntotal),
            "count": count,
            "id_sum": str(total),
            "id_square_sum": str(squares),
            "tombstones": sorted(self.tombstones),
            "saved_at": time.time(),
        }
        temporary = sidecar_path.with_name(f".{sidecar_path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        temporary.write_text(json.dumps(sidecar))
        os.replace(temporary, sidecar_path)

    @classmethod
    def load(cls, index_path: Path, sidecar_path: Path, dim: int) -> VectorIndex:
        index_path, sidecar_path = Path(index_path), Path(sidecar_path)
        if not index_path.is_file():
            raise IndexFileError(f"index file {index_path} is missing")
        try:
            sidecar = json.loads(sidecar_path.read_text())
        except FileNotFoundError:
            raise IndexFileError(f"index sidecar {sidecar_path} is missing") from None
        except (OSError, ValueError) as error:
            raise IndexFileError(f"index sidecar {sidecar_path} is unreadable ({error})") from None
        if sidecar.get("format") != INDEX_FORMAT or sidecar.get("dim") != dim:
            raise IndexFileError(
                f"index {index_path} has format {sidecar.get('format')} / dimension "
                f"{sidecar.get('dim')}, expected {INDEX_FORMAT} / {dim}"
            )
        try:
            index = faiss.read_index(str(index_path))
        except RuntimeError as error:
            raise IndexFileError(f"index file {index_path} is unreadable ({str(error).splitlines()[0]})") from None
        if not isinstance(index, faiss.IndexIDMap2) or index.d != dim:
            raise IndexFileError(f"index file {index_path} is not a {dim}-d id-mapped index")
        loaded = cls(dim, index, {int(i) for i in sidecar.get("tombstones", [])})
        if int(sidecar.get("ntotal", -1)) != int(index.ntotal):  # index written, sidecar not: tombstones unknown
            raise IndexFileError(
                f"index {index_path} holds {index.ntotal} vectors, its sidecar says {sidecar.get('ntotal')}"
            )
        return loaded


# --------------------------------------------------------------------------------------------------------------------
# Checked against DuckDB
# --------------------------------------------------------------------------------------------------------------------


def rebuild_from_store(store: Store, dim: int) -> VectorIndex:
    """A fresh index holding every item's embedding as DuckDB has it."""
    ids, vectors = store.library.embeddings()
    return VectorIndex.build(ids, vectors, dim)


def open_index(
    store: Store,
    index_path: Path,
    sidecar_path: Path,
    dim: int,
    notes: list[str] | None = None,
    rng: np.random.Generator | None = None,
) -> VectorIndex:
    """Load the index and make it agree with DuckDB (see the module docstring); repairs are appended to `notes`."""
    notes = notes if notes is not None else []
    try:
        index = VectorIndex.load(index_path, sidecar_path, dim)
    except IndexFileError as error:
        if store.library.count() == 0 and not Path(index_path).exists():
            index = VectorIndex.empty(dim)  # a new library: nothing to rebuild or to say
            index.save(index_path, sidecar_path)
            return index
        return _rebuilt(store, index_path, sidecar_path, dim, notes, str(error))
    return reconcile_index(store, index, index_path, sidecar_path, notes, rng)


def reconcile_index(
    store: Store,
    index: VectorIndex,
    index_path: Path,
    sidecar_path: Path,
    notes: list[str],
    rng: np.random.Generator | None = None,
    *,
    spot_check: bool = True,
) -> VectorIndex:
    """`index` made to agree with DuckDB: ids only DuckDB has are added, ids only the index has are tombstoned,
    anything worse rebuilds it. Also how a library follows what other processes wrote (then without the spot check:
    the vectors it already held were checked when it opened)."""
    dim = index.dim
    changed = False
    if id_summary(index.live_ids()) != store.library.id_summary():
        db_ids = store.library.ids()
        live = index.live_ids()
        missing = np.setdiff1d(db_ids, live)
        extra = np.setdiff1d(live, db_ids)
        if np.isin(missing, np.fromiter(index.tombstones, np.int64, len(index.tombstones))).any():
            return _rebuilt(
                store, index_path, sidecar_path, dim, notes, "the index had removed ids that the database holds again"
            )
        if len(extra):
            index.remove(extra.tolist())
        if len(missing):
            ids, vectors = store.library.embeddings(missing.tolist())
            index.add(ids, vectors)
        notes.append(
            f"the vector index was stale ({len(missing)} items missing, {len(extra)} deleted items still "
            "in it): brought up to date from the library database"
        )
        changed = True

    live = index.live_ids()
    if spot_check and len(live):
        rng = rng or np.random.default_rng()
        sample = rng.choice(live, size=min(SPOT_CHECKS, len(live)), replace=False)
        ids, stored = store.library.embeddings(sample.tolist())
        if not np.allclose(index.reconstruct(ids), stored, atol=1e-5):
            return _rebuilt(
                store, index_path, sidecar_path, dim, notes, "vectors in the index disagree with the library database"
            )
    if index.needs_compaction():
        return _rebuilt(
            store,
            index_path,
            sidecar_path,
            dim,
            notes,
            f"{len(index.tombstones)} removed items made up over {COMPACT_FRACTION:.0%} of the index",
        )
    if changed:
        index.save(index_path, sidecar_path)
    return index


def _rebuilt(
    store: Store, index_path: Path, sidecar_path: Path, dim: int, notes: list[str], reason: str
) -> VectorIndex:
    started = time.perf_counter()
    index = rebuild_from_store(store, dim)
    index.save(index_path, sidecar_path)
    notes.append(
        f"{reason}: rebuilt the vector index from the library database ({len(index)} items, "
        f"{time.perf_counter() - started:.1f} s)"
    )
    return index
