"""Typed, validated configuration: params.yaml plus overrides, through one code path.

``load_config(path, overrides)`` is the only way code gets a config. Overrides come from the CLI
(``abx ... --set training.n_trials=20``) or from a dict (the Airflow run conf); both are dotted key
paths applied to the raw YAML mapping *before* validation, so every source is checked by the same
pydantic models. Models are frozen and forbid unknown keys: a typo in params.yaml is an error that
names the file and the key path, never a silently ignored knob.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline_components.errors import ConfigError

DEFAULT_PARAMS = Path("params.yaml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- experiment / paths
class ExperimentConfig(_Section):
    name: str = Field("abx-demo", min_length=1)
    id: str = Field("local", min_length=1, pattern=r"^[A-Za-z0-9_.:+-]+$")
    seed: int = Field(42, ge=0)
    state_dir: Path = Path(".abx")
    schedule: str | None = "0 2 * * *"  # the DAG's cron (UTC); empty/none/null: no schedule


# --------------------------------------------------------------------------- data
class SyntheticConfig(_Section):
    n_users: int = Field(20_000, ge=100, le=10_000_000)
    n_numeric: int = Field(6, ge=1, le=200)
    positive_rate: float = Field(0.2, gt=0.0, lt=1.0)
    covariate_correlation: float = Field(0.6, ge=0.0, lt=1.0)
    drift: float = Field(0.0, ge=0.0, le=5.0)


class DataConfig(_Section):
    source: Literal["synthetic", "file"] = "synthetic"
    path: Path | None = None
    raw_path: Path = Path("data/raw/users.parquet")
    id_column: str = "user_id"
    target_column: str = "converted"
    covariate_column: str | None = "pre_activity"
    numeric_features: list[str] = Field(default_factory=lambda: [f"x{i}" for i in range(6)])
    categorical_features: dict[str, list[str]] = Field(default_factory=lambda: {
        "segment": ["new", "casual", "loyal"], "device": ["mobile", "desktop", "tablet"]})
    synthetic: SyntheticConfig = SyntheticConfig()

    @property
    def numeric_columns(self) -> list[str]:
        """Numeric feature names: ``numeric_features``, or x0..x{n-1} when that list is empty.

        The one reading of the rule for every stage (data, features, drift in the analysis).
        """
        if self.numeric_features:
            return list(self.numeric_features)
        return [f"x{i}" for i in range(self.synthetic.n_numeric)]

    @model_validator(mode="after")
    def _file_needs_path(self) -> DataConfig:
        if self.source == "file" and self.path is None:
            raise ValueError("data.source is 'file' but data.path is not set")
        n_listed, n_numeric = len(self.numeric_features), self.synthetic.n_numeric
        if self.source == "synthetic" and n_listed and n_listed != n_numeric:
            raise ValueError(
                f"data.synthetic.n_numeric is {n_numeric} but data.numeric_features lists "
                f"{n_listed} names; make them agree (or empty the list to get x0..x{{n-1}})"
            )
        return self


# --------------------------------------------------------------------------- validation
class ColumnRule(_Section):
    """Per-column validation rules; a key left out falls back to the global default."""

    range: tuple[float, float] | None = None  # numeric: every value in [lo, hi]
    max_null_fraction: float | None = Field(None, ge=0.0, le=1.0)
    # categorical: values beyond data.categorical_features.<col> are allowed (the long tail,
    # capped at inference) and fall into the model's "other" bucket; false: they fail validation
    other: bool = False

    @field_validator("range")
    @classmethod
    def _ordered(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and v[0] > v[1]:
            raise ValueError(f"range must be [lo, hi] with lo <= hi, got {list(v)}")
        return v


class ValidationConfig(_Section):
    min_rows: int = Field(100, ge=1)
    max_null_fraction: float = Field(0.0, ge=0.0, le=1.0)
    numeric_range: tuple[float, float] = (-1e6, 1e6)
    covariate_range: tuple[float, float] = (0.0, 1e6)
    target_rate_range: tuple[float, float] = (0.01, 0.99)
    report_path: Path = Path("data/validation/result.json")
    columns: dict[str, ColumnRule] = Field(default_factory=dict)

    def null_fraction(self, column: str) -> float:
        """Allowed share of nulls in ``column``: its own rule, else the global default."""
        rule = self.columns.get(column)
        if rule is not None and rule.max_null_fraction is not None:
            return rule.max_null_fraction
        return self.max_null_fraction

    def value_range(self, column: str, default: tuple[float, float]) -> tuple[float, float]:
        rule = self.columns.get(column)
        return rule.range if rule is not None and rule.range is not None else default

    def allows_other(self, column: str) -> bool:
        rule = self.columns.get(column)
        return bool(rule and rule.other)


# --------------------------------------------------------------------------- features
class FeaturesConfig(_Section):
    out_dir: Path = Path("data/features")
    validation_fraction: float = Field(0.2, gt=0.0, lt=0.5)
    holdout_fraction: float = Field(0.3, gt=0.0, lt=0.8)
    # Keys the id-hash split; fixed per dataset (not the run seed) so holdouts never leak.
    split_salt: str = Field("abx-split-v1", min_length=1)
    scale_numeric: bool = True


# --------------------------------------------------------------------------- training
_TREES: dict[str, dict[str, Any]] = {
    "n_estimators": {"type": "int", "low": 50, "high": 150, "step": 50},
    "max_depth": {"type": "int", "low": 3, "high": 12},
    "min_samples_leaf": {"type": "int", "low": 1, "high": 50, "log": True},
    "max_features": {"type": "float", "low": 0.3, "high": 1.0},
}
# Search space per model family (training.search_spaces); params.yaml lists the same values.
DEFAULT_SEARCH_SPACES: dict[str, dict[str, dict[str, Any]]] = {
    "logreg": {
        "C": {"type": "float", "low": 1e-3, "high": 100.0, "log": True},
        "class_weight": {"type": "categorical", "choices": [None, "balanced"]},
    },
    "extra_trees": dict(_TREES),
    "random_forest": dict(_TREES),
    "hist_gbdt": {
        "learning_rate": {"type": "float", "low": 0.02, "high": 0.3, "log": True},
        "max_iter": {"type": "int", "low": 50, "high": 150, "step": 50},
        "max_leaf_nodes": {"type": "int", "low": 8, "high": 48, "log": True},
        "min_samples_leaf": {"type": "int", "low": 10, "high": 100, "log": True},
        "l2_regularization": {"type": "float", "low": 1e-6, "high": 1.0, "log": True},
    },
}


class TrainingConfig(_Section):
    families: list[str] = Field(default_factory=lambda: ["logreg", "extra_trees", "hist_gbdt"])
    search_spaces: dict[str, dict[str, dict[str, Any]]] = Field(
        default_factory=lambda: json.loads(json.dumps(DEFAULT_SEARCH_SPACES)))
    metric: Literal["roc_auc", "neg_log_loss", "accuracy"] = "roc_auc"
    cv_folds: int = Field(3, ge=2, le=20)
    n_trials: int = Field(12, ge=1, le=10_000)
    timeout_s: float = Field(600.0, gt=0.0)
    workers: int = Field(2, ge=1, le=64)
    pruning: bool = True
    storage: str | None = None  # None: JournalFileBackend under the state dir; else an RDB URL


class TrackingConfig(_Section):
    tracking_uri: str | None = None  # None: sqlite under the state dir
    experiment_name: str = "abx"


class RegistryConfig(_Section):
    model_name: str = Field("abx-model", min_length=1)
    gate_metric: Literal["roc_auc", "log_loss", "accuracy"] = "roc_auc"
    gate_margin: float = 0.0
    # Convert the registered pipeline to ONNX Runtime / treelite (pipeline_components/compiled.py).
    compile: bool = True
    compile_tolerance: float = Field(1e-5, ge=0.0)  # max |P_compiled - P_sklearn| on the holdout
    retry_attempts: int = Field(4, ge=1, le=20)  # registry calls that fail transiently
    retry_wait_s: float = Field(0.5, ge=0.0)  # first backoff, doubled per attempt (max 8x)
    request_timeout_s: int = Field(10, ge=1)  # one MLflow HTTP request (MLflow's default: 120)
    lock_url: str | None = None  # None: store_url if PostgreSQL, else sqlite locks.db


# --------------------------------------------------------------------------- serving / canary
class GuardrailConfig(_Section):
    window_s: float = Field(30.0, gt=0.0)
    min_requests: int = Field(50, ge=1)
    max_error_rate: float = Field(0.05, ge=0.0, le=1.0)
    latency_quantile: float = Field(0.99, gt=0.0, lt=1.0)
    max_latency_ms: float = Field(250.0, gt=0.0)


class DockerServingConfig(_Section):
    """``serving.backend: docker``: the endpoint image and its replicas' resources."""

    image: str = Field("abx-endpoint:latest", min_length=1)  # `abx image build` tags it
    replicas: int = Field(1, ge=1, le=32)  # containers, one port each (host networking)
    cpus: float = Field(1.0, gt=0.0, le=64.0)  # CPU limit per replica
    memory: str = Field("1g", pattern=r"^[0-9]+[bkmg]?$")  # memory limit per replica
    keep_images: int = Field(3, ge=1, le=100)  # `abx image build` keeps this many newest images


class ServingConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    salt: str | None = None  # None: the experiment id
    weights: dict[str, float] = Field(
        default_factory=lambda: {"champion": 0.95, "challenger": 0.05}
    )
    shadow: bool = False
    store_url: str | None = None  # None: sqlite (WAL) under the state dir
    # Secrets: never printed (SecretStr dumps as '**********'), never written by abx to a file
    # others can read. None: ABX_ADMIN_TOKEN / ABX_QA_TOKEN from the environment.
    admin_token: SecretStr | None = None
    qa_token: SecretStr | None = None  # may force a variant (X-ABX-Variant); admin may too
    max_batch: int = Field(256, ge=1)
    max_body_bytes: int = Field(1_000_000, ge=1024)
    flush_interval_s: float = Field(0.2, gt=0.0)
    flush_max_rows: int = Field(500, ge=1)
    # Rows waiting for the store; beyond this /predict and /feedback answer 503 (back-pressure).
    writer_max_pending: int = Field(100_000, ge=1)
    spool_dir: Path | None = None  # None: <experiment_dir>/router/spool
    durable: bool = False  # every row is in the spool file before its answer leaves
    wal_fsync: bool = False  # durable + fsync each write (survives a machine crash, costs more)
    # SIGTERM -> SIGKILL budget of the backend; the router fits its drain inside it.
    shutdown_grace_s: float = Field(30.0, ge=3.0, le=3600.0)
    # Coalesce concurrent /predict calls into one model call per variant (serving/workers.py).
    micro_batch: bool = True
    # Latency budget of the batching window: a worker that took fewer requests than its previous
    # call had (load still there) waits at most this long after the oldest was queued for the
    # rest; a lone request is never held (serving/workers.py).
    batch_wait_ms: float = Field(2.0, ge=0.0, le=1000.0)
    batch_max_rows: int = Field(64, ge=1)  # rows per coalesced model call
    gc_freeze: bool = True  # gc.freeze() after loading: no full-heap collection pauses
    # auto: serve a version's compiled model (logged at registration) when it still agrees.
    runtime: Literal["auto", "sklearn"] = "auto"
    backend: Literal["local", "docker"] = "local"
    # Per model call, queueing included; a slower challenger falls back to the champion's answer.
    model_timeout_s: float = Field(2.0, gt=0.0)
    variant_timeouts_s: dict[str, float] = Field(default_factory=dict)  # per-variant override
    # skops types trusted beyond scikit-learn/NumPy/SciPy (serving/formats.py), by full name.
    trusted_types: list[str] = Field(default_factory=list)
    docker: DockerServingConfig = DockerServingConfig()
    guardrails: GuardrailConfig = GuardrailConfig()

    @field_validator("weights")
    @classmethod
    def _weights_valid(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("at least one variant weight is needed")
        if any(w < 0 for w in v.values()):
            raise ValueError("weights must be >= 0")
        if sum(v.values()) <= 0:
            raise ValueError("weights must not all be 0")
        return v


class EndpointConfig(_Section):
    """The long-lived endpoint (serving/endpoint.py): name, address, replicas, control loop."""

    name: str = Field("abx", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    replicas: int = Field(1, ge=1, le=64)
    control_url: str | None = None  # None: the prediction store (serving.store_url)
    poll_interval_s: float = Field(0.2, gt=0.0, le=10.0)
    heartbeat_s: float = Field(1.0, gt=0.0)
    replica_timeout_s: float = Field(5.0, gt=0.0)
    load_timeout_s: float = Field(120.0, gt=0.0)
    drain_s: float = Field(1.0, ge=0.0)
    client_key: SecretStr | None = None  # None: ABX_CLIENT_KEY, else <state_dir>/endpoints/<name>/


class CanaryConfig(_Section):
    traffic: Literal["live", "simulator"] = "simulator"
    poke_interval_s: float = Field(30.0, gt=0.0)
    min_step_duration_s: float = Field(0.0, ge=0.0)
    max_step_duration_s: float = Field(86400.0, gt=0.0)
    steps: list[float] = Field(default_factory=lambda: [0.05, 0.25, 0.5])
    min_samples_per_step: int = Field(200, ge=1)
    max_duration_s: float = Field(600.0, gt=0.0)
    lock_timeout_s: float = Field(60.0, ge=0.0)  # wait for the registry alias lock, then fail
    flush_wait_s: float = Field(10.0, ge=0.0)  # wait for the router's log writer before analysing
    extra_looks: int = Field(2, ge=0, le=100)  # more looks at the last step while inconclusive

    @field_validator("steps")
    @classmethod
    def _steps_valid(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("at least one canary step is needed")
        if any(not 0.0 < s <= 1.0 for s in v):
            raise ValueError("each step is a challenger traffic share in (0, 1]")
        if sorted(v) != v:
            raise ValueError("steps must be increasing")
        return v


# --------------------------------------------------------------------------- analysis
class DriftConfig(_Section):
    psi_threshold: float = Field(0.2, gt=0.0)
    p_threshold: float = Field(0.001, gt=0.0, lt=1.0)
    blocks_promotion: bool = True
    min_rows: int = Field(200, ge=10)  # rows per side before a comparison is made


class AnalysisConfig(_Section):
    primary_metric: Literal["reward", "outcome"] = "reward"
    metric_type: Literal["binary", "continuous"] = "binary"
    alpha: float = Field(0.05, gt=0.0, lt=0.5)
    power: float = Field(0.8, gt=0.0, lt=1.0)
    mde: float = Field(0.02, gt=0.0)
    baseline_rate: float = Field(0.75, gt=0.0, lt=1.0)
    method: Literal["msprt", "gst", "fixed"] = "gst"  # measured choice: docs/analysis.md
    max_looks: int = Field(10, ge=1)
    gst_spending: Literal["obf", "pocock"] = "pocock"  # alpha spending of the efficacy bound
    gst_futility: Literal["none", "obf", "pocock"] = "obf"  # beta spending, non-binding
    msprt_tau: float | None = Field(None, gt=0.0)  # None: the mde
    shadow_tau: float = Field(0.02, gt=0.0)  # prior sd of the paired log-loss difference
    srm_p_threshold: float = Field(0.001, gt=0.0, lt=1.0)
    cuped: bool = True
    # CUPED covariate: pre_period (data.covariate_column) | cupac (the champion's prediction of
    # each unit's metric) | auto (pre_period when it matches units, else cupac)
    cuped_covariate: Literal["auto", "pre_period", "cupac"] = "auto"
    min_units_per_arm: int = Field(100, ge=2)
    error_rate_margin: float = Field(0.01, ge=0.0)
    latency_margin_ms: float = Field(20.0, ge=0.0)
    cluster_column: str | None = None  # feature key naming each unit's cluster (cluster-robust)
    drift: DriftConfig = DriftConfig()


# --------------------------------------------------------------------------- simulator / report
def reward_rates_problem(base_rate: float, lift: float) -> str | None:
    """Why ``base_rate`` (champion) and ``base_rate + lift`` (other variants) are not both
    reward probabilities, or None: the one rule of the simulator's known truth."""
    if 0.0 < base_rate < 1.0 and 0.0 <= base_rate + lift <= 1.0:
        return None
    return (f"base_rate {base_rate:g} + true_lift {lift:g} = {base_rate + lift:g}: "
            f"simulator.base_rate + simulator.true_lift must be a probability (0..1), "
            f"with base_rate in (0, 1)")


class SimulatorConfig(_Section):
    rate_per_s: float = Field(200.0, gt=0.0)
    concurrency: int = Field(8, ge=1, le=256)
    max_requests: int = Field(2000, ge=1)
    feedback_delay_s: float = Field(0.0, ge=0.0)
    timeout_s: float = Field(10.0, gt=0.0)  # per HTTP request
    # A known truth for demos and tests of the decision: when set, a user's reward no longer
    # comes from the served prediction but from a draw keyed by their id, with rate
    # ``base_rate`` on the champion and ``base_rate + true_lift`` on every other variant.
    true_lift: float | None = Field(None, ge=-1.0, le=1.0)
    base_rate: float = Field(0.5, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _rates_are_probabilities(self) -> SimulatorConfig:
        problem = None if self.true_lift is None else reward_rates_problem(self.base_rate,
                                                                            self.true_lift)
        if problem:
            raise ValueError(problem)
        return self


class FaultsConfig(_Section):
    """Fault injection for tests and demos only (read through pipeline_components.faults)."""

    challenger_failure_rate: float = Field(0.0, ge=0.0, le=1.0)
    challenger_delay_s: float = Field(0.0, ge=0.0)  # non-champion model calls sleep first
    fail_canary: bool = False


class ReportConfig(_Section):
    out_dir: Path = Path("reports")


class Config(_Section):
    experiment: ExperimentConfig = ExperimentConfig()
    data: DataConfig = DataConfig()
    validation: ValidationConfig = ValidationConfig()
    features: FeaturesConfig = FeaturesConfig()
    training: TrainingConfig = TrainingConfig()
    tracking: TrackingConfig = TrackingConfig()
    registry: RegistryConfig = RegistryConfig()
    serving: ServingConfig = ServingConfig()
    endpoint: EndpointConfig = EndpointConfig()
    canary: CanaryConfig = CanaryConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    simulator: SimulatorConfig = SimulatorConfig()
    report: ReportConfig = ReportConfig()
    faults: FaultsConfig = FaultsConfig()

    @model_validator(mode="after")
    def _rules_name_known_columns(self) -> Config:
        d = self.data
        numeric = d.numeric_features or [f"x{i}" for i in range(d.synthetic.n_numeric)]
        known = {d.id_column, d.target_column, d.covariate_column, *numeric,
                 *d.categorical_features}
        for col in self.validation.columns:
            if col not in known:
                raise ValueError(f"validation.columns.{col}: not a column of data.* (id, "
                                 "target, covariate, numeric or categorical features)")
        return self

    def nullable_features(self) -> frozenset[str]:
        """Feature columns allowed to be null (max_null_fraction > 0): models impute them and
        the router accepts null for them."""
        d = self.data
        numeric = d.numeric_features or [f"x{i}" for i in range(d.synthetic.n_numeric)]
        cols = [*numeric, *d.categorical_features]
        return frozenset(c for c in cols if self.validation.null_fraction(c) > 0)

    # ------------------------------------------------------------------ derived locations
    @property
    def state_dir(self) -> Path:
        return self.experiment.state_dir

    @property
    def experiment_dir(self) -> Path:
        """Everything a run writes is keyed by the experiment id, so retries are harmless."""
        return self.state_dir / "experiments" / self.experiment.id

    @property
    def tracking_uri(self) -> str:
        if self.tracking.tracking_uri:
            return self.tracking.tracking_uri
        return f"sqlite:///{(self.state_dir / 'mlflow.db').resolve()}"

    @property
    def store_url(self) -> str:
        if self.serving.store_url:
            return self.serving.store_url
        return f"sqlite:///{(self.state_dir / 'predictions.db').resolve()}"

    @property
    def spool_dir(self) -> Path:
        """Where the router spools log rows (durable mode, shutdown spill): one slot per process."""
        return (self.serving.spool_dir or self.experiment_dir / "router" / "spool").resolve()

    @property
    def control_url(self) -> str:
        """Where the endpoint's control state lives (default: the prediction store)."""
        return self.endpoint.control_url or self.store_url

    @property
    def lock_url(self) -> str:
        """Database of the registry alias lock (see ``pipeline_components.locks``)."""
        if self.registry.lock_url:
            return self.registry.lock_url
        if self.store_url.startswith("postgresql"):
            return self.store_url
        return f"sqlite:///{(self.state_dir / 'locks.db').resolve()}"

    @property
    def salt(self) -> str:
        return self.serving.salt or self.experiment.id

    def params_hash(self) -> str:
        """Stable hash of the effective config (lineage tag on every model version)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# --------------------------------------------------------------------------- loading
def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn CLI ``key.path=value`` strings into a dict; values are parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. training.n_trials=20")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML: {exc}") from exc
    return out


def _section_type(path: list[str]) -> type[BaseModel] | None:
    """The config section model at ``path`` (e.g. ["serving", "guardrails"]), or None for a leaf."""
    model: type[BaseModel] = Config
    for part in path:
        field = model.model_fields.get(part)
        ann = field.annotation if field else None
        if not (isinstance(ann, type) and issubclass(ann, _Section)):
            return None
        model = ann
    return model


def _set(node: dict[str, Any], parts: list[str], value: Any, dotted: str, source: str) -> None:
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(f"{source}: cannot set {dotted!r}: {where!r} is not a mapping")
        node = child
    key = parts[-1]
    if isinstance(value, Mapping) and _section_type(parts) is not None:
        # A mapping given for a whole section merges key by key: {"serving": {"port": 1}} keeps
        # the other serving keys of params.yaml. Leaf dicts (weights, search spaces) replace.
        for sub_key, sub_value in value.items():
            _set(node, [key, str(sub_key)], sub_value, f"{dotted}.{sub_key}", source)
    else:
        node[key] = value


def apply_overrides(
    raw: dict[str, Any], overrides: Mapping[str, Any], source: str
) -> dict[str, Any]:
    """Apply dotted-path overrides to a nested mapping (a copy).

    Keys are dotted paths (``training.n_trials``); a mapping value for a config *section* merges
    into it, a mapping value for a leaf (``serving.weights``) replaces it.
    """
    merged: dict[str, Any] = json.loads(json.dumps(raw, default=str))
    for dotted, value in overrides.items():
        parts = [p for p in str(dotted).split(".") if p]
        if not parts:
            raise ConfigError(f"{source}: empty override key")
        _set(merged, parts, value, str(dotted), source)
    return merged


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (typo? see params.yaml for the known keys)"
        got = err.get("input")
        got_txt = "" if err["type"] in ("extra_forbidden", "missing") else f" (got {got!r})"
        lines.append(f"{source}: {loc}: {msg}{got_txt}")
    return "\n".join(lines)


def config_from_mapping(
    raw: Mapping[str, Any], overrides: Mapping[str, Any] | None = None, source: str = "<dict>"
) -> Config:
    """Validate a raw mapping (plus overrides) into a Config; ConfigError names the bad key."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(raw).__name__}")
    merged = apply_overrides(dict(raw), overrides or {}, source if not overrides else "override")
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        where = source if not overrides else f"{source} (+ overrides)"
        raise ConfigError(_format_validation_error(exc, where)) from None


def read_params(path: str | Path) -> dict[str, Any]:
    """The raw mapping of a params file; ConfigError names the file when it is missing or bad."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: top level must be a mapping, got {type(raw).__name__}")
    return raw


# Path-valued keys; relative values are anchored at the project root (see ``anchor_paths``).
PATH_KEYS: tuple[str, ...] = (
    "experiment.state_dir",
    "data.path",
    "data.raw_path",
    "validation.report_path",
    "features.out_dir",
    "report.out_dir",
)


def _get(cfg_dump: Mapping[str, Any], dotted: str) -> Any:
    node: Any = cfg_dump
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def anchored_overrides(cfg: Config, root: str | Path) -> dict[str, str]:
    """Overrides that make every relative path key of ``cfg`` absolute under ``root``.

    One project root for every driver and subcommand: ``abx run``, ``abx data`` and ``abx
    register`` all find ``.abx/``, ``data/`` and ``reports/`` in the same place, wherever the
    params file lives and whatever the working directory of a worker process.
    """
    dump = cfg.model_dump(mode="json")
    base = Path(root).resolve()
    out = {}
    for key in PATH_KEYS:
        value = _get(dump, key)
        if value is not None and not Path(value).is_absolute():
            out[key] = str(base / value)
    return out


def load_config(
    path: str | Path | None = DEFAULT_PARAMS, overrides: Mapping[str, Any] | None = None,
    root: str | Path | None = None,
) -> Config:
    """Load params.yaml (or embedded defaults when ``path`` is None) and apply overrides.

    Args:
        path: the YAML file; ``None`` means the built-in defaults only.
        overrides: dotted key paths to values, from ``--set`` or an Airflow run conf.
        root: anchor relative paths (state dir, data, reports) here; None leaves them relative.

    Raises:
        ConfigError: the file is missing or not YAML, or a key is unknown, mistyped or out of range.
    """
    raw = {} if path is None else read_params(path)
    source = "<defaults>" if path is None else str(path)
    cfg = config_from_mapping(raw, overrides, source)
    if root is None:
        return cfg
    anchored = anchored_overrides(cfg, root)
    if not anchored:
        return cfg
    return config_from_mapping(raw, {**(overrides or {}), **anchored}, source)
