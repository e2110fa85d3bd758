"""The served engagement model's versions (migration 5): one model card per version and the log of activations.

Version 1 is the shipped default ("synthetic audience model v1"); a studio's calibrated models are versions 2, 3, ...
of the same Triton model. Which one serves is the newest activation (none yet: version 1), so rolling back is one
more activation row: the log says who made every version live, and when.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from facecast.engagement_features import DEFAULT_ENGAGEMENT_DESCRIPTION, DEFAULT_ENGAGEMENT_VERSION

if TYPE_CHECKING:
    from facecast.store.database import Store


@dataclass(frozen=True)
class ModelCard:
    version: int
    description: str
    created_at: datetime | None
    created_by: str | None
    training: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] | None = None
    activatable: bool = False
    activated_at: datetime | None = None  # the last time it was made live (None: never)
    activated_by: str | None = None

    @property
    def provenance(self) -> dict[str, Any]:
        """What a report carries of the model that scored it."""
        return {"version": self.version, "description": self.description}


SCHEMA_VERSION = 5  # the migration that made these tables


class ModelNotActivatable(ValueError):
    """The version does not exist, or its validation did not show it beats the default."""


_CARD_COLUMNS = (
    "m.version, m.description, m.created_at, m.created_by, m.training_json, m.validation_json, m.activatable, "
    "a.activated_at, a.activated_by"
)
_LAST_ACTIVATION = (
    "LEFT JOIN (SELECT version, max(activated_at) AS activated_at, arg_max(activated_by, activated_at) AS activated_by "
    "FROM engagement_activations GROUP BY version) a USING (version)"
)


class EngagementModels:
    """``store.engagement_models``: model cards and which version serves."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def add(
        self,
        version: int,
        description: str,
        created_by: str,
        training: dict[str, Any],
        validation: dict[str, Any] | None,
        activatable: bool,
    ) -> ModelCard:
        """Record the card of a version just written to the model repository (not live until activated)."""
        with self._store.transaction() as tx:
            tx.execute(
                "INSERT INTO engagement_models (version, description, created_by, training_json, validation_json, "
                "activatable) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    int(version),
                    description,
                    created_by,
                    json.dumps(training),
                    None if validation is None else json.dumps(validation),
                    bool(activatable),
                ],
            )
        card = self.get(version)
        assert card is not None
        return card

    def get(self, version: int) -> ModelCard | None:
        rows = self._store.read_rows(
            f"SELECT {_CARD_COLUMNS} FROM engagement_models m {_LAST_ACTIVATION} WHERE m.version = ?", [int(version)]
        )
        return _card(rows[0]) if rows else None

    def all(self) -> list[ModelCard]:
        """Every version, newest first."""
        rows = self._store.read_rows(
            f"SELECT {_CARD_COLUMNS} FROM engagement_models m {_LAST_ACTIVATION} ORDER BY m.version DESC"
        )
        return [_card(row) for row in rows]

    def active(self) -> ModelCard:
        """The version that serves: the newest activation, or the shipped default when none was made (or the file
        was opened read-only at a schema from before versions existed)."""
        if self._store.schema_version < SCHEMA_VERSION:
            return ModelCard(
                DEFAULT_ENGAGEMENT_VERSION, DEFAULT_ENGAGEMENT_DESCRIPTION, None, "facecast", activatable=True
            )
        rows = self._store.read_rows(
            "SELECT version FROM engagement_activations ORDER BY activated_at DESC, rowid DESC LIMIT 1"
        )
        card = self.get(rows[0][0] if rows else DEFAULT_ENGAGEMENT_VERSION)
        assert card is not None, "migration 5 creates version 1's card"
        return card

    def activate(self, version: int, by: str) -> ModelCard:
        """Make `version` the one that serves. Only a version whose validation showed it beats the default (or the
        default itself) can be activated."""
        card = self.get(version)
        if card is None:
            raise ModelNotActivatable(f"there is no engagement model version {version}")
        if not card.activatable:
            raise ModelNotActivatable(
                f"engagement model version {version} did not beat the default in its validation, so it cannot serve"
            )
        with self._store.transaction() as tx:
            tx.execute(
                "INSERT INTO engagement_activations (activated_at, version, activated_by) "
                "VALUES (greatest(current_timestamp AT TIME ZONE 'UTC', "
                "(SELECT max(activated_at) FROM engagement_activations) + INTERVAL 1 MICROSECOND), ?, ?)",
                [int(version), by],
            )
        return self.active()

    def previous(self) -> ModelCard | None:
        """The version that served before the active one (what "roll back" returns to), None when there is none."""
        rows = self._store.read_rows(
            "SELECT version FROM engagement_activations ORDER BY activated_at DESC, rowid DESC LIMIT 2"
        )
        if not rows:
            return None
        version = rows[1][0] if len(rows) > 1 else DEFAULT_ENGAGEMENT_VERSION
        return None if version == rows[0][0] else self.get(version)

    def next_version(self) -> int:
        ((newest,),) = self._store.read_rows("SELECT max(version) FROM engagement_models")
        return int(newest or 0) + 1


def _card(row: tuple) -> ModelCard:
    version, description, created_at, created_by, training, validation, activatable, activated_at, by = row
    return ModelCard(
        version=int(version),
        description=description,
        created_at=created_at,
        created_by=created_by,
        training=json.loads(training) if training else {},
        validation=json.loads(validation) if validation else None,
        activatable=bool(activatable),
        activated_at=activated_at,
        activated_by=by,
    )
