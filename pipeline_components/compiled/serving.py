"""At variant load: serve the compiled runtime logged at registration, or say why sklearn serves.

The runtime is rebuilt from the version's ``compiled/`` artifacts (digests checked) and checked
once more against the sklearn model just loaded, on probe rows, with the tolerance it was accepted
with. Anything else (no artifacts, a version tagged ``sklearn``, a missing library, a mismatch)
leaves the sklearn path serving, and the reason is what ``/admin/status`` shows.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pipeline_components.compiled.convert import CompiledModel, load, max_abs_diff
from pipeline_components.compiled.registered import TAG_REASON, TAG_RUNTIME, TAG_URI


def runtime_for(pinned_uri: str, model: Any, probe: Any, pos: int, mode: str = "auto"
                ) -> tuple[CompiledModel | None, str]:
    """(compiled runtime, why) for ``models:/NAME/VERSION``, or (None, why sklearn serves).

    Args:
        model: the sklearn pipeline loaded for the same version (the reference).
        probe: a DataFrame of raw rows in the trained column order.
        mode: ``serving.runtime``; ``sklearn`` never serves a compiled model.
    """
    if mode == "sklearn":
        return None, "sklearn: serving.runtime is 'sklearn'"
    try:
        tags = _version_tags(pinned_uri)
        if not tags.get(TAG_URI):
            why = tags.get(TAG_REASON) if tags.get(TAG_RUNTIME) == "sklearn" else (
                "no compiled model logged at registration (registry.compile off, or registered "
                "by an older abx or another tool)")
            return None, f"sklearn: {why}"
        import mlflow

        dst = tempfile.mkdtemp(prefix="abx-compiled-")
        compiled, meta = load(Path(mlflow.artifacts.download_artifacts(tags[TAG_URI],
                                                                      dst_path=dst)))
        diff = max_abs_diff(model, compiled, probe, pos)
    except Exception as exc:  # a missing runtime library, an unreadable or tampered artifact
        return None, f"sklearn: compiled model unusable: {type(exc).__name__}: {str(exc)[:300]}"
    tol = float(meta["tolerance"])
    if diff > tol:
        return None, f"sklearn: compiled model disagrees on probe rows: {diff:.3g} > {tol:g}"
    return compiled, (f"{compiled.kind}: max |diff| {meta['max_abs_diff']:.3g} on "
                      f"{meta['probe_rows']} holdout rows, {diff:.3g} on {len(probe)} probe "
                      f"rows (tolerance {tol:g})")


def _version_tags(pinned_uri: str) -> dict[str, str]:
    """Tags of ``models:/NAME/VERSION`` (empty for any other URI: runs:/, files)."""
    parts = pinned_uri.removeprefix("models:/").split("/")
    if not pinned_uri.startswith("models:/") or len(parts) != 2 or not parts[1].isdigit():
        return {}
    from mlflow import MlflowClient

    return dict(MlflowClient().get_model_version(parts[0], parts[1]).tags)


def attach(var: Any, pinned_uri: str, model: Any, mode: str = "auto") -> None:
    """Point a loaded local variant at its compiled runtime when it qualifies; record why.

    The hot path does not change: ``Variant`` builds the same numpy batch and calls
    ``model.predict_proba``, which the compiled runtime provides.
    """
    import pandas as pd

    from pipeline_components.serving.variants import _probe

    probe = pd.DataFrame(_probe(model, var.spec), columns=list(var.spec.names))
    compiled, why = runtime_for(pinned_uri, model, probe, var._pos, mode)
    var.runtime = why
    if compiled is not None:
        var.model, var.path = compiled, compiled.kind
