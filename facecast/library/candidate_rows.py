"""The library's ranking rows in process memory, so a search reads its candidates' labels and distributions without
opening the DuckDB file (13–20 ms an open on these machines, /work/shared/FACTS.md; 200 candidates from a copy in
memory take well under a millisecond).

What is kept: per item, the columns the re-rank and the results need (facecast.store.library's ranking columns:
emotion, style, character, intensity, source, source_path, labelled, params, emotion_probs, style_probs), numbers as
numpy arrays and texts as Arrow arrays (compact: about 150 bytes an item), all in ascending id order.

Freshness follows the vector index (facecast.library.Library.follow_store): before each use the store's change
token (a stat of the database file and its write-ahead log) is compared with the one the copy was made at. Only when
someone wrote to the store since, in this process or another, does the copy ask DuckDB, in one query, for every
item's id and a hash of its ranking columns; rows that are new or whose hash changed are fetched, rows that are gone
are dropped. The hash covers every kept column, so any writer is noticed: ingest here or in another process, a
removal, a label edit, even an UPDATE that forgets `updated_at`. A write elsewhere in the store (feedback, analyses)
costs that one query and nothing else.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from facecast.store import Store
from facecast.store.rows import arrow_matrix
from facecast.vocab import ACTION_PARAMS, EMOTIONS, STYLES

TEXT_COLUMNS = ("emotion", "style", "character", "source", "source_path")
MATRIX_COLUMNS = {"params": len(ACTION_PARAMS), "emotion_probs": len(EMOTIONS), "style_probs": len(STYLES)}


@dataclass(frozen=True)
class _Rows:
    """One consistent copy (replaced whole, never changed in place, so readers need no lock)."""

    ids: np.ndarray  # int64 [N], ascending
    hashes: np.ndarray  # uint64 [N]: the store's hash of each row's ranking columns
    intensity: np.ndarray  # float32 [N], NaN = unknown
    labelled: np.ndarray  # bool [N]
    matrices: dict[str, np.ndarray]  # params [N, 4] (NaN = unknown), emotion_probs [N, 7], style_probs [N, 4]
    texts: dict[str, pa.Array]  # TEXT_COLUMNS; character null = unknown

    @classmethod
    def from_arrow(cls, table: pa.Table) -> _Rows:
        return cls(
            ids=table.column("id").to_numpy().astype(np.int64),
            hashes=table.column("row_hash").to_numpy().astype(np.uint64),
            intensity=np.asarray(pc.fill_null(table.column("intensity"), np.nan).to_numpy(), np.float32),
            labelled=np.asarray(table.column("labelled").to_numpy(zero_copy_only=False), bool),
            matrices={name: arrow_matrix(table.column(name), width) for name, width in MATRIX_COLUMNS.items()},
            texts={name: table.column(name).combine_chunks() for name in TEXT_COLUMNS},
        )

    def take(self, positions: np.ndarray) -> _Rows:
        indices = pa.array(positions, pa.int64())
        return _Rows(
            self.ids[positions],
            self.hashes[positions],
            self.intensity[positions],
            self.labelled[positions],
            {name: matrix[positions] for name, matrix in self.matrices.items()},
            {name: array.take(indices) for name, array in self.texts.items()},
        )

    @classmethod
    def merged(cls, first: _Rows, second: _Rows) -> _Rows:
        """Both copies' rows in one, ascending id (the ids of the two are disjoint)."""
        joined = cls(
            np.concatenate([first.ids, second.ids]),
            np.concatenate([first.hashes, second.hashes]),
            np.concatenate([first.intensity, second.intensity]),
            np.concatenate([first.labelled, second.labelled]),
            {name: np.concatenate([first.matrices[name], second.matrices[name]]) for name in MATRIX_COLUMNS},
            {
                name: pa.concat_arrays([first.texts[name], second.texts[name].cast(first.texts[name].type)])
                for name in TEXT_COLUMNS
            },
        )
        return joined.take(np.argsort(joined.ids, kind="stable"))

    def nbytes(self) -> int:
        numbers = [self.ids, self.hashes, self.intensity, self.labelled, *self.matrices.values()]
        return sum(a.nbytes for a in numbers) + sum(a.nbytes for a in self.texts.values())


class CandidateRows:
    """The ranking rows of every library item, kept current with the store (module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._rows: _Rows | None = None
        self._token: tuple[int, ...] | None = None
        self._lock = threading.Lock()  # one refresh at a time; searches read the current copy without it
        self.refreshes = 0  # how often DuckDB was asked (tests and benchmarks read it)

    def __len__(self) -> int:
        return 0 if self._rows is None else len(self._rows.ids)

    @property
    def nbytes(self) -> int:
        return 0 if self._rows is None else self._rows.nbytes()

    def refresh(self) -> None:
        """Catch up with the store if anyone wrote to it since the last look (free when nobody did)."""
        token = self.store.change_token()
        if token == self._token:
            return
        with self._lock:
            if token == self._token:
                return
            # The token is read before the rows: a write landing meanwhile leaves a newer token, so the next
            # refresh looks again (at worst one redundant check, never a missed write).
            self._rows = self._caught_up(self._rows)
            self._token = token
            self.refreshes += 1

    def _caught_up(self, rows: _Rows | None) -> _Rows:
        if rows is None:
            return _Rows.from_arrow(self.store.library.ranking_rows())
        ids, hashes = self.store.library.ranking_row_hashes()
        if len(ids) == len(rows.ids) and np.array_equal(ids, rows.ids) and np.array_equal(hashes, rows.hashes):
            return rows
        positions = np.searchsorted(rows.ids, ids)
        inside = np.minimum(positions, max(len(rows.ids) - 1, 0))
        same = (
            (positions < len(rows.ids)) & (rows.ids[inside] == ids) & (rows.hashes[inside] == hashes)
            if len(rows.ids)
            else np.zeros(len(ids), bool)
        )
        kept = rows.take(positions[same])
        changed = ids[~same]
        if not len(changed):
            return kept
        return _Rows.merged(kept, _Rows.from_arrow(self.store.library.ranking_rows(changed.tolist())))

    def candidates(
        self,
        ids: np.ndarray | list[int],
        *,
        emotion: str | None = None,
        style: str | None = None,
        character: str | None = None,
    ) -> dict[str, np.ndarray]:
        """What Store.library.search_candidates returns for these ids (ascending id, filtered, ids the store no
        longer has left out), from memory. Call :meth:`refresh` first."""
        if self._rows is None:
            self.refresh()
        rows = self._rows
        assert rows is not None
        wanted = np.unique(np.asarray(ids, np.int64))
        if len(rows.ids) == 0 or len(wanted) == 0:
            positions = np.zeros(0, np.int64)
        else:
            inside = np.minimum(np.searchsorted(rows.ids, wanted), len(rows.ids) - 1)
            positions = inside[rows.ids[inside] == wanted]
        indices = pa.array(positions, pa.int64())
        texts = {name: array.take(indices).to_numpy(zero_copy_only=False) for name, array in rows.texts.items()}
        keep = np.ones(len(positions), bool)
        for name, value in (("emotion", emotion), ("style", style), ("character", character)):
            if value is not None:
                keep &= texts[name] == value
        positions = positions[keep]
        result: dict[str, Any] = {name: values[keep] for name, values in texts.items()}
        result["id"] = rows.ids[positions]
        result["intensity"] = rows.intensity[positions]
        result["labelled"] = rows.labelled[positions]
        for name, matrix in rows.matrices.items():
            result[name] = matrix[positions]
        return result
