"""Cold start: the time to import each function's handler module in a fresh python3.13, beside a baseline
handler that imports only boto3, loaded from an artifact laid out as Lambda loads it.

The artifact is assembled locally as `sam build` would (no container runtime here, and `sam build`
would overwrite .aws-sam/ that others use): `pip install --target` of layers/shared/requirements.txt
plus the conversion_relay package as the layer (/opt/python), each function's app.py as /var/task,
and boto3 as the runtime's own copy (/var/runtime). Two variants of layer + task:
  - nopyc:   no .pyc and every file dated 1980-01-01, which is what SAM's zip ships; /var/task is
             read-only, so each cold start compiles every module it imports (-B: nothing is cached);
  - hashpyc: the same plus `compileall --invalidation-mode unchecked-hash`, what `make build` adds.
The runtime's boto3 is compiled (with timestamps) in both variants and for the baseline alike, on the
assumption that the managed runtime ships its own packages compiled; the ratio is fair either way.

Reported per function and variant: the median CPU time of the import (wall time beside it: on a
shared 2-core machine CPU time is the steadier estimate of what an idle Lambda sandbox spends) over
REPEATS fresh interpreters (runs interleaved
across functions, so drift hits all alike), the ratio to the baseline, the top packages by import
time (-X importtime, self time summed per top-level package) and any heavy optional module found
loaded (X-Ray SDK, pydantic, ...).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import common

FUNCTIONS = ("ingest", "ga4", "meta", "appsflyer")
BASELINE = "baseline"
REPEATS = 5
VARIANTS = ("nopyc", "hashpyc")
# Modules a handler should never load on its cold path unless asked to (tracing, validation, parsing).
HEAVY_OPTIONAL = (
    "aws_xray_sdk",
    "pydantic",
    "fastjsonschema",
    "jsonschema",
    "cfnlint",
    "moto",
    "yaml",
    "sympy",
)
SAM_ZIP_DATE = "1980-01-01 00:00:00"
BASELINE_APP = (
    '"""Baseline: a handler that imports only boto3."""\n\n'
    "import boto3\n\n\ndef handler(event, context):\n    return {}\n"
)
PROBE = (
    "import sys, time\n"
    "cpu, wall = time.process_time(), time.perf_counter()\n"
    "import app\n"
    "cpu, wall = time.process_time() - cpu, time.perf_counter() - wall\n"
    f"heavy = [m for m in {HEAVY_OPTIONAL!r} if m in sys.modules]\n"
    "print(cpu, wall, ','.join(heavy))\n"
)


def _pip_target(target: Path, *requirements: str) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-compile",
            "--disable-pip-version-check",
            "--target",
            str(target),
            *requirements,
        ],
        check=True,
    )


def _requirements() -> list[str]:
    lines = (common.LAYER / "requirements.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def _boto3_requirement() -> str:
    for line in (common.ROOT / "requirements-dev.txt").read_text().splitlines():
        if line.strip().startswith("boto3"):
            return line.strip()
    return "boto3"


def assemble(python: Path) -> dict[str, Path]:
    """build/bench/artifact/{runtime,deps,<variant>/{layer,task/<fn>}}; third-party installs are cached."""
    root = common.BUILD / "artifact"
    key = hashlib.sha256(("\n".join(_requirements()) + _boto3_requirement()).encode()).hexdigest()[:16]
    deps, runtime = root / f"deps-{key}", root / f"runtime-{key}"
    if not (deps / ".done").exists():
        shutil.rmtree(deps, ignore_errors=True)
        _pip_target(deps, *_requirements())
        (deps / ".done").touch()
    if not (runtime / ".done").exists():
        shutil.rmtree(runtime, ignore_errors=True)
        _pip_target(runtime, _boto3_requirement())
        subprocess.run([str(python), "-m", "compileall", "-q", str(runtime)], check=True)
        (runtime / ".done").touch()
    paths = {"runtime": runtime}
    for variant in VARIANTS:
        base = root / variant
        shutil.rmtree(base, ignore_errors=True)
        layer = base / "layer" / "python"
        shutil.copytree(deps, layer, ignore=shutil.ignore_patterns(".done", "__pycache__", "*.pyc"))
        shutil.copytree(
            common.LAYER / "conversion_relay",
            layer / "conversion_relay",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        for name in FUNCTIONS:
            task = base / "task" / name
            task.mkdir(parents=True)
            shutil.copy2(common.ROOT / "functions" / name / "app.py", task / "app.py")
        (base / "task" / BASELINE).mkdir(parents=True)
        (base / "task" / BASELINE / "app.py").write_text(BASELINE_APP)
        subprocess.run(["find", str(base), "-exec", "touch", "-h", "-d", SAM_ZIP_DATE, "{}", "+"], check=True)
        if variant == "hashpyc":
            subprocess.run(
                [str(python), "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", str(base)],
                check=True,
            )
        paths[variant] = base
    return paths


def _env(paths: dict[str, Path], variant: str, name: str) -> dict[str, str]:
    base = paths[variant]
    search = [base / "task" / name, base / "layer" / "python", paths["runtime"]]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(common.FUNCTION_ENV)
    env.update({"PYTHONPATH": os.pathsep.join(map(str, search)), "POWERTOOLS_SERVICE_NAME": name})
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # /var/task and /opt are read-only in Lambda
    return env


def _probe(python: Path, paths: dict[str, Path], variant: str, name: str) -> tuple[float, float, list[str]]:
    """(CPU seconds, wall seconds, heavy optional modules loaded) of `import app` in a fresh interpreter."""
    completed = subprocess.run(
        [str(python), "-s", "-B", "-c", PROBE],
        env=_env(paths, variant, name),
        cwd=paths[variant] / "task" / name,
        capture_output=True,
        text=True,
        check=True,
    )
    cpu, wall, *heavy = completed.stdout.split()
    return float(cpu), float(wall), [module for module in ",".join(heavy).split(",") if module]


def import_profile(
    python: Path, paths: dict[str, Path], variant: str, name: str
) -> tuple[dict[str, float], dict[str, float]]:
    """Self import time (ms) summed per top-level package, and per conversion_relay module, from one
    -X importtime run (the tracer inflates small modules; read it as where, not how much)."""
    completed = subprocess.run(
        [str(python), "-s", "-B", "-X", "importtime", "-c", "import app"],
        env=_env(paths, variant, name),
        cwd=paths[variant] / "task" / name,
        capture_output=True,
        text=True,
        check=True,
    )
    totals: dict[str, float] = {}
    own: dict[str, float] = {}
    seen_app = False
    for line in completed.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, module = (part.strip() for part in line[len("import time:") :].split("|"))
        package = module.split(".")[0]
        if package in sys.stdlib_module_names or package.startswith("_"):
            package = "(stdlib)"
        totals[package] = totals.get(package, 0.0) + int(self_us) / 1000
        if package == "conversion_relay":
            own[module] = int(self_us) / 1000
        seen_app = seen_app or module == "app"
    if not seen_app:
        raise RuntimeError(f"-X importtime did not show `app` for {name}/{variant}")
    totals.pop("app", None)

    def top(values: dict[str, float]) -> dict[str, float]:
        return dict(sorted(values.items(), key=lambda item: -item[1])[:6])

    return top(totals), top(own)


def run(repeats: int = REPEATS) -> dict[str, Any]:
    python = common.PYTHON313 if common.PYTHON313.exists() else Path(sys.executable)
    paths = assemble(python)
    names = (BASELINE, *FUNCTIONS)
    samples: dict[str, dict[str, list[float]]] = {v: {n: [] for n in names} for v in VARIANTS}
    walls: dict[str, dict[str, list[float]]] = {v: {n: [] for n in names} for v in VARIANTS}
    heavy: dict[str, list[str]] = {}
    # Untimed first runs (the profile, one probe) warm the file-system cache for every candidate alike.
    profiles = {name: import_profile(python, paths, "hashpyc", name) for name in names}
    for name in names:
        _probe(python, paths, "nopyc", name)
    for _ in range(repeats):
        for variant in VARIANTS:
            for name in names:
                cpu, wall, loaded = _probe(python, paths, variant, name)
                samples[variant][name].append(cpu * 1000)
                walls[variant][name].append(wall * 1000)
                heavy[name] = loaded
    medians = {v: {n: common.median(samples[v][n]) for n in names} for v in VARIANTS}
    functions: dict[str, Any] = {}
    for name in names:
        functions[name] = {
            "nopyc_ms": medians["nopyc"][name],
            "hashpyc_ms": medians["hashpyc"][name],
            "ratio_nopyc": medians["nopyc"][name] / medians["nopyc"][BASELINE],
            "ratio_hashpyc": medians["hashpyc"][name] / medians["hashpyc"][BASELINE],
            "pyc_speedup": medians["nopyc"][name] / medians["hashpyc"][name],
            "nopyc_wall_ms": common.median(walls["nopyc"][name]),
            "hashpyc_wall_ms": common.median(walls["hashpyc"][name]),
            "heavy_optional_loaded": heavy[name],
            "top_imports_hashpyc_ms": profiles[name][0],
            "top_own_modules_hashpyc_ms": profiles[name][1],
        }
    version = subprocess.run([str(python), "--version"], capture_output=True, text=True, check=True)
    return {
        "python": version.stdout.strip(),
        "repeats": repeats,
        "goal_ratio": 1.3,
        "baseline": BASELINE,
        "functions": functions,
    }


def main() -> None:
    result = run()
    target = common.out_path(sys.argv)
    if target:
        common.write_json(target, result)
    for name, row in result["functions"].items():
        print(
            f"cold start {name:>9}: no .pyc {row['nopyc_ms']:6.0f} ms ({row['ratio_nopyc']:.2f}x), hash .pyc "
            f"{row['hashpyc_ms']:6.0f} ms ({row['ratio_hashpyc']:.2f}x); heavy: "
            f"{', '.join(row['heavy_optional_loaded']) or 'none'}"
        )


if __name__ == "__main__":
    main()
