"""Drift check on 500,000 reference + 500,000 current rows (20 numeric, 5 categorical columns):
the pack vs plain per-column scipy vs Evidently's DataDriftPreset, on the same Parquet files.

Seven columns are shifted on purpose (a 0.15-sigma mean shift, a 1.25x spread, a missing share
going from 3% to 12%, Poisson 3 -> 3.5, a bimodal mix 50/50 -> 40/60, a 10-point category mix
shift, a new category at 5% of rows). num_01 moves by 0.01 sigma: real but negligible, below
every effect minimum, so it must not be flagged; the other 17 columns do not move at all.

Each contender runs as a fresh process reading the two Parquet files; its wall time covers the
whole process (interpreter start, imports, reading, profiling the reference, the check) and its
peak memory is the process's ru_maxrss (os.wait4). All of them read Parquet with pyarrow, no
pre-buffering, converting to pandas with self_destruct + split_blocks. Each contender first
runs once, untimed, on 20,000-row files, so every process starts with a warm bytecode cache.

The pack builds the reference profile, serialises and reloads it (as registration and the
drift DAG do), checks and renders the HTML report. Plain scipy runs ks_2samp,
wasserstein_distance, chi2_contingency, jensenshannon and false_discovery_control on the full
columns, with the pack's decision rule on top (missing shares of numeric columns are not
tested there). Evidently 0.7 runs in its own venv (benchmarks/.evidently-venv, made from
benchmarks/evidently/requirements.txt when missing): it does not import under pandas 3.

    .venv/bin/python benchmarks/drift_check.py [--rows 500000] [--repeat 1] [--no-evidently]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
EVIDENTLY_DIR = PROJECT / "benchmarks" / "evidently"
EVIDENTLY_VENV = PROJECT / "benchmarks" / ".evidently-venv"
TARGET_SPEEDUP = 20.0
TARGET_MEMORY_FRACTION = 1 / 3

NUMERIC = [f"num_{i:02d}" for i in range(20)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]
SHIFTED = {
    "num_00": "normal, mean +0.15 sd",
    "num_03": "normal, sd x1.25",
    "num_08": "exponential, missing 3% -> 12%",
    "num_12": "Poisson 3 -> 3.5",
    "num_16": "bimodal mix 50/50 -> 40/60",
    "cat_0": "a/b/c 50/30/20 -> 40/40/20",
    "cat_2": "new category at 5%",
}
NEGLIGIBLE = {"num_01": "normal, mean +0.01 sd (negligible: must not be flagged)"}


# --------------------------------------------------------------------------------------------
# Data


def make_frame(rows: int, seed: int, shifted: bool):
    """One data set; `shifted` applies the planned shifts (and the negligible one)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    s = shifted
    cols: dict[str, object] = {}
    cols["num_00"] = rng.normal(0.15 if s else 0.0, 1.0, rows)
    cols["num_01"] = rng.normal(5.0 + (0.02 if s else 0.0), 2.0, rows)
    cols["num_02"] = rng.normal(-3.0, 0.5, rows)
    cols["num_03"] = rng.normal(0.0, 1.25 if s else 1.0, rows)
    cols["num_04"] = np.round(rng.normal(100.0, 15.0, rows))
    cols["num_05"] = rng.lognormal(0.0, 0.75, rows)
    cols["num_06"] = rng.lognormal(1.0, 0.5, rows)
    cols["num_07"] = rng.lognormal(0.0, 1.0, rows)
    x = rng.exponential(1.0, rows)
    x[rng.random(rows) < (0.12 if s else 0.03)] = np.nan
    cols["num_08"] = x
    cols["num_09"] = rng.exponential(2.0, rows)
    cols["num_10"] = rng.uniform(0.0, 1.0, rows)
    cols["num_11"] = rng.uniform(-5.0, 5.0, rows)
    cols["num_12"] = rng.poisson(3.5 if s else 3.0, rows).astype(np.float64)
    cols["num_13"] = rng.poisson(10.0, rows).astype(np.float64)
    cols["num_14"] = rng.poisson(0.5, rows).astype(np.float64)
    cols["num_15"] = rng.gamma(2.0, 1.0, rows)
    upper = rng.random(rows) < (0.6 if s else 0.5)
    cols["num_16"] = np.where(upper, 2.0, -2.0) + rng.normal(0.0, 1.0, rows)
    cols["num_17"] = rng.standard_t(5, rows)
    cols["num_18"] = rng.beta(2.0, 5.0, rows)
    y = rng.normal(0.0, 1.0, rows)
    y[rng.random(rows) < 0.05] = np.nan
    cols["num_19"] = y
    cols["cat_0"] = rng.choice(
        np.array(["a", "b", "c"]), rows, p=[0.4, 0.4, 0.2] if s else [0.5, 0.3, 0.2]
    )
    w1 = np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.07, 0.05, 0.03])
    cols["cat_1"] = rng.choice(np.array([f"k{i}" for i in range(8)]), rows, p=w1)
    w2 = np.array([0.35, 0.25, 0.2, 0.15, 0.05])
    names2 = [f"v{i}" for i in range(5)]
    if s:
        w2, names2 = np.append(w2 * 0.95, 0.05), [*names2, "new"]
    cols["cat_2"] = rng.choice(np.array(names2), rows, p=w2)
    c3 = rng.choice(np.array(["yes", "no"]), rows, p=[0.7, 0.3]).astype(object)
    c3[rng.random(rows) < 0.02] = None
    cols["cat_3"] = c3
    w4 = np.random.default_rng(99).dirichlet(np.full(40, 2.0))
    cols["cat_4"] = rng.choice(np.array([f"c{i:02d}" for i in range(40)]), rows, p=w4)
    df = pd.DataFrame(cols)
    for c in CATEGORICAL:
        df[c] = df[c].astype("str").where(df[c].notna())
    return df


