"""Conversion: a fitted sklearn pipeline -> ONNX Runtime (+ treelite), checked against sklearn.

sklearn's per-call overhead (input validation, a DataFrame or object array, Python-level loops
over pipeline steps) is ~1 ms a call on this machine: the floor of one request. A converted model
does the same arithmetic in native code in microseconds. Candidates are tried in order, and the
first that agrees with sklearn wins:

1. ``onnx``: the whole pipeline through skl2onnx -> ONNX Runtime (linear models, preprocessing).
2. ``onnx+treelite``: the preprocessor through ONNX Runtime in float64, the tree ensemble through
   treelite's GTIL (skl2onnx cannot convert HistGradientBoosting with the pinned sklearn).
3. ``sklearn``: nothing converted (or nothing agreed); the reason is kept and shown.

"Agrees" means: max |P_compiled(positive) - P_sklearn(positive)| over a probe set (the holdout at
registration, probe rows at load) is at most the tolerance (``registry.compile_tolerance``).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

_LIBS = ("scikit-learn", "skl2onnx", "onnxruntime", "onnx", "treelite", "numpy")


@dataclass(frozen=True)
class CompileReport:
    """What was tried, what won and why (JSON-able: logged beside the model, shown on status)."""

    runtime: str  # onnx | onnx+treelite | sklearn
    reason: str
    max_abs_diff: float | None
    tolerance: float
    probe_rows: int
    tried: dict[str, str] = field(default_factory=dict)  # candidate -> outcome

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class CompiledModel:
    """A drop-in for the sklearn pipeline on the serving path: ``predict_proba`` of a numpy batch.

    Input is what ``Variant.matrix`` builds: rows in the trained column order (object dtype when
    some columns are strings); output is sklearn's (rows, classes) probability layout.
    """

    def __init__(self, kind: str, names: Sequence[str], categorical: frozenset[str],
                 onnx_bytes: bytes, trees: Any = None, pos: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # one request's math is microseconds: threads cost more
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
        self.kind, self.names, self.categorical = kind, tuple(names), categorical
        self.onnx_bytes, self.trees, self.pos = onnx_bytes, trees, pos
        outs = self.session.get_outputs()
        self._out = [outs[0].name if trees is not None else
                     next(o.name for o in outs if o.name == "probabilities")]
        types = {i.name: i.type for i in self.session.get_inputs()}
        self._cols = [(i, c, None if types[c] == "tensor(string)" else
                       np.float64 if types[c] == "tensor(double)" else np.float32)
                      for i, c in enumerate(self.names)]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(rows, classes) probabilities of a batch in the trained column order."""
        from pipeline_components.preprocess_onnx import onnx_feeds

        out = self.session.run(self._out, onnx_feeds(x, self._cols))[0]
        if self.trees is None:
            return np.asarray(out, dtype=np.float64)
        import treelite

        p = treelite.gtil.predict(self.trees, np.ascontiguousarray(out, dtype=np.float64),
                                  nthread=1)
        p = p.reshape(p.shape[0], -1)
        return p if p.shape[1] > 1 else np.column_stack([1.0 - p[:, 0], p[:, 0]])

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """P(positive) for feature mappings (tests, checks; serving passes matrices)."""
        x = np.array([[r[c] for c in self.names] for r in rows], dtype=object)
        return self.predict_proba(x)[:, self.pos]


# --------------------------------------------------------------------------- conversion
def _initial_types(names: Sequence[str], categorical: frozenset[str], double: bool) -> list:
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType

    num = DoubleTensorType if double else FloatTensorType
    return [(c, StringTensorType([None, 1]) if c in categorical else num([None, 1]))
            for c in names]


def _to_onnx(est: Any, names: Sequence[str], categorical: frozenset[str], double: bool,
             options: dict | None = None) -> bytes:
    from skl2onnx import convert_sklearn

    from pipeline_components.preprocess_onnx import register

    register()  # converters for the imputation / category-bucket steps every model starts with
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onx = convert_sklearn(est, initial_types=_initial_types(names, categorical, double),
                              options=options or {})
    return bytes(onx.SerializeToString())


