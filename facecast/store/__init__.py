"""The DuckDB store: the one place facecast keeps what it has computed (the FAISS index and caches are derived from
it). ``open_store`` opens (creating and migrating) a file; its tables are reached by domain::

    with open_store(path) as store:
        analysis_id = store.analyses.add(analysis.record())
        rows = store.library.search_candidates(ids, emotion="anger")

Modules: ``database`` (opening, transactions, reads), ``migrations`` (+ the literal SQL in ``migrations/``),
``rows`` (typed rows), and one per domain: ``classifications``, ``analyses``, ``library``, ``feedback``,
``engagement_models`` (model cards of the served engagement versions, and which one serves).
"""

from facecast.store.database import Store, Transaction, open_store
from facecast.store.errors import StoreError, StoreLocked
from facecast.store.migrations import Migration, latest_schema_version
from facecast.store.rows import (
    EMBEDDING_DIM,
    AnalysisRecord,
    ImageClassification,
    LibraryItem,
    StoredAnalysis,
)

__all__ = [
    "EMBEDDING_DIM",
    "AnalysisRecord",
    "ImageClassification",
    "LibraryItem",
    "Migration",
    "Store",
    "StoreError",
    "StoreLocked",
    "StoredAnalysis",
    "Transaction",
    "latest_schema_version",
    "open_store",
]
