"""Write an inferred schema into params.yaml, keeping every other key and comment as it was.

ruamel.yaml's round-trip mode keeps the file's comments, key order and formatting; only the
``data`` keys that describe the table and ``validation.columns`` are replaced, each inferred
value with a comment saying what was observed (review them, then commit the file).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from pipeline_components.errors import ConfigError
from pipeline_components.schema import Schema

HEADER = ("# abx parameters (written by `abx init`; every other knob has its default, see the "
          "project's params.yaml)\n")


def _yaml() -> Any:
    from ruamel.yaml import YAML

    y = YAML()  # round-trip: comments and order survive
    y.preserve_quotes = True
    y.width = 100
    y.indent(mapping=2, sequence=4, offset=2)
    y.representer.add_representer(  # keep params.yaml's explicit `null`, not an empty value
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    return y


def _flow(items: list[Any]) -> Any:
    from ruamel.yaml.comments import CommentedSeq

    seq = CommentedSeq(items)
    seq.fa.set_flow_style()
    return seq


def _map() -> Any:
    from ruamel.yaml.comments import CommentedMap

    return CommentedMap()


def _section(doc: Any, key: str) -> Any:
    if key not in doc or doc[key] is None:
        doc[key] = _map()
    return doc[key]


def apply_schema(doc: Any, schema: Schema, data_path: str) -> None:
    """Put the schema into a round-trip document (``data`` keys and ``validation.columns``)."""
    data = _section(doc, "data")
    data["source"] = "file"
    data["path"] = data_path
    data["id_column"] = schema.id_column
    data["target_column"] = schema.target_column
    data["covariate_column"] = schema.covariate_column
    numeric = schema.by_role("numeric")
    data["numeric_features"] = _flow([c.name for c in numeric])
    cats = _map()
    for c in schema.by_role("categorical"):
        cats[c.name] = _flow(list(c.categories))
        cats.yaml_add_eol_comment(c.note, c.name)
    data["categorical_features"] = cats
    ignored = [f"{c.name} ({c.note.removeprefix('ignored: ')})" for c in schema.by_role("ignored")]
    if ignored:
        data.yaml_add_eol_comment("not features: " + "; ".join(ignored), "numeric_features")
    rules = _map()
    for c in schema.columns:
        if c.role not in ("numeric", "covariate", "categorical"):
            continue
        rule = _map()
        if c.range is not None:
            rule["range"] = _flow(list(c.range))
        rule["max_null_fraction"] = c.max_null_fraction
        if c.capped:
            rule["other"] = True
        rules[c.name] = rule
        rules.yaml_add_eol_comment(c.note, c.name)
    _section(doc, "validation")["columns"] = rules


def write_schema(params: str | Path, schema: Schema, data_path: str) -> Path:
    """Write ``schema`` into the params file (created if missing); returns its path.

    The result is loaded back through the typed config before anything is written, so a
    proposal the config would reject never reaches the file.
    """
    from pipeline_components.config import config_from_mapping

    path = Path(params)
    y = _yaml()
    text = path.read_text() if path.is_file() else HEADER
    doc = y.load(text) or _map()
    if not hasattr(doc, "yaml_add_eol_comment"):
        raise ConfigError(f"{path}: top level must be a mapping")
    apply_schema(doc, schema, data_path)
    buf = io.StringIO()
    y.dump(doc, buf)
    out = buf.getvalue()
    import yaml

    config_from_mapping(yaml.safe_load(out), source=str(path))  # ConfigError names the key
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(out)
    tmp.replace(path)
    return path
