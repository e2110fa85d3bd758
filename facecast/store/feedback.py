"""Search feedback and the ranking weights learned from it (migration 3). Feedback rows keep the φ values the item was
shown with, so the weights can be re-learned later."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from facecast.store.rows import N_RANKING_TERMS, float32_vector, vector_column

if TYPE_CHECKING:  # pandas only names return types (DuckDB's .df() makes the frames)
    import pandas as pd

    from facecast.store.database import Store


class Feedback:
    """``store.feedback``: what users picked, skipped and rated in search results, and the ranking weights learned
    from it."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def add(self, profile: str, query_id: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Store feedback rows (each: item_id, kind, rating (or None), rank (or None), phi [5]); returns how many."""
        rows = list(rows)
        if not rows:
            return 0
        for row in rows:
            if row["kind"] not in ("selected", "skipped", "rating"):
                raise ValueError(f"feedback kind must be selected, skipped or rating, got {row['kind']!r}")
        with self._store.transaction() as tx:
            tx.insert_arrow(
                "library_feedback",
                pa.table(
                    {
                        "profile": pa.array([profile] * len(rows), type=pa.string()),
                        "query_id": pa.array([query_id] * len(rows), type=pa.string()),
                        "item_id": pa.array([int(row["item_id"]) for row in rows], type=pa.int64()),
                        "kind": pa.array([row["kind"] for row in rows], type=pa.string()),
                        "rating": pa.array([row.get("rating") for row in rows], type=pa.float32()),
                        "rank": pa.array([row.get("rank") for row in rows], type=pa.int32()),
                        "phi": vector_column(
                            [float32_vector(row["phi"], N_RANKING_TERMS, "phi") for row in rows], N_RANKING_TERMS
                        ),
                    }
                ),
            )
        return len(rows)

    def for_profile(self, profile: str) -> pd.DataFrame:
        """A profile's feedback joined with the items' current attributes (deleted items keep NULL attributes)."""
        return self._store.read_df(
            "SELECT f.id, f.query_id, f.item_id, f.kind, f.rating, f.rank, f.phi, f.created_at, i.style, i.emotion, "
            "i.character, i.intensity FROM library_feedback f LEFT JOIN library_items i ON i.id = f.item_id "
            "WHERE f.profile = ? ORDER BY f.id",
            [profile],
        )

    def weights(self, profile: str) -> tuple[np.ndarray, int] | None:
        """(weights float32 [5], pairs learned from) stored for a profile, or None."""
        rows = self._store.read_rows("SELECT weights, pairs FROM ranking_weights WHERE profile = ?", [profile])
        if not rows:
            return None
        return np.asarray(rows[0][0], np.float32), int(rows[0][1])

    def set_weights(self, profile: str, weights: np.ndarray, pairs: int) -> None:
        vector = float32_vector(weights, N_RANKING_TERMS, "weights")
        with self._store.transaction() as tx:
            # delete + insert: DuckDB's ON CONFLICT DO UPDATE does not bind current_timestamp in its SET list
            tx.execute("DELETE FROM ranking_weights WHERE profile = ?", [profile])
            tx.execute(
                f"INSERT INTO ranking_weights (profile, weights, pairs) VALUES (?, ?::FLOAT[{N_RANKING_TERMS}], ?)",
                [profile, vector.tolist(), int(pairs)],
            )
