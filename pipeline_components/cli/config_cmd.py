"""`abx config`: print the effective configuration (params.yaml + overrides) as YAML."""

from __future__ import annotations

import yaml

from pipeline_components.cli._app import ParamsOpt, SetOpt, app, load


@app.command("config")
def show_config(params: ParamsOpt = "params.yaml", set_: SetOpt = None) -> None:  # type: ignore[assignment]
    """Print the effective, validated config (params.yaml + --set overrides)."""
    cfg = load(params, set_)
    print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), end="")