def _candidates(model: Any, names: Sequence[str], categorical: frozenset[str], pos: int
                ) -> list[tuple[str, Any]]:
    """(kind, builder) pairs, best first; each builder returns a CompiledModel or raises."""
    steps = getattr(model, "steps", None)
    final = steps[-1][1] if steps else model
    out: list[tuple[str, Any]] = [("onnx", lambda: CompiledModel(
        "onnx", names, categorical,
        _to_onnx(model, names, categorical, False, {id(final): {"zipmap": False}}), pos=pos))]
    if steps and len(steps) == 2 and _is_tree_ensemble(final):
        def hybrid() -> CompiledModel:
            import treelite

            pre = _to_onnx(steps[0][1], names, categorical, True)
            trees = treelite.sklearn.import_model(final)
            return CompiledModel("onnx+treelite", names, categorical, pre, trees, pos)

        out.append(("onnx+treelite", hybrid))
    return out


def _is_tree_ensemble(est: Any) -> bool:
    return type(est).__name__ in ("HistGradientBoostingClassifier", "RandomForestClassifier",
                                  "ExtraTreesClassifier", "GradientBoostingClassifier")


def max_abs_diff(model: Any, compiled: CompiledModel, frame: Any, pos: int) -> float:
    """max |P_compiled - P_sklearn| on ``frame`` (a DataFrame in the trained column order)."""
    want = model.predict_proba(frame)[:, pos]
    got = compiled.predict(frame.to_dict("records"))
    return float(np.max(np.abs(got - want))) if len(want) else 0.0


def compile_model(model: Any, frame: Any, categorical: frozenset[str], tolerance: float,
                  pos: int = 1) -> tuple[CompiledModel | None, CompileReport]:
    """Try every candidate on ``frame``; the first within ``tolerance`` wins, else sklearn."""
    names = [str(c) for c in frame.columns]
    tried: dict[str, str] = {}
    for kind, build in _candidates(model, names, categorical, pos):
        try:
            compiled = build()
            diff = max_abs_diff(model, compiled, frame, pos)
        except Exception as exc:  # a converter or runtime that cannot handle this model
            tried[kind] = f"conversion failed: {type(exc).__name__}: {str(exc)[:300]}"
            continue
        if diff <= tolerance:
            tried[kind] = f"ok: max |diff| {diff:.3g} <= {tolerance:g}"
            return compiled, CompileReport(kind, tried[kind], diff, tolerance, len(frame), tried)
        tried[kind] = f"disagrees with sklearn: max |diff| {diff:.3g} > {tolerance:g}"
    reason = "; ".join(f"{k}: {v}" for k, v in tried.items()) or "no converter applies"
    return None, CompileReport("sklearn", reason, None, tolerance, len(frame), tried)


def library_versions() -> dict[str, str]:
    out = {}
    for lib in _LIBS:
        try:
            out[lib] = version(lib)
        except PackageNotFoundError:
            out[lib] = "missing"
    return out


# --------------------------------------------------------------------------- artifacts
def save(compiled: CompiledModel, report: CompileReport, lineage: dict[str, Any], d: Path
         ) -> None:
    """Write the runtime's files and ``report.json`` (lineage, versions, digests) into ``d``."""
    d.mkdir(parents=True, exist_ok=True)
    files = {"model.onnx": compiled.onnx_bytes}
    if compiled.trees is not None:
        compiled.trees.serialize(str(d / "trees.tl"))
        files["trees.tl"] = (d / "trees.tl").read_bytes()
    (d / "model.onnx").write_bytes(compiled.onnx_bytes)
    meta = {**report.as_dict(), "kind": compiled.kind, "names": list(compiled.names),
            "categorical": sorted(compiled.categorical), "pos": compiled.pos,
            "lineage": lineage, "versions": library_versions(),
            "sha256": {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}}
    (d / "report.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def load(d: Path) -> tuple[CompiledModel, dict[str, Any]]:
    """Rebuild a saved runtime (digests checked); returns it and its report."""
    meta = json.loads((d / "report.json").read_text())
    onnx_bytes = (d / "model.onnx").read_bytes()
    if hashlib.sha256(onnx_bytes).hexdigest() != meta["sha256"]["model.onnx"]:
        raise ValueError(f"{d / 'model.onnx'}: sha256 does not match report.json")
    trees = None
    if "trees.tl" in meta["sha256"]:
        import treelite

        if hashlib.sha256((d / "trees.tl").read_bytes()).hexdigest() != meta["sha256"]["trees.tl"]:
            raise ValueError(f"{d / 'trees.tl'}: sha256 does not match report.json")
        trees = treelite.Model.deserialize(str(d / "trees.tl"))
    model = CompiledModel(meta["kind"], meta["names"], frozenset(meta["categorical"]),
                          onnx_bytes, trees, int(meta["pos"]))
    return model, meta
