"""Load a model only if its format is safe: skops, with a trusted-types check of our own.

Unpickling a model (``pickle``/``cloudpickle``) runs whatever code its author put in it. skops
stores a schema instead and constructs only the types it is told to trust; but MLflow's own loader
trusts the list written *into the model's MLmodel file* by whoever logged it, so a crafted model
can trust anything. Here the list is ours: the types skops reports as not trusted by default must
all come from scikit-learn, NumPy, SciPy or abx's own ``preprocess`` module, or be named in
``serving.trusted_types``. Anything
else is refused with a ``DeploymentError`` naming the model URI, its flavor/format and the types.
MLflow's ``code_paths`` (extra Python put on ``sys.path``) are never loaded either.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline_components.errors import DeploymentError

# abx's own preprocessing classes travel inside every trained model (pipeline_components/
# preprocess.py); they are this installed package's code, not the model's.
SAFE_PREFIXES = ("sklearn.", "numpy.", "scipy.", "pipeline_components.preprocess.")


def untrusted(types: Iterable[str], extra: Iterable[str] = ()) -> list[str]:
    """The types outside our allow-list (``SAFE_PREFIXES``, plus ``extra`` by name)."""
    allowed = set(extra)
    return sorted(t for t in types if not t.startswith(SAFE_PREFIXES) and t not in allowed)


def load_safe_sklearn(name: str, uri: str, pinned: str,
                      extra_trusted: Iterable[str] = ()) -> tuple[Any, Any]:
    """(estimator, MLflow signature) of a skops-serialized sklearn model, or DeploymentError.

    Args:
        name: the variant name (for messages).
        uri: the URI as configured (for messages).
        pinned: the version-pinned URI to download.
        extra_trusted: fully qualified type names trusted beyond sklearn/numpy/scipy.
    """
    import mlflow
    import skops.io as sio
    from mlflow.models import Model

    where = f"variant {name!r}: model {uri!r} ({pinned})"
    try:
        local = Path(mlflow.artifacts.download_artifacts(pinned))
        meta = Model.load(str(local / "MLmodel"))
    except Exception as exc:
        raise DeploymentError(f"{where}: cannot fetch it: {exc}") from exc
    flavor = meta.flavors.get("sklearn")
    if flavor is None:
        raise DeploymentError(
            f"{where} has flavors {sorted(meta.flavors)}, not 'sklearn': the router loads only "
            "scikit-learn models serialized with skops")
    fmt = flavor.get("serialization_format", "pickle")
    if fmt != "skops":
        raise DeploymentError(
            f"{where} is serialized as {fmt!r} (flavor 'sklearn'): refused, unpickling runs "
            "arbitrary code; re-log it with mlflow.sklearn.log_model(..., "
            "serialization_format='skops', skops_trusted_types=[...])")
    path = local / flavor["pickled_model"]
    try:
        types = sio.get_untrusted_types(file=path)
    except Exception as exc:
        raise DeploymentError(f"{where}: not a readable skops file ({path.name}): {exc}") from exc
    bad = untrusted(types, extra_trusted)
    if bad:
        raise DeploymentError(
            f"{where} (flavor 'sklearn', skops) holds types outside the trusted list "
            f"(scikit-learn, NumPy, SciPy, abx preprocess, serving.trusted_types): {bad}")
    try:
        return sio.load(path, trusted=types), meta.signature
    except Exception as exc:
        raise DeploymentError(f"{where}: skops could not load it: {exc}") from exc
