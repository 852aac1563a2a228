"""Compiled models: the registered sklearn pipeline converted to a fast runtime, checked, logged.

- ``convert``: sklearn pipeline -> ONNX Runtime, or ONNX preprocessing + treelite for tree
  ensembles; the first candidate within the tolerance of sklearn wins, else sklearn with the reason.
- ``registered``: the registration hook (``compile_version``): check on the holdout, log the
  artifacts with lineage under ``compiled/`` in the model's run, tag the version.
- ``serving``: at variant load, rebuild the logged runtime, re-check it on probe rows, and say
  which path serves and why (``/admin/status``).
See docs/serving.md "Compiled models".
"""

from __future__ import annotations

from pipeline_components.compiled.convert import (
    CompiledModel,
    CompileReport,
    compile_model,
    library_versions,
    load,
    max_abs_diff,
    save,
)
from pipeline_components.compiled.registered import (
    ARTIFACT_DIR,
    TAG_DIFF,
    TAG_REASON,
    TAG_RUNTIME,
    TAG_URI,
    compile_and_log,
    compile_version,
)

__all__ = ["ARTIFACT_DIR", "TAG_DIFF", "TAG_REASON", "TAG_RUNTIME", "TAG_URI", "CompileReport",
           "CompiledModel", "compile_and_log", "compile_model", "compile_version",
           "library_versions", "load", "max_abs_diff", "save"]