# --------------------------------------------------------------------------------------------
# Workers (each runs in a fresh process)


def read(path: str):
    """Parquet -> pandas, memory-frugal (the same reader settings for every contender)."""
    import pandas as pd

    return pd.read_parquet(
        path, pre_buffer=False, to_pandas_kwargs={"self_destruct": True, "split_blocks": True}
    )


def worker_pack(ref_path: str, cur_path: str) -> dict:
    from airmlops_core.drift import report as drift_report
    from airmlops_core.stats.drift import check_drift
    from airmlops_core.stats.profile import ReferenceProfile, build_reference

    t0 = time.perf_counter()
    stages: dict[str, float] = {}

    def lap(name: str) -> None:
        stages[name] = time.perf_counter() - t0 - sum(stages.values())

    ref = read(ref_path)
    lap("read reference")
    profile = build_reference(ref, numeric=NUMERIC, categorical=CATEGORICAL)
    del ref
    lap("profile")
    blob = profile.to_bytes()
    profile = ReferenceProfile.from_bytes(blob)
    lap("serialise + reload")
    cur = read(cur_path)
    lap("read current")
    result = check_drift(profile, cur)
    lap("check")
    html = drift_report.render_report(result, title="benchmark")
    lap("report")
    return {
        "drifted": result.drifted,
        "stages": stages,
        "profile_mib": len(blob) / 2**20,
        "report_kib": len(html) / 1024,
        "compute_seconds": time.perf_counter() - t0,
        "p_below_005": [
            c.column for c in result.columns if c.p_value is not None and c.p_value < 0.05
        ],
    }


