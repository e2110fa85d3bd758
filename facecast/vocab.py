"""Vocabularies shared by the runtime, training and export (docs/architecture.md: fixed order, used everywhere).

The order of each tuple is part of the serving contract: logits come back from Triton in this order.
"""

EMOTIONS: tuple[str, ...] = ("happiness", "sadness", "anger", "surprise", "fear", "disgust", "neutral")
STYLES: tuple[str, ...] = ("realistic", "cartoon", "anime", "stylized_3d")
ENGAGEMENT_CLASSES: tuple[str, ...] = ("low", "medium", "high")
# Audience groups the engagement model reports appeal for (one output per group, in this order).
AUDIENCE_GROUPS: tuple[str, ...] = ("children", "teens", "young_adults", "adults")

# The four action parameters the expression encoder regresses, each in [0, 1]:
# mouth = how open the mouth is, eye = how open the eyes are, brow = how raised the brows are,
# cheek = how raised the cheeks are (the smile muscle).
ACTION_PARAMS: tuple[str, ...] = ("mouth", "eye", "brow", "cheek")

# Per-style bounds of the action parameters (seed 003, Table 5). Renderers and the style mapper keep
# parameters inside their style's range so an expression never looks exaggerated or dead for that style.
STYLE_PARAM_BOUNDS: dict[str, dict[str, tuple[float, float]]] = {
    "realistic": {"mouth": (0.15, 0.85), "eye": (0.10, 0.90), "brow": (0.20, 0.80), "cheek": (0.25, 0.75)},
    "cartoon": {"mouth": (0.05, 0.95), "eye": (0.01, 0.99), "brow": (0.10, 0.90), "cheek": (0.15, 0.85)},
    "anime": {"mouth": (0.10, 0.90), "eye": (0.05, 0.95), "brow": (0.15, 0.85), "cheek": (0.20, 0.80)},
    "stylized_3d": {"mouth": (0.12, 0.88), "eye": (0.08, 0.92), "brow": (0.18, 0.82), "cheek": (0.22, 0.78)},
}

# The names Triton serves each network under: model repository folders, client model names, training registry
# prefixes (training/networks/registry.py builds `<name>-cpu` / `<name>-gpu` configs for each).
FACE_DETECTOR = "face_detector"
EXPRESSION_ENCODER = "expression_encoder"
ENGAGEMENT = "engagement"
IMAGE_EMBEDDER = "image_embedder"
TEXT_EMBEDDER = "text_embedder"
QUERY_FUSER = "query_fuser"
TEXT_QUERY = "text_query"  # text_embedder → query_fuser in one graph (export/text_query.py)
STYLE_MAPPER = "style_mapper"
SERVED_MODELS: tuple[str, ...] = (
    FACE_DETECTOR,
    EXPRESSION_ENCODER,
    ENGAGEMENT,
    IMAGE_EMBEDDER,
    TEXT_EMBEDDER,
    QUERY_FUSER,
    TEXT_QUERY,
    STYLE_MAPPER,
)
