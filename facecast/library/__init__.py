"""The expression library: faces in DuckDB with their 512-d embeddings, a FAISS index beside the file, two-stage
search with a re-rank that says why, and feedback that re-learns the ranking per user or team.

* **Items** live in ``library_items`` (facecast.store.library): one row per distinct image content (SHA-256).
* **Ingest** (``ingest``): files, folders, manifests, and the key moments of analysed clips.
* **The vector index** (``vector_index``) sits beside the database and is checked against it when the library opens;
  repairs are reported in :attr:`Library.notes`.
* **Search** (``search``) proposes candidates with HNSW, filters them and reads their ranking rows from an in-process
  copy kept current with the store (``candidate_rows``), and re-ranks them (``ranking``) with the profile's weights
  learned from feedback (``feedback``).

All SQL takes values as parameters (facecast.store); nothing a user types is pasted into a statement.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facecast.clients.embedders import Embedders
from facecast.library import feedback as feedback_module
from facecast.library import ingest, search
from facecast.library.candidate_rows import CandidateRows
from facecast.library.errors import LabelsError, LibraryError, QueryError
from facecast.library.feedback import Preference
from facecast.library.ingest import IngestReport, read_labels
from facecast.library.ranking import DEFAULT_WEIGHTS, RankingContext
from facecast.library.search import Filters, Query, SearchResult, SearchResults
from facecast.library.vector_index import VectorIndex, index_paths, open_index, rebuild_from_store, reconcile_index
from facecast.store import EMBEDDING_DIM, LibraryItem, Store, open_store

__all__ = [
    "Filters",
    "IngestReport",
    "LabelsError",
    "Library",
    "LibraryError",
    "Query",
    "QueryError",
    "SearchResult",
    "SearchResults",
    "read_labels",
]


class Library:
    """An open library: the store, its checked vector index, and (for ingest and search) the served embedders."""

    def __init__(
        self, store: Store, embedders: Embedders | None = None, *, use_gpu: bool = True, row_cache: bool = True
    ) -> None:
        self.store = store
        self.embedders = embedders
        self.notes: list[str] = []
        self.index_path, self.sidecar_path = index_paths(store.path)
        # Every use of the index (search, add, remove, save, catching up) holds this: FAISS is not thread-safe, and the
        # app's sessions share one Library.
        self.index_lock = threading.RLock()
        self._token = store.change_token()
        self.index: VectorIndex = open_index(store, self.index_path, self.sidecar_path, EMBEDDING_DIM, self.notes)
        if use_gpu and self.index.use_gpu_if_available():
            self.notes.append("searching on the GPU (faiss-gpu)")
        self._profiles: dict[str, tuple[np.ndarray, Preference | None]] = {}
        # Candidates' ranking rows from memory (facecast.library.candidate_rows); None reads them from DuckDB per
        # search (benchmarks/retrieval.py compares the two).
        self.rows: CandidateRows | None = CandidateRows(store) if row_cache else None

    def mark_current(self) -> None:
        """The index now holds what the store holds (after this Library's own writes)."""
        self._token = self.store.change_token()

    def follow_store(self) -> None:
        """Bring the index up to date when another process (or Library) wrote to the store since we last looked:
        the change token is a stat of the files, so this costs nothing while nobody else writes."""
        token = self.store.change_token()
        if token == self._token:
            return
        with self.index_lock:
            self.index = reconcile_index(
                self.store, self.index, self.index_path, self.sidecar_path, self.notes, spot_check=False
            )
            self._token = token

    @classmethod
    def open(
        cls,
        db_path: str | Path | None = None,
        urls: str | list[str] | None = None,
        *,
        embedders: Embedders | None = None,
    ) -> Library:
        """Open the store (StoreLocked if another process holds it) and the index; embedders from `urls` if given."""
        store = open_store(db_path)
        try:
            if embedders is None and urls is not None:
                embedders = Embedders.for_urls(urls)
            return cls(store, embedders)
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def need_embedders(self) -> Embedders:
        if self.embedders is None:
            raise LibraryError("this needs the served embedders: open the library with Triton URLs")
        return self.embedders

    # ---- ingest (facecast.library.ingest) --------------------------------------------------------------------------

    def add_images(
        self, paths: Iterable[str | Path], labels: str | Path | pd.DataFrame | None = None, source: str = "folder"
    ) -> IngestReport:
        """Ingest image files and folders; `labels` (a CSV path or read_labels frame) supplies emotion, style, etc."""
        return ingest.add_images(self, paths, labels, source)

    def add_manifest(self, manifest: str | Path) -> IngestReport:
        """Ingest every image a manifest lists, with its labels."""
        return ingest.add_manifest(self, manifest)

    def add_from_analysis(self, analysis_id: int) -> IngestReport:
        """Ingest the key-moment faces of a stored clip analysis (facecast.library.ingest.add_from_analysis)."""
        return ingest.add_from_analysis(self.store, analysis_id, library=self)

    def add_items(self, items: Sequence[LibraryItem]) -> list[int]:
        """Store ready-made items (embedding already computed) and index them; for bulk loads and benchmarks."""
        return ingest.add_items(self, items)

    # ---- items ----------------------------------------------------------------------------------------------------

    def remove(self, ids: Iterable[int]) -> tuple[list[int], list[int]]:
        """Delete items: (removed ids, ids that were not in the library)."""
        wanted = sorted({int(i) for i in ids})
        with self.index_lock:
            removed = self.store.library.remove(wanted)
            self.index.remove(removed)
            if self.index.needs_compaction():
                self.notes.append(f"{len(self.index.tombstones)} removed items in the vector index: rebuilt it")
                self.index = rebuild_from_store(self.store, EMBEDDING_DIM)
            self.index.save(self.index_path, self.sidecar_path)
            self.mark_current()
        return removed, [i for i in wanted if i not in set(removed)]

    def update_labels(
        self, item_id: int, *, emotion: str | None = None, style: str | None = None, character: str | None = None
    ) -> bool:
        return self.store.library.update_labels(item_id, emotion=emotion, style=style, character=character)

    def stats(self) -> dict[str, Any]:
        self.follow_store()
        stats = self.store.library.stats()
        stats["index"] = {
            "path": str(self.index_path),
            "vectors": len(self.index),
            "removed_in_graph": len(self.index.tombstones),
            "device": self.index.device,
        }
        return stats

    # ---- search (facecast.library.search) --------------------------------------------------------------------------

    def encode_query(self, query: Query, notes: list[str]) -> tuple[np.ndarray, RankingContext]:
        """The query vector (served query_fuser) and the emotion/style distributions the re-rank compares."""
        return search.encode_query(self.need_embedders(), query, notes)

    def profile(self, name: str | None) -> tuple[np.ndarray, Preference | None]:
        if not name:
            return DEFAULT_WEIGHTS.copy(), None
        if name not in self._profiles:
            self._profiles[name] = feedback_module.load_profile(self.store, name)
        return self._profiles[name]

    def search(
        self,
        query: Query,
        *,
        top_k: int = 10,
        filters: Filters | None = None,
        profile: str | None = None,
        previous_item: int | None = None,
        character_context: str | None = None,
        candidates: int = search.CANDIDATES,
    ) -> SearchResults:
        """Two-stage search (facecast.library.search). `previous_item` (an item id) and `character_context` are the
        production context of the temporal-coherence and character-identity terms."""
        self.follow_store()
        return search.search(
            self,
            query,
            top_k=top_k,
            filters=filters,
            profile=profile,
            previous_item=previous_item,
            character_context=character_context,
            candidates=candidates,
        )

    # ---- feedback (facecast.library.feedback) ----------------------------------------------------------------------

    def record_selection(
        self, profile: str, results: SearchResults, selected_ids: Iterable[int], *, learn: bool = True
    ) -> int:
        """Implicit feedback on a shown list; re-learns the profile's weights and preference unless learn=False."""
        count = feedback_module.record_selection(self.store, profile, results, selected_ids)
        self._profiles.pop(profile, None)
        if learn:
            self.learn(profile)
        return count

    def record_rating(
        self, profile: str, results: SearchResults, item_id: int, rating: float, *, learn: bool = True
    ) -> int:
        count = feedback_module.record_rating(self.store, profile, results, item_id, rating)
        self._profiles.pop(profile, None)
        if learn:
            self.learn(profile)
        return count

    def learn(self, profile: str) -> np.ndarray:
        weights, preference = feedback_module.update_profile(self.store, profile)
        self._profiles[profile] = (weights, preference if preference.rates else None)
        return weights