def worker_scipy(ref_path: str, cur_path: str) -> dict:
    """Plain per-column scipy on the full columns; the pack's decision rule on top."""
    import numpy as np
    import pandas as pd
    from scipy import stats
    from scipy.spatial.distance import jensenshannon

    from airmlops_core.stats.distribution import psi
    from airmlops_core.stats.verdict import DriftConfig

    t0 = time.perf_counter()
    ref, cur = read(ref_path), read(cur_path)
    cfg = DriftConfig()
    names, pvals, large = [], [], []
    for c in NUMERIC:
        a, b = ref[c].dropna().to_numpy(), cur[c].dropna().to_numpy()
        p = stats.ks_2samp(a, b).pvalue
        w = stats.wasserstein_distance(a, b) / a.std()
        edges = np.unique(np.quantile(a, np.arange(1, 10) / 10, method="inverted_cdf"))
        ra = np.bincount(np.searchsorted(edges, a), minlength=edges.size + 1)
        rb = np.bincount(np.searchsorted(edges, b), minlength=edges.size + 1)
        names.append(c)
        pvals.append(p)
        large.append(w >= cfg.min_wasserstein or psi(ra, rb) >= cfg.min_psi)
    for c in CATEGORICAL:
        vc = pd.concat(
            [
                ref[c].value_counts(dropna=False).rename("r"),
                cur[c].value_counts(dropna=False).rename("c"),
            ],
            axis=1,
        ).fillna(0)
        table = vc.to_numpy().T
        p = stats.chi2_contingency(table).pvalue
        js = jensenshannon(table[0], table[1], base=2)
        names.append(c)
        pvals.append(p)
        large.append(js >= cfg.min_js or psi(table[0], table[1]) >= cfg.min_psi)
    adjusted = stats.false_discovery_control(pvals, method="bh")
    drifted = [n for n, q, big in zip(names, adjusted, large, strict=True) if q <= cfg.fdr and big]
    return {
        "drifted": drifted,
        "compute_seconds": time.perf_counter() - t0,
        "p_below_005": [n for n, p in zip(names, pvals, strict=True) if p < 0.05],
    }


# --------------------------------------------------------------------------------------------
# Driver


def evidently_python() -> Path:
    """The venv's interpreter; the venv is created from requirements.txt when missing."""
    python = EVIDENTLY_VENV / "bin" / "python"
    if not python.exists():
        print(
            f"creating {EVIDENTLY_VENV} (pip install -r {EVIDENTLY_DIR / 'requirements.txt'})",
            flush=True,
        )
        venv.create(EVIDENTLY_VENV, with_pip=True)
        (EVIDENTLY_VENV / ".gitignore").write_text("*\n")
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "-r",
                str(EVIDENTLY_DIR / "requirements.txt"),
            ],
            check=True,
        )
    return python


