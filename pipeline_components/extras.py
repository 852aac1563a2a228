"""Which ``pip install`` extra brings a missing module, so a partial install fails in one line.

abx installs in layers (pyproject.toml): the core (config, CLI, stores, registry client), ``serve``
(the endpoint process and its model runtimes) and ``pipeline`` (Airflow, DVC, GX, Optuna...). An
endpoint replica has only ``core + serve``, so running a pipeline stage there raises
``ModuleNotFoundError`` deep inside a component; the CLI turns that into a ``MissingExtraError``
naming the extra instead of a traceback.
"""

from __future__ import annotations

from pipeline_components.errors import MissingExtraError

# Top-level import name -> the extra of pyproject.toml that installs it.
EXTRA_OF: dict[str, str] = {
    **dict.fromkeys(("fastapi", "starlette", "uvicorn", "orjson", "prometheus_client",
                     "onnx", "onnxruntime", "skl2onnx", "treelite", "tl2cgen"), "serve"),
    **dict.fromkeys(("airflow", "dvc", "great_expectations", "optuna", "optuna_integration",
                     "statsmodels", "docker", "pyarrow", "matplotlib", "jinja2", "ruamel",
                     "celery"), "pipeline"),
}


def missing_extra(exc: ModuleNotFoundError) -> MissingExtraError | None:
    """The error to show for ``exc``, or None when the module belongs to no extra (a bug)."""
    top = (exc.name or "").split(".")[0]
    extra = EXTRA_OF.get(top)
    if extra is None:
        return None
    return MissingExtraError(
        f"module {top!r} is not installed: this command needs the '{extra}' extra "
        f"(pip install -c constraints.txt 'abx[{extra}]')")
