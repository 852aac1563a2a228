"""Real public tables that ship inside installed packages, as a user would bring them.

* penguins (palmerpenguins, Palmer Station LTER, CC0): 344 birds, text columns ``island`` and
  ``sex`` (11 real nulls), 2 rows with every measurement missing; the body mass is given in mg
  so one column has values above 1e6. Target: is the bird an Adelie penguin.
* cars (vega_datasets, the UCI Auto MPG data): 406 cars, real nulls in ``Miles_per_Gallon`` (8)
  and ``Horsepower`` (6), the free-text ``Name`` and its long-tailed first word ``brand`` (30+
  makers, many seen once or twice). Target: is the model year 1977 or later.
"""

from __future__ import annotations

import pandas as pd


def penguins() -> pd.DataFrame:
    from palmerpenguins import load_penguins

    df = load_penguins()
    df.insert(0, "penguin_id", [f"pg{i:04d}" for i in range(len(df))])
    df["adelie"] = (df.pop("species") == "Adelie").astype(int)
    df["body_mass_mg"] = df.pop("body_mass_g") * 1000.0
    return df


def cars() -> pd.DataFrame:
    from vega_datasets import local_data

    df = local_data.cars()
    df.insert(0, "car_id", [f"car{i:04d}" for i in range(len(df))])
    df["brand"] = df["Name"].str.split().str[0]
    df["recent"] = (df.pop("Year").dt.year >= 1977).astype(int)
    return df
