"""The dependency table of docs/architecture.md, checked over every module's imports (ast, no imports run): each layer
imports only the layers below it, no facecast module imports torch or streamlit, and facecast has no import cycle.
A new import that crosses a layer fails here with the file, the line and the rule it breaks."""

from __future__ import annotations

import ast
from pathlib import Path

from facecast.config import PROJECT_ROOT

CONTRACTS = {
    "facecast",
    "facecast.config",
    "facecast.vocab",
    "facecast.engagement_features",
    "facecast.tokenizer",
    "facecast.access",
}
FEATURES = ("facecast.clips", "facecast.library", "facecast.mapping", "facecast.classify", "facecast.calibration")
# training scripts that evaluate (or prepare demo content) through the served models, as users would, or compute
# features through the exported graph the server runs: they may use the runtime, and export/ for those graphs
THROUGH_SERVED_MODELS = {
    "training.evaluation",
    "training.evaluate_detector",
    "training.evaluate_mapping",
    "training.evaluate_retrieval",
    "training.studio_engagement",
    "training.data.demo",
    "training.data.engagement_dataset",
}
ALLOWED = {  # layer -> the layers (or single modules) it may import
    "contracts": {"contracts"},
    "media": {"media"},
    "serving": {"serving", "facecast.config"},
    "clients": {"clients", "serving", "media", "contracts"},
    "store": {"store", "contracts"},
    "features": {"features", "clients", "store", "media", "contracts"},
    "cli": {"cli", "features", "clients", "store", "serving", "media", "contracts"},
    "app": {"app", "cli", "features", "clients", "store", "serving", "media", "contracts"},
    "training": {"training", "media", "contracts"},
    "export": {"export", "training", "contracts"},
}
RUNTIME_NEVER_IMPORTS = {"torch", "streamlit", "onnx", "onnxruntime"}


def layer(module: str) -> str:
    if module in CONTRACTS:
        return "contracts"
    if module == "facecast.__main__":
        return "cli"
    for prefix, name in (
        ("facecast.media", "media"),
        ("facecast.serving", "serving"),
        ("facecast.clients", "clients"),
        ("facecast.store", "store"),
        ("facecast.cli", "cli"),
        ("app", "app"),
        ("training", "training"),
        ("export", "export"),
        *((f, "features") for f in FEATURES),
    ):
        if module == prefix or module.startswith(prefix + "."):
            return name
    raise AssertionError(f"{module} belongs to no layer of docs/architecture.md: add it to the table")


def modules() -> dict[str, Path]:
    found = {}
    for package in ("facecast", "app", "training", "export"):
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """(imported module, line, runtime?) for every import; `if TYPE_CHECKING:` imports are not runtime."""
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) not in typing_only) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # `from package import submodule` is an edge to the submodule
                name = f"{node.module}.{alias.name}"
                found.append((name if name in known else node.module, node.lineno, id(node) not in typing_only))
    return sorted(set(found))


def test_every_import_follows_the_dependency_table() -> None:
    known = modules()
    broken = []
    for module, path in known.items():
        for target, line, _ in imports(path, set(known)):
            top = target.split(".")[0]
            where = f"{path.relative_to(PROJECT_ROOT)}:{line} imports {target}"
            if module.startswith("facecast") and top in RUNTIME_NEVER_IMPORTS:
                broken.append(f"{where}: the runtime never imports {top}")
            elif module.startswith("app") and top in RUNTIME_NEVER_IMPORTS - {"streamlit"}:
                broken.append(f"{where}: the app never imports {top}")
            elif top in ("training", "export") and module.startswith("facecast") and module != "facecast.cli.train":
                broken.append(f"{where}: only facecast/cli/train.py may reach into training/ and export/")
            elif top in ("facecast", "app", "training", "export") and not (
                module == "facecast.cli.train" and top in ("training", "export")
            ):
                source, wanted = layer(module), layer(target)
                allowed = (
                    ALLOWED["cli"] | {"export", "training"} if module in THROUGH_SERVED_MODELS else ALLOWED[source]
                )
                if wanted not in allowed and target not in allowed:
                    broken.append(f"{where}: {source} may import only {sorted(ALLOWED[source])}, not {wanted}")
    assert not broken, "\n".join(broken)


def test_facecast_has_no_import_cycle() -> None:
    known = modules()
    runtime = {m for m in known if m.startswith("facecast")}
    edges = {
        m: {t for t, _, at_runtime in imports(known[m], set(known)) if at_runtime and t in runtime} for m in runtime
    }
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for target in sorted(edges[module]):
            if state.get(target) == "open":
                raise AssertionError("import cycle: " + " → ".join([*path[path.index(target) :], target]))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = "done"

    for module in sorted(runtime):
        if module not in state:
            visit(module)