def run_process(cmd: list[str], env: dict[str, str]) -> dict:
    """Run `cmd`; its last stdout line is JSON. Adds wall seconds and peak RSS (MiB)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=PROJECT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}):\n{stderr[-3000:]}")
    info = json.loads(stdout.strip().splitlines()[-1])
    info.update(wall_seconds=wall, peak_mib=usage.ru_maxrss / 1024)
    return info


def verdicts(drifted: list[str]) -> tuple[list[str], list[str]]:
    missed = [c for c in SHIFTED if c not in drifted]
    false = [c for c in drifted if c not in SHIFTED]
    return missed, false


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--repeat", type=int, default=1, help="runs per contender (median taken)")
    ap.add_argument("--no-evidently", action="store_true")
    ap.add_argument("--worker", choices=["pack", "scipy"], help=argparse.SUPPRESS)
    ap.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        info = (worker_pack if args.worker == "pack" else worker_scipy)(*args.paths)
        info["self_peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(info))
        return 0

    with tempfile.TemporaryDirectory(prefix="drift-bench-") as tmp:
        ref_path, cur_path = Path(tmp) / "reference.parquet", Path(tmp) / "current.parquet"
        warm_ref, warm_cur = Path(tmp) / "warm_ref.parquet", Path(tmp) / "warm_cur.parquet"
        cols_path = Path(tmp) / "columns.json"
        t0 = time.perf_counter()
        make_frame(args.rows, 1, shifted=False).to_parquet(ref_path)
        make_frame(args.rows, 2, shifted=True).to_parquet(cur_path)
        make_frame(20_000, 3, shifted=False).to_parquet(warm_ref)
        make_frame(20_000, 4, shifted=True).to_parquet(warm_cur)
        cols_path.write_text(json.dumps({"numeric": NUMERIC, "categorical": CATEGORICAL}))
        # Every contender gets a warm bytecode cache, as an installed package has. (This
        # machine sets PYTHONDONTWRITEBYTECODE and the project venv holds no __pycache__:
        # without this, each process would compile pandas & co from source, ~2.5 s.)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(PYTHONPYCACHEPREFIX=str(Path(tmp) / "pycache"), PYTHONHASHSEED="0")
        print(
            f"data: {args.rows:,} reference + {args.rows:,} current rows, "
            f"{len(NUMERIC)} numeric + {len(CATEGORICAL)} categorical columns "
            f"({(ref_path.stat().st_size + cur_path.stat().st_size) / 2**20:.0f} MiB Parquet, "
            f"written in {time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
        me = [sys.executable, str(Path(__file__).resolve())]
        contenders: dict[str, list[str]] = {
            "airmlops drift": [*me, "--worker", "pack"],
            "plain scipy": [*me, "--worker", "scipy"],
        }
        if not args.no_evidently:
            contenders["Evidently 0.7"] = [
                str(evidently_python()),
                str(EVIDENTLY_DIR / "run_evidently.py"),
            ]
        tail = {"Evidently 0.7": [str(cols_path)]}
        results: dict[str, dict] = {}
        for name, cmd in contenders.items():
            run_process([*cmd, str(warm_ref), str(warm_cur), *tail.get(name, [])], env)
            full = [*cmd, str(ref_path), str(cur_path), *tail.get(name, [])]
            runs = [run_process(full, env) for _ in range(args.repeat)]
            runs.sort(key=lambda r: r["wall_seconds"])
            results[name] = runs[len(runs) // 2]
            print(f"  {name}: {results[name]['wall_seconds']:.1f} s", flush=True)

    base = results.get("Evidently 0.7")
    print()
    print(
        f"{'contender':<16} {'wall s':>7} {'work s':>7} {'peak MiB':>9} {'x faster':>9} "
        f"{'mem frac':>9} {'shifted found':>14}  missed / undrifted flagged"
    )
    for name, r in results.items():
        missed, false = verdicts(r["drifted"])
        speed = f"{base['wall_seconds'] / r['wall_seconds']:.1f}" if base else "-"
        mem = f"{r['peak_mib'] / base['peak_mib']:.2f}" if base else "-"
        work = r.get("compute_seconds", r.get("seconds", float("nan")))
        print(
            f"{name:<16} {r['wall_seconds']:>7.1f} {work:>7.1f} {r['peak_mib']:>9.0f} "
            f"{speed:>9} {mem:>9} {len(SHIFTED) - len(missed):>8}/{len(SHIFTED):<5}  "
            f"missed {missed or 'none'}; flagged {false or 'none'}"
        )
    print()
    print("shifted on purpose: " + "; ".join(f"{k} ({v})" for k, v in SHIFTED.items()))
    print("negligible shift: " + "; ".join(f"{k} ({v})" for k, v in NEGLIGIBLE.items()))
    for name in ("airmlops drift", "plain scipy"):
        print(f"{name}: raw p < 0.05 in {results[name]['p_below_005']}")
    pack = results["airmlops drift"]
    print(
        "airmlops stages (s): "
        + ", ".join(f"{k} {v:.2f}" for k, v in pack["stages"].items())
        + f"; profile {pack['profile_mib']:.1f} MiB, HTML report {pack['report_kib']:.0f} KiB"
    )
    if base:
        ev = base.get("columns", {})
        print("Evidently methods: " + ", ".join(sorted({v["method"] for v in ev.values()})))
        speedup = base["wall_seconds"] / pack["wall_seconds"]
        frac = pack["peak_mib"] / base["peak_mib"]
        missed, false = verdicts(pack["drifted"])
        ok = (
            speedup >= TARGET_SPEEDUP
            and frac <= TARGET_MEMORY_FRACTION
            and not missed
            and not false
        )
        print(
            f"targets (>= {TARGET_SPEEDUP:.0f}x faster, <= 1/3 of the memory, every shifted "
            f"column found, none undrifted flagged): {'MET' if ok else 'MISSED'} "
            f"({speedup:.1f}x, {frac:.2f} of the memory)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
