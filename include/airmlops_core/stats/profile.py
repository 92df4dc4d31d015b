"""The reference profile a drift check compares against: per column a compact summary of the
champion's reference data.

The profile is built once from the champion's training data when the model version is
registered (`build_reference`) and stored with the version (`ReferenceProfile.to_bytes`, a
small zip). A check (airmlops_core.stats.drift) then needs only the profile and the current
window. Per numeric column it keeps a sorted simple random sample of at most `sample_rows`
present values (the reference side of the KS test and the Wasserstein distance), the mean and
standard deviation, and quantile bins with full-reference counts (PSI); per categorical column
every category's count, up to a cap.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import zipfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from airmlops_core.errors import ProfileError
from airmlops_core.stats.columns import (
    category_counts,
    numeric_values,
    thread_map,
    worker_count,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

__all__ = [
    "PROFILE_ARTIFACT",
    "ROLES",
    "CategoricalProfile",
    "ColumnProfile",
    "NumericProfile",
    "ReferenceProfile",
    "build_reference",
]

PROFILE_FORMAT = "airmlops.drift_reference/1"
PROFILE_ARTIFACT = "drift_reference.zip"
"""Suggested artifact name of the profile, logged with the model version."""
ROLES: tuple[str, ...] = ("feature", "prediction", "label")


@dataclass(frozen=True, eq=False)
class NumericProfile:
    """A numeric column of the reference.

    Attributes:
        name: Column name.
        role: feature, prediction or label.
        n_rows: Reference rows.
        n_missing: Missing or non-finite values among them.
        mean: Mean of the present values (NaN when none).
        std: Population standard deviation of the present values: the Wasserstein spread.
        sample: Sorted simple random sample (without replacement) of the present values: the
            reference side of the KS test and the Wasserstein distance.
        edges: Interior PSI bin edges: the distinct reference quantiles at 1/bins, ...,
            (bins-1)/bins, each the smallest reference value with at least that share of the
            present values at or below it (numpy's "inverted_cdf"). Bin i holds the values in
            (edges[i-1], edges[i]].
        bin_counts: Full-reference count per bin (len(edges) + 1 bins).
    """

    name: str
    role: str
    n_rows: int
    n_missing: int
    mean: float
    std: float
    sample: np.ndarray
    edges: np.ndarray
    bin_counts: np.ndarray
    kind: str = field(default="numeric", init=False)

    @property
    def n_present(self) -> int:
        return self.n_rows - self.n_missing


@dataclass(frozen=True, eq=False)
class CategoricalProfile:
    """A categorical column of the reference: every category's count (up to a cap).

    Attributes:
        categories: Category keys (see `columns.category_key`), most frequent first.
        counts: Reference count per category.
        other: Rows in categories beyond the cap, lumped together (0 when nothing was capped).
            When non-zero, current values outside `categories` count as "other", not unseen.
    """

    name: str
    role: str
    n_rows: int
    n_missing: int
    categories: tuple[str, ...]
    counts: np.ndarray
    other: int = 0
    kind: str = field(default="categorical", init=False)


ColumnProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True, eq=False)
class ReferenceProfile:
    """What a drift check compares against: per column a compact summary of the reference.

    Store it with the model version (`to_bytes`, artifact `PROFILE_ARTIFACT`); it never needs the
    training data again.
    """

    columns: dict[str, ColumnProfile]
    n_rows: int
    sample_rows: int
    bins: int
    seed: int
    description: str = ""

    def names(self, roles: Collection[str] = ROLES) -> list[str]:
        """Profiled columns with one of `roles`, in profile order."""
        return [c for c, p in self.columns.items() if p.role in roles]

    def empty_frame(self) -> pd.DataFrame:
        """No rows, one column per profiled column with its kind's dtype: a window with no
        data, which checks as "not enough data"."""
        import pandas as pd

        return pd.DataFrame(
            {
                c: pd.Series(dtype="float64" if p.kind == "numeric" else "object")
                for c, p in self.columns.items()
            }
        )

    def merge(self, other: ReferenceProfile) -> ReferenceProfile:
        """Both profiles' columns (e.g. features from training data, predictions from the holdout).

        Raises:
            ProfileError: a column name is in both.
        """
        both = sorted(set(self.columns) & set(other.columns))
        if both:
            raise ProfileError(f"columns profiled twice: {both}")
        desc = "; ".join(d for d in (self.description, other.description) if d)
        return dataclasses.replace(
            self,
            columns={**self.columns, **other.columns},
            n_rows=max(self.n_rows, other.n_rows),
            description=desc,
        )

    # ---- serialisation: a zip of profile.json + one .npy per numeric sample

    def to_bytes(self) -> bytes:
        """The profile as a deflated zip: profile.json plus samples/<i>.npy (float64)."""
        meta: dict[str, Any] = {
            "format": PROFILE_FORMAT,
            "n_rows": self.n_rows,
            "sample_rows": self.sample_rows,
            "bins": self.bins,
            "seed": self.seed,
            "description": self.description,
            "columns": [],
        }
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for i, prof in enumerate(self.columns.values()):
                entry: dict[str, Any] = {
                    "name": prof.name,
                    "kind": prof.kind,
                    "role": prof.role,
                    "n_rows": prof.n_rows,
                    "n_missing": prof.n_missing,
                }
                if isinstance(prof, NumericProfile):
                    member = f"samples/{i}.npy"
                    arr = io.BytesIO()
                    np.save(
                        arr, np.ascontiguousarray(prof.sample, dtype=np.float64), allow_pickle=False
                    )
                    zf.writestr(member, arr.getvalue())
                    entry.update(
                        mean=_finite_or_none(prof.mean),
                        std=_finite_or_none(prof.std),
                        sample=member,
                        edges=prof.edges.tolist(),
                        bin_counts=prof.bin_counts.tolist(),
                    )
                else:
                    entry.update(
                        categories=list(prof.categories),
                        counts=prof.counts.tolist(),
                        other=prof.other,
                    )
                meta["columns"].append(entry)
            zf.writestr("profile.json", json.dumps(meta, indent=1))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes, *, source: str = "reference profile") -> ReferenceProfile:
        """Read `to_bytes` output; `source` names it in errors (e.g. the artifact URI).

        Raises:
            ProfileError: not a profile, another format version, or inconsistent content.
        """
        try:
            zf = zipfile.ZipFile(io.BytesIO(blob))
            meta = json.loads(zf.read("profile.json"))
        except (zipfile.BadZipFile, KeyError, ValueError) as exc:
            raise ProfileError(f"{source}: not a drift reference profile ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != PROFILE_FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else None
            raise ProfileError(f"{source}: format {found!r}, expected {PROFILE_FORMAT!r}")
        columns: dict[str, ColumnProfile] = {}
        with zf:
            for entry in meta.get("columns", []):
                name = entry.get("name")
                try:
                    prof = _column_from_entry(entry, zf)
                except (KeyError, TypeError, ValueError) as exc:
                    raise ProfileError(f"{source}: column {name!r}: {exc}") from None
                if prof.name in columns:
                    raise ProfileError(f"{source}: column {name!r} appears twice")
                columns[prof.name] = prof
        try:
            return cls(
                columns=columns,
                n_rows=int(meta["n_rows"]),
                sample_rows=int(meta["sample_rows"]),
                bins=int(meta["bins"]),
                seed=int(meta["seed"]),
                description=str(meta.get("description", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(f"{source}: profile.json lacks {exc}") from None

    def save(self, path: str | Path) -> Path:
        """Write `to_bytes` to a local file (temporary name, then rename)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(self.to_bytes())
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ReferenceProfile:
        """Read a profile written by `save` (or downloaded from MLflow)."""
        path = Path(path)
        try:
            blob = path.read_bytes()
        except OSError as exc:
            raise ProfileError(f"{path}: cannot read the reference profile: {exc}") from None
        return cls.from_bytes(blob, source=str(path))


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _column_from_entry(entry: dict[str, Any], zf: zipfile.ZipFile) -> ColumnProfile:
    name, role, kind = str(entry["name"]), str(entry["role"]), entry["kind"]
    n_rows, n_missing = int(entry["n_rows"]), int(entry["n_missing"])
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {list(ROLES)}")
    if not 0 <= n_missing <= n_rows:
        raise ValueError(f"n_missing {n_missing} outside 0..n_rows {n_rows}")
    if kind == "numeric":
        with zf.open(entry["sample"]) as fh:
            sample = np.load(io.BytesIO(fh.read()), allow_pickle=False)
        if sample.dtype != np.float64 or sample.ndim != 1:
            raise ValueError(f"sample must be 1-D float64, got {sample.dtype} {sample.shape}")
        if sample.size > n_rows - n_missing:
            raise ValueError(
                f"sample of {sample.size} values exceeds the {n_rows - n_missing} present values"
            )
        if not np.isfinite(sample).all() or (sample.size > 1 and (np.diff(sample) < 0).any()):
            raise ValueError("sample must be finite and sorted")
        edges = np.asarray(entry["edges"], dtype=np.float64)
        bin_counts = np.asarray(entry["bin_counts"], dtype=np.int64)
        if bin_counts.size != edges.size + 1 or bin_counts.sum() != n_rows - n_missing:
            raise ValueError("bin_counts do not match the edges and the present values")
        if edges.size > 1 and (np.diff(edges) <= 0).any():
            raise ValueError("edges must be strictly increasing")
        mean, std = entry.get("mean"), entry.get("std")
        return NumericProfile(
            name=name,
            role=role,
            n_rows=n_rows,
            n_missing=n_missing,
            mean=math.nan if mean is None else float(mean),
            std=math.nan if std is None else float(std),
            sample=sample,
            edges=edges,
            bin_counts=bin_counts,
        )
    if kind == "categorical":
        categories = tuple(str(c) for c in entry["categories"])
        counts = np.asarray(entry["counts"], dtype=np.int64)
        other = int(entry.get("other", 0))
        if len(set(categories)) != len(categories) or counts.size != len(categories):
            raise ValueError("categories must be distinct, one count each")
        if (counts < 0).any() or other < 0 or counts.sum() + other + n_missing != n_rows:
            raise ValueError("category counts + other + missing do not add up to n_rows")
        return CategoricalProfile(
            name=name,
            role=role,
            n_rows=n_rows,
            n_missing=n_missing,
            categories=categories,
            counts=counts,
            other=other,
        )
    raise ValueError(f"kind {kind!r} is neither numeric nor categorical")


def build_reference(
    df: pd.DataFrame,
    *,
    numeric: Sequence[str] = (),
    categorical: Sequence[str] = (),
    role: str = "feature",
    sample_rows: int = 50_000,
    bins: int = 10,
    max_categories: int = 1000,
    seed: int = 0,
    description: str = "",
    workers: int | None = None,
) -> ReferenceProfile:
    """Profile `df`'s columns for later drift checks.

    Build one profile per role and `merge` them: features and labels from the training data,
    predictions (`role="prediction"`) from the champion's output on its holdout (out-of-sample
    scores; in-sample scores of a flexible model are more extreme than production scores and
    would show as prediction drift).

    Args:
        df: The reference rows.
        numeric: Numeric columns: each keeps a sorted random sample of at most `sample_rows`
            present values, its mean and std, `bins` quantile bins with full-reference counts.
        categorical: Categorical columns: each keeps every category's count, the
            `max_categories` most frequent ones when there are more (the rest as "other").
        role: "feature", "prediction" or "label".
        sample_rows: Size of the stored sample per numeric column (KS/Wasserstein reference).
        bins: Number of PSI quantile bins for numeric columns.
        max_categories: Most categories stored per categorical column.
        seed: Seed of the sampling; column i of `numeric` is sampled with
            np.random.default_rng([seed, i]), so the profile does not depend on `workers`.
        description: Free text kept in the profile (e.g. the training data reference).
        workers: Threads for the per-column work (default: up to 4, the CPU count).

    Raises:
        ProfileError: a column is missing, listed twice or has the wrong type; bad sizes.
    """
    if role not in ROLES:
        raise ProfileError(f"role {role!r} is not one of {list(ROLES)}")
    if sample_rows < 1 or bins < 2 or max_categories < 1:
        raise ProfileError(
            f"need sample_rows >= 1, bins >= 2, max_categories >= 1; got "
            f"{sample_rows}, {bins}, {max_categories}"
        )
    names = [*numeric, *categorical]
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise ProfileError(f"columns listed twice: {dup}")
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise ProfileError(
            f"reference data lacks the columns {missing} (it has {list(df.columns)[:30]})"
        )
    if len(df) == 0:
        raise ProfileError("the reference data has no rows")
    for name in numeric:
        try:
            numeric_values(df[name].iloc[:0], name, "reference data")
        except ValueError as exc:
            raise ProfileError(str(exc)) from None

    def numeric_profile(item: tuple[int, str]) -> NumericProfile:
        i, name = item
        values = numeric_values(df[name], name, "reference data")
        return _profile_numeric(
            name, role, values, sample_rows, bins, np.random.default_rng([seed, i])
        )

    profiles = thread_map(numeric_profile, list(enumerate(numeric)), worker_count(workers))
    columns: dict[str, ColumnProfile] = {p.name: p for p in profiles}
    for name in categorical:
        counts, n_missing = category_counts(df[name])
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        kept, lumped = ordered[:max_categories], ordered[max_categories:]
        if lumped:
            log.warning(
                "reference column '%s' has %d categories; keeping the %d most frequent",
                name,
                len(ordered),
                max_categories,
            )
        columns[name] = CategoricalProfile(
            name=name,
            role=role,
            n_rows=len(df),
            n_missing=n_missing,
            categories=tuple(k for k, _ in kept),
            counts=np.array([v for _, v in kept], dtype=np.int64),
            other=int(sum(v for _, v in lumped)),
        )
    return ReferenceProfile(
        columns=columns,
        n_rows=len(df),
        sample_rows=sample_rows,
        bins=bins,
        seed=seed,
        description=description,
    )


def _profile_numeric(
    name: str, role: str, values: np.ndarray, sample_rows: int, bins: int, rng: np.random.Generator
) -> NumericProfile:
    present = values[np.isfinite(values)]
    present.sort()
    n_present = present.size
    if n_present > sample_rows:  # sorted positions of a simple random sample: already sorted
        sample = present[np.sort(rng.choice(n_present, size=sample_rows, replace=False))]
    else:
        sample = present
    if n_present:
        # the smallest value with at least i/bins of the present values at or below it
        idx = (n_present * np.arange(1, bins) + bins - 1) // bins - 1
        edges = np.unique(present[idx])
        cum = np.searchsorted(present, edges, side="right")
        bin_counts = np.diff(np.concatenate([[0], cum, [n_present]])).astype(np.int64)
        mean, std = float(present.mean()), float(present.std())
    else:
        edges, bin_counts = np.empty(0), np.zeros(1, dtype=np.int64)
        mean = std = math.nan
    return NumericProfile(
        name=name,
        role=role,
        n_rows=values.size,
        n_missing=values.size - n_present,
        mean=mean,
        std=std,
        sample=sample,
        edges=edges,
        bin_counts=bin_counts,
    )
