"""Local backend edge cases and a remote (HTTP) variant behind the router."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pipeline_components.config import Config
from pipeline_components.deploy import LocalBackend, RouterClient
from pipeline_components.errors import DeploymentError
from pipeline_components.serving.testing import TEST_TOKEN, ThreadServer


def test_one_backend_factory_names_what_it_has() -> None:
    from pipeline_components.deploy import get_backend

    assert isinstance(get_backend("local"), LocalBackend)
    with pytest.raises(DeploymentError, match=r"unknown backend 'k8s' \(have: local, docker\)"):
        get_backend("k8s")


def test_start_fails_fast_naming_a_missing_alias(make_cfg: Callable[..., Config]) -> None:
    cfg = make_cfg({"experiment.id": "bad-alias"})
    backend = LocalBackend()
    variants = {"champion": "models:/abx-model@champion", "challenger": "models:/abx-model@nope"}
    with pytest.raises(DeploymentError, match="abx-model@nope"):
        backend.start(cfg, variants, timeout_s=90)
    assert backend.find("bad-alias", cfg) == []  # nothing left running


def test_remote_variant_is_forwarded(
    make_cfg: Callable[..., Config], rows: list[dict[str, Any]]
) -> None:
    # A: a router serving only v1, used as a remote model server by B.
    cfg_a = make_cfg({"experiment.id": "remote-a", "serving.weights": {"champion": 1.0}})
    backend = LocalBackend()
    dep = backend.start(cfg_a, {"champion": "models:/abx-model/1"})
    cfg_b = make_cfg({"experiment.id": "remote-b",
                      "serving.weights": {"champion": 0.5, "challenger": 0.5}})
    server = ThreadServer(cfg_b, {"champion": dep.url,
                                  "challenger": "models:/abx-model@challenger"}).start()
    try:
        with RouterClient(server.url, TEST_TOKEN) as b, RouterClient(dep.url, TEST_TOKEN) as a:
            direct = a.predict("u1", rows[0])
            via = b.predict("u1", rows[0], variant="champion")
            assert via["model_version"] == "1" and via["variant"] == "champion"
            assert via["prediction"] == pytest.approx(direct["prediction"], rel=1e-12)
            assert b.predict("u1", rows[0], variant="challenger")["model_version"] == "2"
            assert b.status()["variants"]["champion"]["path"] == "remote"
    finally:
        server.stop()
        backend.stop(dep)
