"""Secrets stay secret: `abx config` and the config's repr never show the tokens."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline_components.config import load_config

SECRET = "s3cret-token-do-not-print"


def test_abx_config_redacts_tokens(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", "from pipeline_components.cli import main; main()", "config",
         "--params", str(Path(__file__).parents[1] / "params.yaml"),
         "--set", f"serving.admin_token={SECRET}", "--set", f"serving.qa_token={SECRET}-qa"],
        capture_output=True, text=True, timeout=120, check=True).stdout
    assert SECRET not in out and "admin_token: '**********'" in out


def test_secret_is_usable_but_not_in_repr() -> None:
    cfg = load_config(None, {"serving.admin_token": SECRET})
    assert cfg.serving.admin_token is not None
    assert cfg.serving.admin_token.get_secret_value() == SECRET
    assert SECRET not in repr(cfg) and SECRET not in str(cfg.model_dump(mode="json"))

