"""abx: rapid, safe A/B experiments for machine-learning models in production.

One module (or small package) per pipeline stage; Airflow tasks, DVC stages and the ``abx`` CLI
all call the same entry points.
"""

__version__ = "0.1.0"
