"""The endpoint's control state: what every replica serves, stored in SQLite or PostgreSQL.

A long-lived endpoint is described by rows, not by a process: its variants (each pinned to one
model version), their weights, the guardrail breaker, the experiment attached and an event per
change. Every change runs in one transaction that bumps the endpoint's ``version`` (a counter
that only grows) and writes an event row with that version. A replica follows by polling
``SELECT version`` (one indexed row, ~0.1 ms) and re-reading the snapshot when it moved, so any
number of processes on one store apply the same change, and a restart comes back as it was.

Writers serialise on the endpoint row (``UPDATE ... SET version = version + 1`` first in each
transaction: a row lock on PostgreSQL, the database write lock on SQLite), so checks made inside
the transaction (breaker state, the attached experiment) cannot race another writer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from pipeline_components.errors import ConfigError, DeploymentError, ExperimentLockedError
from pipeline_components.serving.routing import CHAMPION

control_metadata = MetaData()

endpoints = Table(
    "abx_endpoints", control_metadata,
    Column("name", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("salt", String(128), nullable=False),
    Column("base_salt", String(128), nullable=False),
    Column("shadow", Boolean, nullable=False, default=False),
    Column("experiment_id", String(128), nullable=True),  # attached experiment, if any
    Column("collecting", Boolean, nullable=False, default=False),  # rows tagged with it
    Column("breaker_tripped", Boolean, nullable=False, default=False),
    Column("breaker_reason", String(1000), nullable=True),
    Column("breaker_at", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

variants_t = Table(
    "abx_endpoint_variants", control_metadata,
    Column("endpoint", String(64), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("uri", String(500), nullable=False),  # as asked (may be an alias)
    Column("pinned_uri", String(500), nullable=False),  # what replicas load
    Column("model_version", String(64), nullable=False),
    Column("weight", Float, nullable=False),
    Column("added_by", String(128), nullable=False),
    Column("added_at", Float, nullable=False),
)

events_t = Table(
    "abx_endpoint_events", control_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint", String(64), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("ts", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("detail", JSON, nullable=True),
)

replicas_t = Table(
    "abx_endpoint_replicas", control_metadata,
    Column("endpoint", String(64), primary_key=True),
    Column("replica_id", String(64), primary_key=True),
    Column("url", String(300), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("applied_version", Integer, nullable=False),
    Column("applied_at", Float, nullable=False),
    Column("ready", JSON, nullable=True),  # variant -> pinned uri loaded and routable here
    Column("pending_rows", Integer, nullable=False, default=0),
)


@dataclass(frozen=True)
class VariantState:
    name: str
    uri: str
    pinned_uri: str
    model_version: str
    weight: float
    added_by: str


@dataclass(frozen=True)
class Snapshot:
    """One consistent read of an endpoint's control state."""

    name: str
    version: int
    salt: str
    base_salt: str
    shadow: bool
    experiment_id: str | None
    collecting: bool
    breaker_tripped: bool
    breaker_reason: str | None
    variants: dict[str, VariantState] = field(default_factory=dict)

    def weights(self) -> dict[str, float]:
        return {n: v.weight for n, v in self.variants.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "salt": self.salt,
                "shadow": self.shadow, "experiment_id": self.experiment_id,
                "collecting": self.collecting,
                "breaker": {"tripped": self.breaker_tripped, "reason": self.breaker_reason},
                "variants": {n: {"uri": v.uri, "pinned_uri": v.pinned_uri,
                                 "model_version": v.model_version, "weight": v.weight,
                                 "added_by": v.added_by} for n, v in self.variants.items()}}


def make_control_engine(url: str) -> Engine:
    """An engine on the control store (the prediction store by default), its schema checked or
    created when empty (``pipeline_components/migrations``: refused until ``abx db upgrade``
    when an older abx made it)."""
    from pipeline_components.migrations import CONTROL, open_engine

    return open_engine(url, CONTROL)


