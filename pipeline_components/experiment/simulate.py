"""Traffic simulator: replay holdout users against the router over real HTTP, then send feedback.

In production, clients call the router. For the demo, the tests and ``dvc repro``, this module
plays those clients: each holdout row is one user (``unit_id`` = the row's id) who sends one
``POST /predict`` with their raw feature row, at a bounded rate and concurrency, to a loopback
router only. Each answer is later followed by ``POST /feedback`` with the delayed outcome.

Business metric (the primary metric ``reward``): the served decision is "act if
``prediction >= 0.5``"; it is right when it matches what the user actually did, so
``reward = 1.0 if (prediction >= 0.5) == label else 0.0`` and ``outcome`` is the label itself.
A better model earns more reward per user, which is what the canary measures.

Known truth (``simulator.true_lift``): to check that the decision finds an effect that is really
there (and none when there is none), the reward can instead be drawn from a uniform keyed by the
user's id, ``reward = 1 if u(user) < base_rate + lift(variant)``, with no lift on the champion.
The same user draws the same ``u`` whichever variant serves them, and the draw is independent of
the assignment hash, so the true difference between arms is exactly ``true_lift``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlparse

import httpx

from pipeline_components.aliases import CHAMPION
from pipeline_components.config import Config, reward_rates_problem
from pipeline_components.errors import ConfigError, DeploymentError

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
THRESHOLD = 0.5


@dataclass(frozen=True)
class User:
    """One simulated user: their id, raw feature row and the label they will reveal later."""

    unit_id: str
    features: dict[str, Any]
    label: int


@dataclass
class SimulationResult:
    """What one simulation sent and got back (JSON-able through ``to_dict``)."""

    sent: int = 0
    answered: int = 0
    http_errors: int = 0
    feedback_sent: int = 0
    reward_sum: float = 0.0
    per_variant: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)  # users the router refused, per reason
    reward_per_variant: dict[str, float] = field(default_factory=dict)
    duration_s: float = 0.0
    started_at: float = 0.0
    true_lift: float | None = None  # the known lift the rewards were drawn with (None: models')

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reward_of(prediction: float, label: int) -> float:
    """The business reward of one served decision (see the module docstring)."""
    return 1.0 if (prediction >= THRESHOLD) == bool(label) else 0.0


@dataclass(frozen=True)
class KnownLift:
    """Rewards with a known true effect (see the module docstring): ``base_rate`` on the
    champion, ``base_rate + lift`` on every other variant, keyed by ``seed`` and the user's id."""

    lift: float
    base_rate: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        problem = reward_rates_problem(self.base_rate, self.lift)
        if problem:
            raise ConfigError(f"simulator: {problem}")

    def uniform(self, unit_id: str) -> float:
        """A uniform draw in [0, 1) fixed by the seed and the user (not by the variant)."""
        digest = hashlib.sha256(f"abx-sim:{self.seed}:{unit_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2.0**64

    def reward(self, unit_id: str, variant: str) -> float:
        rate = self.base_rate + (0.0 if variant == CHAMPION else self.lift)
        return 1.0 if self.uniform(unit_id) < rate else 0.0


def known_lift(cfg: Config) -> KnownLift | None:
    """The config's known truth, or None when rewards come from the models' predictions."""
    sim = cfg.simulator
    if sim.true_lift is None:
        return None
    return KnownLift(sim.true_lift, sim.base_rate, cfg.experiment.seed)


def check_loopback(url: str) -> None:
    """Refuse to send synthetic traffic anywhere but this machine."""
    host = urlparse(url).hostname or ""
    if host not in LOOPBACK_HOSTS:
        raise ConfigError(f"simulator: router url {url!r} is not a loopback address (127.0.0.1)")


def users_from_frame(
    df: Any, id_column: str, target_column: str, feature_columns: list[str]
) -> list[User]:
    """Holdout rows -> users (a pure helper; the frame is pandas)."""
    missing = [c for c in [id_column, target_column, *feature_columns] if c not in df.columns]
    if missing:
        raise ConfigError(f"simulator: holdout is missing columns {missing}")
    records = df[feature_columns].to_dict(orient="records")
    ids = df[id_column].astype(str).tolist()
    labels = df[target_column].astype(int).tolist()
    return [User(u, _plain(r), y) for u, r, y in zip(ids, records, labels, strict=True)]


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    """numpy scalars -> JSON-native values; a missing value (NaN, NA) -> null."""
    from pipeline_components.preprocess import is_missing

    return {k: None if is_missing(v) else (v.item() if hasattr(v, "item") else v)
            for k, v in row.items()}


def refusal_reason(response: httpx.Response) -> str:
    """``HTTP 422: features.sex: null not allowed`` (the router's detail, names the field)."""
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    text = str(detail or response.reason_phrase or "")
    return f"HTTP {response.status_code}: {text.split(' (')[0][:120]}"


class _Pacer:
    """Spreads request starts evenly at ``rate`` per second (shared by all workers)."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = time.monotonic()
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(self._next, now) + self._interval
        if delay > 0:
            await asyncio.sleep(delay)


async def _one_user(
    http: httpx.AsyncClient, user: User, delay_s: float, res: SimulationResult,
    truth: KnownLift | None = None,
) -> None:
    res.sent += 1
    try:
        r = await http.post("/predict", json={"unit_id": user.unit_id, "features": user.features})
        if 400 <= r.status_code < 500:  # refused: say why, the canary and the report count it
            why = refusal_reason(r)
            res.refused[why] = res.refused.get(why, 0) + 1
        r.raise_for_status()
        body = r.json()
    except (httpx.HTTPError, ValueError):
        res.http_errors += 1
        return
    res.answered += 1
    variant = str(body.get("variant"))
    res.per_variant[variant] = res.per_variant.get(variant, 0) + 1
    reward = (truth.reward(user.unit_id, variant) if truth is not None
              else reward_of(float(body["prediction"]), user.label))
    res.reward_sum += reward
    res.reward_per_variant[variant] = res.reward_per_variant.get(variant, 0.0) + reward
    if delay_s > 0:
        await asyncio.sleep(delay_s)
    fb = {"request_id": body["request_id"], "unit_id": user.unit_id,
          "outcome": float(user.label), "reward": reward}
    try:
        (await http.post("/feedback", json=fb)).raise_for_status()
        res.feedback_sent += 1
    except httpx.HTTPError:
        res.http_errors += 1


async def _run(
    urls: list[str], users: list[User], rate: float, concurrency: int, delay_s: float,
    timeout_s: float, on_done: Any, client_key: str | None = None,
    truth: KnownLift | None = None,
) -> SimulationResult:
    res = SimulationResult(started_at=time.time(),
                           true_lift=truth.lift if truth is not None else None)
    queue: asyncio.Queue[tuple[int, User]] = asyncio.Queue()
    for i, u in enumerate(users):
        queue.put_nowait((i, u))
    pacer = _Pacer(rate)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"X-ABX-Client-Key": client_key} if client_key else {}
    async with contextlib.AsyncExitStack() as stack:
        # one client per replica; user i goes to replica i mod n (its outcome too), so every
        # replica gets the same share, as behind a round-robin load balancer
        https = [await stack.enter_async_context(httpx.AsyncClient(
            base_url=u, timeout=timeout_s, limits=limits, headers=headers)) for u in urls]

        async def worker() -> None:
            while not queue.empty():
                i, user = queue.get_nowait()
                await pacer.wait()
                await _one_user(https[i % len(https)], user, delay_s, res, truth)
                on_done()

        t0 = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(min(concurrency, max(len(users), 1)))))
        res.duration_s = time.monotonic() - t0
    return res


def _url_list(url: str | Sequence[str]) -> list[str]:
    urls = [url] if isinstance(url, str) else list(url)
    if not urls:
        raise ConfigError("simulator: no endpoint url given")
    return [u.rstrip("/") for u in urls]


def simulate_users(
    url: str | Sequence[str],
    users: Iterable[User],
    *,
    rate_per_s: float,
    concurrency: int,
    feedback_delay_s: float = 0.0,
    timeout_s: float = 10.0,
    progress: bool = True,
    label: str = "traffic",
    client_key: str | None = None,
    allow_remote: bool = False,
    truth: KnownLift | None = None,
) -> SimulationResult:
    """Send each user's request at ``rate_per_s`` with at most ``concurrency`` in flight.

    ``url`` may list several replicas of one endpoint: users are spread over them round-robin.
    ``client_key`` goes with every /feedback (the endpoint refuses outcomes without it).
    ``truth`` draws rewards with a known lift instead of scoring the served predictions.
    Synthetic traffic goes to loopback only unless ``allow_remote`` says otherwise.

    Raises:
        ConfigError: a url is not loopback. DeploymentError: nothing at all was answered.
    """
    urls = _url_list(url)
    if not allow_remote:
        for u in urls:
            check_loopback(u)
    batch = list(users)
    if not batch:
        return SimulationResult(started_at=time.time())
    from rich.progress import Progress  # only the simulator draws one

    with Progress(disable=not progress, transient=False) as bar:
        task = bar.add_task(label, total=len(batch))
        res = asyncio.run(
            _run(urls, batch, rate_per_s, concurrency, feedback_delay_s, timeout_s,
                 lambda: bar.advance(task), client_key, truth)
        )
    if res.answered == 0:
        raise DeploymentError(f"simulator: router at {', '.join(urls)} answered none of "
                              f"{res.sent} requests")
    return res


def requests_for_step(share: float, min_per_arm: int, cap: int) -> int:
    """Requests one ramp step needs so the smaller arm expects ``min_per_arm`` users (capped)."""
    smaller = min(share, 1.0 - share) if share < 1.0 else 1.0
    need = math.ceil(round(min_per_arm / max(smaller, 1e-9) * 1.1, 6))
    return max(1, min(need, cap))


def load_users(cfg: Config) -> list[User]:
    """The holdout split as simulated users, in file order (deterministic for a seed)."""
    from pipeline_components.features import feature_columns, load_split

    df = load_split(cfg, "holdout")
    return users_from_frame(df, cfg.data.id_column, cfg.data.target_column, feature_columns(cfg))


def take(users: list[User], offset: int, n: int) -> list[User]:
    """``n`` users from ``offset``, wrapping around (a step never runs out of traffic)."""
    if not users:
        return []
    return [users[(offset + i) % len(users)] for i in range(n)]


def simulate(
    cfg: Config, url: str | Sequence[str], *, offset: int = 0, n: int | None = None,
    progress: bool = True, allow_remote: bool = False,
) -> dict[str, Any]:
    """Entry point (``abx simulate``): replay ``n`` holdout users from ``offset`` at the config's
    rate and concurrency, spread over the replica ``url``s; returns the JSON-able result plus
    the next offset."""
    from pipeline_components.serving.keys import endpoint_secret

    users = load_users(cfg)
    n = cfg.simulator.max_requests if n is None else n
    sim = cfg.simulator
    res = simulate_users(
        url, take(users, offset, n), rate_per_s=sim.rate_per_s, concurrency=sim.concurrency,
        feedback_delay_s=sim.feedback_delay_s, timeout_s=sim.timeout_s, progress=progress,
        client_key=endpoint_secret(cfg, "client_key"), allow_remote=allow_remote,
        truth=known_lift(cfg),
    )
    return {**res.to_dict(), "offset": offset, "next_offset": offset + n}
