"""The two registry aliases an experiment is about, named once for every layer.

``champion`` is the model serving users (the control arm of every comparison, the router's
default variant); ``challenger`` is the candidate under test. They are MLflow registry aliases
(``models:/NAME@champion``), router variant names and the control/treatment labels in the
prediction log, so one spelling must serve all of them.
"""

from __future__ import annotations

CHAMPION = "champion"
CHALLENGER = "challenger"