class ControlStore:
    """Reads and changes endpoint control state; every change is versioned and evented."""

    def __init__(self, engine: Engine):
        self.engine = engine

    # ------------------------------------------------------------------ reads
    def version(self, name: str) -> int | None:
        """The endpoint's control version (the cheap poll), or None when it does not exist."""
        with self.engine.connect() as conn:
            got = conn.execute(select(endpoints.c.version).where(endpoints.c.name == name))
            return got.scalar_one_or_none()

    def exists(self, name: str) -> bool:
        return self.version(name) is not None

    def snapshot(self, name: str) -> Snapshot:
        with self.engine.connect() as conn:
            return self._snapshot(conn, name)

    def _snapshot(self, conn: Connection, name: str) -> Snapshot:
        row = conn.execute(select(endpoints).where(endpoints.c.name == name)).mappings().first()
        if row is None:
            raise ConfigError(f"endpoint {name!r}: not found in the control store "
                              "(start it with `abx endpoint up`)")
        vs = conn.execute(select(variants_t).where(variants_t.c.endpoint == name)).mappings()
        variants = {v["name"]: VariantState(v["name"], v["uri"], v["pinned_uri"],
                                            v["model_version"], float(v["weight"]),
                                            v["added_by"]) for v in vs}
        return Snapshot(name, int(row["version"]), row["salt"], row["base_salt"],
                        bool(row["shadow"]), row["experiment_id"], bool(row["collecting"]),
                        bool(row["breaker_tripped"]), row["breaker_reason"], variants)

    def events(self, name: str, since_id: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        q = (select(events_t).where(events_t.c.endpoint == name, events_t.c.id > since_id)
             .order_by(events_t.c.id.desc()).limit(limit))
        with self.engine.connect() as conn:
            rows = [_plain(r) for r in conn.execute(q).mappings()]
        return rows[::-1]

    def replicas(self, name: str, max_age_s: float | None = None) -> list[dict[str, Any]]:
        """Replica rows (heartbeat within ``max_age_s`` when given), oldest first."""
        q = select(replicas_t).where(replicas_t.c.endpoint == name)
        if max_age_s is not None:
            q = q.where(replicas_t.c.heartbeat_at >= time.time() - max_age_s)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(replicas_t.c.started_at)).mappings()
            return [_plain(r) for r in rows]

    # ------------------------------------------------------------------ change machinery
    @contextmanager
    def change(self, name: str, kind: str, actor: str,
               detail: Mapping[str, Any] | None = None) -> Iterator[tuple[Connection, Snapshot]]:
        """One versioned change: bump the version (taking the row lock), yield, write the event.

        The body may raise to abort: nothing is written then.
        """
        with self.engine.begin() as conn:
            now = time.time()
            bumped = conn.execute(update(endpoints).where(endpoints.c.name == name)
                                  .values(version=endpoints.c.version + 1, updated_at=now))
            if bumped.rowcount == 0:
                raise ConfigError(f"endpoint {name!r}: not found in the control store "
                                  "(start it with `abx endpoint up`)")
            snap = self._snapshot(conn, name)
            yield conn, snap
            conn.execute(insert(events_t).values(endpoint=name, version=snap.version, ts=now,
                                                 kind=kind, actor=actor[:128],
                                                 detail=dict(detail or {})))

    def create(self, name: str, champion: VariantState, salt: str, actor: str) -> bool:
        """Create the endpoint with its champion; False (nothing changed) if it exists."""
        now = time.time()
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(endpoints).values(
                    name=name, version=1, salt=salt, base_salt=salt, shadow=False,
                    experiment_id=None, collecting=False, breaker_tripped=False,
                    created_at=now, updated_at=now))
                conn.execute(insert(variants_t).values(_variant_row(name, champion, 1.0, now)))
                conn.execute(insert(events_t).values(
                    endpoint=name, version=1, ts=now, kind="create", actor=actor,
                    detail={"champion": champion.pinned_uri}))
        except IntegrityError:
            return False
        return True

    # ------------------------------------------------------------------ operations
    def load(self, name: str, variant: VariantState, actor: str) -> int:
        """Add ``variant`` at weight 0 (replicas load it in the background); returns the version.

        Raises:
            ConfigError: the name is taken by another model, or names the champion.
        """
        if variant.name == CHAMPION:
            raise ConfigError("variant: 'champion' is replaced by `promote`, not loaded")
        with self.change(name, "load", actor, {"variant": variant.name,
                                               "pinned_uri": variant.pinned_uri}) as (conn, s):
            old = s.variants.get(variant.name)
            if old is not None and old.pinned_uri != variant.pinned_uri:
                raise ConfigError(f"variant {variant.name!r}: already loaded with "
                                  f"{old.pinned_uri}; unload it first")
            if old is None:
                conn.execute(insert(variants_t).values(
                    _variant_row(name, variant, 0.0, time.time())))
            return s.version

    def unload(self, name: str, variant: str, actor: str, reason: str = "") -> int | None:
        """Remove a variant (never the champion); None when it was not there (idempotent)."""
        if variant == CHAMPION:
            raise ConfigError("variant: the champion cannot be unloaded (promote another first)")
        with self.engine.connect() as conn:
            present = conn.execute(select(variants_t.c.name).where(
                variants_t.c.endpoint == name, variants_t.c.name == variant)).first()
        if present is None:
            return None
        with self.change(name, "unload", actor, {"variant": variant, "reason": reason}) as (
                conn, s):
            conn.execute(delete(variants_t).where(variants_t.c.endpoint == name,
                                                  variants_t.c.name == variant))
            return s.version

    def set_weights(self, name: str, weights: Mapping[str, float], actor: str,
                    reset_breaker: bool = False, kind: str = "weights") -> int:
        """Set the named variants' weights (others keep theirs); refused while tripped.

        Raises:
            ConfigError: unknown variant or a bad weight. ExperimentLockedError-like
            PermissionError: the breaker is tripped and ``reset_breaker`` is false.
        """
        for n, w in weights.items():
            if not (isinstance(w, int | float) and 0.0 <= float(w) < float("inf")):
                raise ConfigError(f"weights.{n}: must be a finite number >= 0, got {w!r}")
        detail = {"weights": dict(weights), "reset_breaker": reset_breaker}
        with self.change(name, kind, actor, detail) as (conn, s):
            unknown = sorted(set(weights) - set(s.variants))
            if unknown:
                raise ConfigError(f"weights.{unknown[0]}: unknown variant "
                                  f"(have {sorted(s.variants)})")
            merged = {**s.weights(), **{k: float(v) for k, v in weights.items()}}
            if sum(merged.values()) <= 0:
                raise ConfigError("weights: must not all be 0")
            routes_others = any(w > 0 for n, w in merged.items() if n != CHAMPION)
            if s.breaker_tripped and not reset_breaker and routes_others:
                raise PermissionError(f"breaker tripped ({s.breaker_reason}): pass "
                                      "reset_breaker to route traffic to a challenger again")
            for n, w in weights.items():
                conn.execute(update(variants_t).where(variants_t.c.endpoint == name,
                                                      variants_t.c.name == n).values(weight=w))
            if reset_breaker:
                conn.execute(update(endpoints).where(endpoints.c.name == name).values(
                    breaker_tripped=False, breaker_reason=None, breaker_at=None))
            return s.version

    def trip_breaker(self, name: str, reason: str, actor: str,
                     detail: Mapping[str, Any] | None = None) -> int | None:
        """Open the breaker for every replica: all traffic to the champion. Idempotent."""
        if self.snapshot(name).breaker_tripped:
            return None
        with self.change(name, "breaker", actor, {"reason": reason, **(detail or {})}) as (
                conn, s):
            if s.breaker_tripped:
                return s.version
            conn.execute(update(endpoints).where(endpoints.c.name == name).values(
                breaker_tripped=True, breaker_reason=reason[:1000], breaker_at=time.time()))
            conn.execute(update(variants_t).where(variants_t.c.endpoint == name,
                                                  variants_t.c.name != CHAMPION)
                         .values(weight=0.0))
            conn.execute(update(variants_t).where(variants_t.c.endpoint == name,
                                                  variants_t.c.name == CHAMPION)
                         .values(weight=1.0))
            return s.version

    def promote(self, name: str, variant: str, actor: str) -> int | None:
        """``variant`` becomes the champion in place (same loaded model); the old one goes.

        Returns None when the champion already serves that model (idempotent).
        """
        snap = self.snapshot(name)
        target = snap.variants.get(variant)
        if target is None:
            if snap.variants[CHAMPION].added_by == f"promote:{variant}":
                return None
            raise ConfigError(f"variant {variant!r}: not loaded (have {sorted(snap.variants)})")
        if variant == CHAMPION:
            return None
        old = snap.variants[CHAMPION]
        detail = {"variant": variant, "champion_before": old.model_version,
                  "champion_after": target.model_version}
        with self.change(name, "promote", actor, detail) as (conn, s):
            conn.execute(delete(variants_t).where(variants_t.c.endpoint == name,
                                                  variants_t.c.name.in_([variant, CHAMPION])))
            new = VariantState(CHAMPION, target.uri, target.pinned_uri, target.model_version,
                               1.0, f"promote:{variant}")
            conn.execute(insert(variants_t).values(_variant_row(name, new, 1.0, time.time())))
            conn.execute(update(variants_t).where(variants_t.c.endpoint == name)
                         .where(variants_t.c.name != CHAMPION).values(weight=0.0))
            conn.execute(update(endpoints).where(endpoints.c.name == name).values(
                collecting=False))
            return s.version

    def attach(self, name: str, experiment_id: str, salt: str) -> int | None:
        """Attach an experiment (one at a time). Idempotent for the same experiment.

        Raises:
            ExperimentLockedError: another experiment is attached.
        """
        snap = self.snapshot(name)
        if snap.experiment_id == experiment_id:
            return None
        with self.change(name, "attach", experiment_id, {"salt": salt}) as (conn, s):
            if s.experiment_id not in (None, experiment_id):
                raise ExperimentLockedError(
                    f"endpoint {name!r}: experiment {s.experiment_id!r} is attached; one "
                    "experiment at a time (wait for it, or `abx endpoint detach` it)")
            conn.execute(update(endpoints).where(endpoints.c.name == name).values(
                experiment_id=experiment_id, salt=salt, collecting=False))
            return s.version

    def set_collecting(self, name: str, experiment_id: str, collecting: bool,
                       shadow: bool | None = None) -> int:
        """Start/stop tagging logged rows with the attached experiment's id (and shadow mode)."""
        detail = {"collecting": collecting, "shadow": shadow}
        with self.change(name, "collect", experiment_id, detail) as (conn, s):
            if s.experiment_id != experiment_id:
                raise DeploymentError(f"endpoint {name!r}: experiment {experiment_id!r} is not "
                                      f"attached (attached: {s.experiment_id!r})")
            values: dict[str, Any] = {"collecting": collecting}
            if shadow is not None:
                values["shadow"] = shadow
            conn.execute(update(endpoints).where(endpoints.c.name == name).values(**values))
            return s.version

    def detach(self, name: str, experiment_id: str, reason: str = "") -> dict[str, Any]:
        """Unload the variants this experiment added and detach it. Idempotent."""
        snap = self.snapshot(name)
        mine = [n for n, v in snap.variants.items() if v.added_by == experiment_id]
        if snap.experiment_id != experiment_id and not mine:
            return {"detached": False, "unloaded": []}
        with self.change(name, "detach", experiment_id, {"unloaded": mine, "reason": reason}
                         ) as (conn, s):
            conn.execute(delete(variants_t).where(variants_t.c.endpoint == name,
                                                  variants_t.c.added_by == experiment_id,
                                                  variants_t.c.name != CHAMPION))
            if s.experiment_id == experiment_id:
                # the breaker guarded this experiment's challenger, which is gone now
                conn.execute(update(endpoints).where(endpoints.c.name == name).values(
                    experiment_id=None, collecting=False, shadow=False, salt=s.base_salt,
                    breaker_tripped=False, breaker_reason=None, breaker_at=None))
            champ = conn.execute(select(variants_t.c.weight).where(
                variants_t.c.endpoint == name, variants_t.c.name == CHAMPION)).scalar_one()
            if champ <= 0:
                conn.execute(update(variants_t).where(variants_t.c.endpoint == name,
                                                      variants_t.c.name == CHAMPION)
                             .values(weight=1.0))
        return {"detached": True, "unloaded": mine}

    def load_failed(self, name: str, variant: str, pinned_uri: str, replica: str,
                    reason: str) -> None:
        """A replica could not load ``variant``: drop it everywhere, record why."""
        detail = {"variant": variant, "pinned_uri": pinned_uri, "replica": replica,
                  "reason": reason[:2000]}
        with self.change(name, "load_failed", replica, detail) as (conn, _s):
            conn.execute(delete(variants_t).where(variants_t.c.endpoint == name,
                                                  variants_t.c.name == variant,
                                                  variants_t.c.pinned_uri == pinned_uri,
                                                  variants_t.c.name != CHAMPION))

    def record(self, name: str, kind: str, actor: str, detail: Mapping[str, Any]) -> None:
        """An event row without a state change (replica start/stop, load ok)."""
        with self.engine.begin() as conn:
            v = conn.execute(select(endpoints.c.version).where(endpoints.c.name == name)
                             ).scalar_one_or_none() or 0
            conn.execute(insert(events_t).values(endpoint=name, version=v, ts=time.time(),
                                                 kind=kind, actor=actor[:128],
                                                 detail=dict(detail)))

    # ------------------------------------------------------------------ replicas
    def heartbeat(self, name: str, replica_id: str, row: Mapping[str, Any]) -> None:
        """Upsert this replica's row (applied version, routable variants, pending rows)."""
        values = {**row, "heartbeat_at": time.time()}
        with self.engine.begin() as conn:
            done = conn.execute(update(replicas_t).where(
                replicas_t.c.endpoint == name, replicas_t.c.replica_id == replica_id)
                .values(**values))
            if done.rowcount == 0:
                conn.execute(insert(replicas_t).values(endpoint=name, replica_id=replica_id,
                                                       **values))

    def forget_replica(self, name: str, replica_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(replicas_t).where(replicas_t.c.endpoint == name,
                                                  replicas_t.c.replica_id == replica_id))


def _variant_row(endpoint: str, v: VariantState, weight: float, now: float) -> dict[str, Any]:
    return {"endpoint": endpoint, "name": v.name, "uri": v.uri, "pinned_uri": v.pinned_uri,
            "model_version": v.model_version, "weight": weight, "added_by": v.added_by,
            "added_at": now}


def _plain(row: Any) -> dict[str, Any]:
    """A row as a dict with plain ``str`` keys (SQLAlchemy's are a str subclass orjson refuses)."""
    return {str(k): v for k, v in row.items()}
