"""The expression library's items (migration 3): one row per distinct image content (content_sha256 UNIQUE:
ingesting the same file twice finds the first row). `emotion_probs` / `style_probs` are the distributions the
ranking compares: the image_embedder's heads, or the one-hot label when a person labelled the item (`labelled`).
`embedding` is the image_embedder's L2-normalised vector; the FAISS index beside the file is derived from this column
and rebuilt from it.

All SQL takes values as parameters; nothing a user types is pasted into a statement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from facecast.store.errors import StoreError
from facecast.store.rows import EMBEDDING_DIM, UTC_NOW, LibraryItem, arrow_matrix, float32_vector, vector_column
from facecast.vocab import ACTION_PARAMS, EMOTIONS, STYLES

if TYPE_CHECKING:  # pandas only names return types (DuckDB's .df() makes the frames)
    import pandas as pd

    from facecast.store.database import Store

# Library columns the ranking needs for candidates (no embedding, no thumbnail: those are read only when needed).
_LIBRARY_RANKING_COLUMNS = ("id", "emotion", "style", "character", "intensity", "source", "source_path", "labelled")
_NAN_PARAMS = "['NaN', 'NaN', 'NaN', 'NaN']::FLOAT[4]"
# A hash of every column a ranking row holds (facecast.library.candidate_rows keeps them in memory): any change to
# a row, by any writer, changes it.
_RANKING_ROW_HASH = (
    "hash(id, emotion, style, character, intensity, source, source_path, labelled, params, emotion_probs, style_probs)"
)


def library_filter_sql(emotion: str | None, style: str | None, character: str | None) -> tuple[str, list[Any]]:
    """AND-ed predicates for the library filters, always with parameters (never values pasted into SQL)."""
    clauses, parameters = [], []
    for column, value in (("emotion", emotion), ("style", style), ("character", character)):
        if value is not None:
            clauses.append(f"{column} = ?")
            parameters.append(value)
    return "".join(f" AND {clause}" for clause in clauses), parameters


class LibraryItems:
    """``store.library``: the expression library's items, their vectors and thumbnails (migration 3)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def add_new(self, items: Sequence[LibraryItem]) -> tuple[list[LibraryItem], list[int], dict[str, int]]:
        """Insert the items whose content is not in the library yet, in one transaction: (the inserted items, their
        ids, {content hash: id} of those already there). The check runs inside the transaction, so another process
        adding the same content at the same moment makes it a duplicate here, never a failed batch."""
        items = list(items)
        with self._store.transaction():
            existing = self.ids_by_hash([item.content_sha256 for item in items])
            fresh = [item for item in items if item.content_sha256 not in existing]
            return fresh, self.add(fresh), existing

    def add(self, items: Sequence[LibraryItem]) -> list[int]:
        """Insert library items in one transaction (or the caller's); returns their ids in input order.

        Content already in the library (or twice in the batch) is refused with StoreError and nothing is stored:
        callers de-duplicate first (:meth:`add_new` does, in the same transaction)."""
        items = list(items)
        if not items:
            return []
        hashes = [item.content_sha256 for item in items]
        if len(set(hashes)) != len(hashes):
            raise StoreError("the same image content appears twice in one batch of library items")
        with self._store.transaction() as tx:
            # checked here rather than left to the UNIQUE constraint: its error would abort the transaction
            # with a message about the transaction, not about the duplicate
            clash = tx.execute(
                "SELECT content_sha256, id FROM library_items "
                "WHERE content_sha256 IN (SELECT unnest(?::VARCHAR[])) ORDER BY id",
                [hashes],
            )
            if clash:
                raise StoreError(
                    f"{len(clash)} image(s) are already in the library (first: item {clash[0][1]}, "
                    f"sha256 {clash[0][0]}); nothing was stored"
                )
            ids = sorted(
                row[0] for row in tx.execute("SELECT nextval('library_items_id_seq') FROM range(?)", [len(items)])
            )
            params_present = [item.params is not None for item in items]
            params = pa.FixedSizeListArray.from_arrays(
                pa.array(
                    np.concatenate(
                        [item.params if item.params is not None else np.zeros(4, np.float32) for item in items]
                    ),
                    type=pa.float32(),
                ),
                len(ACTION_PARAMS),
                mask=pa.array([not present for present in params_present]),
            )
            tx.insert_arrow(
                "library_items",
                pa.table(
                    {
                        "id": pa.array(ids, type=pa.int64()),
                        "content_sha256": pa.array([item.content_sha256 for item in items], type=pa.string()),
                        "source": pa.array([item.source for item in items], type=pa.string()),
                        "source_path": pa.array([item.source_path for item in items], type=pa.string()),
                        "style": pa.array([item.style for item in items], type=pa.string()),
                        "emotion": pa.array([item.emotion for item in items], type=pa.string()),
                        "character": pa.array([item.character for item in items], type=pa.string()),
                        "intensity": pa.array([item.intensity for item in items], type=pa.float32()),
                        "params": params,
                        "emotion_probs": vector_column([item.emotion_probs for item in items], len(EMOTIONS)),
                        "style_probs": vector_column([item.style_probs for item in items], len(STYLES)),
                        "labelled": pa.array([bool(item.labelled) for item in items], type=pa.bool_()),
                        "embedding": vector_column([item.embedding for item in items], EMBEDDING_DIM),
                        "thumbnail": pa.array([bytes(item.thumbnail) for item in items], type=pa.binary()),
                    }
                ),
            )
        return ids

    def ids_by_hash(self, hashes: Sequence[str]) -> dict[str, int]:
        """content_sha256 -> id for the hashes already in the library."""
        if not hashes:
            return {}
        rows = self._store.read_rows(
            "SELECT content_sha256, id FROM library_items WHERE content_sha256 IN (SELECT unnest(?::VARCHAR[]))",
            [list(hashes)],
        )
        return {digest: int(item_id) for digest, item_id in rows}

    def count(self) -> int:
        return int(self._store.read_rows("SELECT count(*) FROM library_items")[0][0])

    def id_summary(self) -> tuple[int, int, int]:
        """(count, sum of ids, sum of squared ids): a cheap fingerprint of the id set the FAISS index must hold."""
        count, total, squares = self._store.read_rows(
            "SELECT count(*), coalesce(sum(id::HUGEINT), 0)::VARCHAR, coalesce(sum(id::HUGEINT * id), 0)::VARCHAR "
            "FROM library_items"
        )[0]
        return int(count), int(total), int(squares)

    def ids(self) -> np.ndarray:
        table = self._store.read_arrow("SELECT id FROM library_items ORDER BY id")
        return table.column("id").to_numpy().astype(np.int64)

    def embeddings(self, ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 [N], embeddings float32 [N, EMBEDDING_DIM]) of the given items (all when None), by id."""
        if ids is None:
            table = self._store.read_arrow("SELECT id, embedding FROM library_items ORDER BY id")
        else:
            table = self._store.read_arrow(
                "SELECT id, embedding FROM library_items WHERE id IN (SELECT unnest(?::BIGINT[])) ORDER BY id",
                [[int(i) for i in ids]],
            )
        return table.column("id").to_numpy().astype(np.int64), arrow_matrix(table.column("embedding"), EMBEDDING_DIM)

    def search_candidates(
        self,
        ids: Sequence[int] | None = None,
        *,
        emotion: str | None = None,
        style: str | None = None,
        character: str | None = None,
        with_embeddings: bool = False,
    ) -> dict[str, np.ndarray]:
        """What the ranking needs about items (those in `ids`, or every item matching the filters when None),
        filtered by emotion / style / character. Column name -> numpy array, rows in ascending id order;
        `params` rows are NaN where unknown, `character` None where unknown."""
        where, parameters = library_filter_sql(emotion, style, character)
        columns = ", ".join(_LIBRARY_RANKING_COLUMNS)
        extra = ", embedding" if with_embeddings else ""
        sql = (
            f"SELECT {columns}, coalesce(params, {_NAN_PARAMS}) AS params, emotion_probs, style_probs{extra} "
            "FROM library_items WHERE true"
        )
        if ids is not None:
            sql += " AND id IN (SELECT unnest(?::BIGINT[]))"
            parameters = [[int(i) for i in ids], *parameters]
        table = self._store.read_arrow(sql + where + " ORDER BY id", parameters)
        result = {name: table.column(name).to_numpy(zero_copy_only=False) for name in _LIBRARY_RANKING_COLUMNS}
        result["id"] = result["id"].astype(np.int64)
        result["intensity"] = np.asarray(
            [np.nan if v is None else v for v in table.column("intensity").to_pylist()], np.float32
        )
        result["params"] = arrow_matrix(table.column("params"), len(ACTION_PARAMS))
        result["emotion_probs"] = arrow_matrix(table.column("emotion_probs"), len(EMOTIONS))
        result["style_probs"] = arrow_matrix(table.column("style_probs"), len(STYLES))
        if with_embeddings:
            result["embedding"] = arrow_matrix(table.column("embedding"), EMBEDDING_DIM)
        return result

    def ranking_row_hashes(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 [N] ascending, uint64 [N] hash of each item's ranking columns): how an in-process copy of
        the ranking rows finds what changed without reading the rows."""
        table = self._store.read_arrow(f"SELECT id, {_RANKING_ROW_HASH} AS row_hash FROM library_items ORDER BY id")
        return table.column("id").to_numpy().astype(np.int64), table.column("row_hash").to_numpy().astype(np.uint64)

    def ranking_rows(self, ids: Sequence[int] | None = None) -> pa.Table:
        """The ranking columns of the given items (all when None) with their row hash, ascending id, as Arrow
        (params NaN where unknown)."""
        sql = (
            f"SELECT {', '.join(_LIBRARY_RANKING_COLUMNS)}, coalesce(params, {_NAN_PARAMS}) AS params, emotion_probs, "
            f"style_probs, {_RANKING_ROW_HASH} AS row_hash FROM library_items"
        )
        if ids is None:
            return self._store.read_arrow(sql + " ORDER BY id")
        return self._store.read_arrow(
            sql + " WHERE id IN (SELECT unnest(?::BIGINT[])) ORDER BY id", [[int(i) for i in ids]]
        )

    def exact_search(
        self,
        vector: np.ndarray,
        k: int,
        *,
        emotion: str | None = None,
        style: str | None = None,
        character: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner-product search in DuckDB over the items matching the filters: (ids, scores), best first.
        Used when filters are so selective that the approximate candidates would miss matches."""
        query = float32_vector(vector, EMBEDDING_DIM, "query vector")
        where, parameters = library_filter_sql(emotion, style, character)
        rows = self._store.read_rows(
            f"SELECT id, array_inner_product(embedding, ?::FLOAT[{EMBEDDING_DIM}]) AS score FROM library_items "
            f"WHERE true{where} ORDER BY score DESC, id LIMIT ?",
            [query.tolist(), *parameters, int(k)],
        )
        return (np.asarray([r[0] for r in rows], np.int64), np.asarray([r[1] for r in rows], np.float32))

    def filtered_count(
        self, *, emotion: str | None = None, style: str | None = None, character: str | None = None
    ) -> int:
        where, parameters = library_filter_sql(emotion, style, character)
        return int(self._store.read_rows(f"SELECT count(*) FROM library_items WHERE true{where}", parameters)[0][0])

    def items(self, ids: Sequence[int] | None = None, limit: int | None = 100) -> pd.DataFrame:
        """Items without embedding and thumbnail (the given ids, or the newest `limit`), newest first."""
        columns = (
            "id, content_sha256, source, source_path, emotion, style, character, intensity, params, "
            "labelled, created_at, updated_at"
        )
        if ids is not None:
            return self._store.read_df(
                f"SELECT {columns} FROM library_items WHERE id IN (SELECT unnest(?::BIGINT[])) ORDER BY id DESC",
                [[int(i) for i in ids]],
            )
        sql = f"SELECT {columns} FROM library_items ORDER BY id DESC"
        return self._store.read_df(sql) if limit is None else self._store.read_df(sql + " LIMIT ?", [int(limit)])

    def thumbnail(self, item_id: int) -> bytes | None:
        rows = self._store.read_rows("SELECT thumbnail FROM library_items WHERE id = ?", [int(item_id)])
        return bytes(rows[0][0]) if rows else None

    def remove(self, ids: Sequence[int]) -> list[int]:
        """Delete items; returns the ids that existed (and are now gone)."""
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return []
        with self._store.transaction() as tx:
            found = [
                row[0]
                for row in tx.execute(
                    "SELECT id FROM library_items WHERE id IN (SELECT unnest(?::BIGINT[])) ORDER BY id", [wanted]
                )
            ]
            if found:
                tx.execute("DELETE FROM library_items WHERE id IN (SELECT unnest(?::BIGINT[]))", [found])
        return [int(i) for i in found]

    def update_labels(
        self, item_id: int, *, emotion: str | None = None, style: str | None = None, character: str | None = None
    ) -> bool:
        """Set a person's labels on an item (the ranking then uses them one-hot); False when the id is unknown."""
        if emotion is not None and emotion not in EMOTIONS:
            raise ValueError(f"emotion {emotion!r} is not one of {EMOTIONS}")
        if style is not None and style not in STYLES:
            raise ValueError(f"style {style!r} is not one of {STYLES}")
        sets, parameters = [], []
        if emotion is not None:
            sets += ["emotion = ?", "emotion_probs = ?::FLOAT[7]"]
            parameters += [emotion, [float(e == emotion) for e in EMOTIONS]]
        if style is not None:
            sets += ["style = ?", "style_probs = ?::FLOAT[4]"]
            parameters += [style, [float(s == style) for s in STYLES]]
        if character is not None:
            sets.append("character = ?")
            parameters.append(character)
        if not sets:
            raise ValueError("nothing to update: give an emotion, a style or a character")
        with self._store.transaction() as tx:
            if not tx.execute("SELECT count(*) FROM library_items WHERE id = ?", [int(item_id)])[0][0]:
                return False
            tx.execute(
                f"UPDATE library_items SET {', '.join(sets)}, labelled = true, updated_at = {UTC_NOW} WHERE id = ?",
                [*parameters, int(item_id)],
            )
        return True

    def stats(self) -> dict[str, Any]:
        """Counts per emotion, style, source and labelled, plus totals."""
        total, characters, labelled = self._store.read_rows(
            "SELECT count(*), count(DISTINCT character), count(*) FILTER (WHERE labelled) FROM library_items"
        )[0]
        stats: dict[str, Any] = {"items": int(total), "characters": int(characters), "labelled": int(labelled)}
        for column in ("emotion", "style", "source"):
            rows = self._store.read_rows(
                f"SELECT {column}, count(*) FROM library_items GROUP BY ALL ORDER BY 2 DESC, 1"
            )
            stats[column] = {str(value): int(count) for value, count in rows}
        stats["feedback"] = int(self._store.read_rows("SELECT count(*) FROM library_feedback")[0][0])
        return stats
