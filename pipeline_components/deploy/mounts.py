"""Which host directories a router container needs, mounted at the same absolute path.

The router reads its params, the tracking store (to resolve ``models:/`` URIs), the model
artifacts, and writes the prediction log. With the default SQLite stores these are files: the
state dir, the directories of the SQLite files and each model's artifact directory (resolved on
the host through MLflow), all read-write: MLflow writes ``registered_model_meta`` into a local
model directory when it loads a registered model. A PostgreSQL or HTTP store needs no mount.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlparse

from pipeline_components.config import Config
from pipeline_components.serving.variants import default_variants


def sqlite_dir(url: str) -> Path | None:
    """The directory of a ``sqlite:///ABS/PATH`` URL, None for any other store."""
    if not url.startswith("sqlite:///"):
        return None
    return Path(url[len("sqlite:///"):].split("?")[0]).resolve().parent


def model_dirs(cfg: Config, variants: Mapping[str, str] | None) -> list[Path]:
    """Local artifact directories of the ``models:/`` variants (unresolvable ones are skipped:
    the router itself then fails fast with an error naming the URI)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=cfg.tracking_uri, registry_uri=cfg.tracking_uri)
    out = []
    for uri in dict(variants or default_variants(cfg.registry.model_name)).values():
        if not uri.startswith("models:/"):
            continue
        name, _, ref = uri[len("models:/"):].partition("@")
        try:
            if ref:
                version = client.get_model_version_by_alias(name, ref).version
            else:
                name, _, version = uri[len("models:/"):].partition("/")
            location = client.get_model_version_download_uri(name, version)
        except Exception:
            continue
        parsed = urlparse(location)
        if parsed.scheme in ("", "file"):
            out.append(Path(unquote(parsed.path)).resolve())
    return out


def artifact_roots(cfg: Config) -> list[Path]:
    """Local artifact locations of every experiment in the tracking store.

    An endpoint loads models long after it started (each experiment's challenger), so its
    container cannot be given just today's model directories: it gets the roots every logged
    model lives under. An HTTP tracking server that proxies artifacts needs none.
    """
    from mlflow import MlflowClient

    if cfg.tracking_uri.startswith(("http://", "https://")):
        return []
    client = MlflowClient(tracking_uri=cfg.tracking_uri, registry_uri=cfg.tracking_uri)
    out = []
    for exp in client.search_experiments():
        parsed = urlparse(exp.artifact_location or "")
        if parsed.scheme in ("", "file") and parsed.path:
            out.append(Path(unquote(parsed.path)).resolve())
    return out


def host_mounts(cfg: Config, variants: Mapping[str, str] | None,
                router_dir: Path, extra: list[Path] | None = None) -> dict[str, dict[str, str]]:
    """docker-py ``volumes``: ``{host_path: {"bind": host_path, "mode": "rw"}}``, nested paths
    folded into their parent."""
    paths = [cfg.state_dir.resolve(), router_dir.resolve(), *model_dirs(cfg, variants)]
    paths += [p for p in (sqlite_dir(cfg.tracking_uri), sqlite_dir(cfg.store_url)) if p]
    paths += extra or []
    mounts: dict[str, dict[str, str]] = {}
    for path in sorted(set(paths), key=lambda p: len(p.parts)):
        if any(Path(m) in path.parents for m in mounts):
            continue  # already inside a mounted directory
        path.mkdir(parents=True, exist_ok=True)
        mounts[str(path)] = {"bind": str(path), "mode": "rw"}
    return mounts


def endpoint_mounts(cfg: Config, endpoint_dir: Path) -> dict[str, dict[str, str]]:
    """An endpoint replica's mounts: the router's plus every artifact root (models are loaded
    after the container started)."""
    return host_mounts(cfg, None, endpoint_dir, artifact_roots(cfg))
