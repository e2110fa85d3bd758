"""images_classified: one row per classified image (`facecast classify`, the Classify faces page)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from facecast.store.rows import (
    CLASSIFICATION_COLUMNS,
    ImageClassification,
    as_classification,
    classifications_to_arrow,
)

if TYPE_CHECKING:  # pandas only names return types (DuckDB's .df() makes the frames)
    import pandas as pd

    from facecast.store.database import Store


class Classifications:
    """``store.classifications``: the images_classified table (`facecast classify`, the Classify page)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def add(self, rows: Iterable[ImageClassification | Mapping[str, Any]]) -> list[int]:
        """Store classified images (dataclasses or mappings with the same keys); return their ids, in order.

        All rows go in one transaction (or join the caller's): either all are stored or none.
        """
        classifications = [as_classification(row) for row in rows]  # validates every row before writing any
        if not classifications:
            return []
        with self._store.transaction() as tx:
            # Ids are drawn first and assigned here, so each returned id provably belongs to its input row
            # (RETURNING on a bulk insert does not promise input order).
            ids = [
                row[0]
                for row in tx.execute(
                    "SELECT nextval('images_classified_id_seq') FROM range(?)", [len(classifications)]
                )
            ]
            ids.sort()
            tx.insert_arrow("images_classified", classifications_to_arrow(ids, classifications))
        return ids

    def newest(self, limit: int | None = 100) -> pd.DataFrame:
        """The newest ``limit`` classified images (all when None), newest first; vectors as float32 arrays."""
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit must be a non-negative int or None, got {limit!r}")
        columns = ", ".join(CLASSIFICATION_COLUMNS)
        sql = f"SELECT {columns} FROM images_classified ORDER BY id DESC"
        if limit is None:
            return self._store.read_df(sql)
        return self._store.read_df(sql + " LIMIT ?", [limit])

    def find(self, content_sha256: str, model_name: str, model_version: str) -> ImageClassification | None:
        """The newest stored classification of this image content by this model version, or None."""
        columns = ", ".join(CLASSIFICATION_COLUMNS)
        rows = self._store.read_rows(
            f"SELECT {columns} FROM images_classified "
            "WHERE content_sha256 = ? AND model_name = ? AND model_version = ? ORDER BY id DESC LIMIT 1",
            [content_sha256, model_name, model_version],
        )
        if not rows:
            return None
        return ImageClassification(**dict(zip(CLASSIFICATION_COLUMNS, rows[0], strict=True)))
