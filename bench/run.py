"""`make bench`: run every benchmark (each in its own process), price the result, write bench/results/.

Writes bench/results/<date>.md and bench/results/latest.md (commit-ready) and the raw numbers to
build/bench/results.json. Every figure sits beside a baseline measured in the same run; nothing is
asserted on a timing.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import common, cost

STEPS = (
    ("hashing", "bench.hashing"),
    ("ingest", "bench.ingest_overhead"),
    ("consumers", "bench.consumer_throughput"),
    ("cold_start", "bench.cold_start"),
)


def _run_step(module: str, out: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": f"{common.LAYER}{os.pathsep}{common.ROOT}", "PYTHONWARNINGS": "ignore"}
    subprocess.run([sys.executable, "-m", module, "--out", str(out)], check=True, cwd=common.ROOT, env=env)
    return common.read_json(out)


def _load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "unknown"


def _money(value: float) -> str:
    return f"${value:,.2f}" if value >= 1 else f"${value:.4f}"


def _ratio(value: float) -> str:
    return f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def render(results: dict[str, Any], priced: dict[str, Any], meta: dict[str, Any]) -> str:
    m = meta["machine"]
    lines = [
        f"# Benchmark results, {meta['date']}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['arch']}, {m['os']}); bench venv Python {m['python']}, "
        f"cold starts with {results['cold_start']['python']}. Load average at start {meta['load_start']}, "
        f"at end {meta['load_end']} (other work shared the machine: compare ratios, not absolute times). "
        f"`make bench` took {meta['seconds']:.0f} s.",
        "",
        "## Cold start (import of the handler module in a fresh interpreter)",
        "",
        "Artifact assembled as `sam build` lays it out (layer = `pip install --target` of the layer"
        " requirements"
        " + conversion_relay, task = app.py, runtime boto3 compiled), every file dated 1980-01-01 as SAM's"
        " zip"
        " does; `-B` because /var/task is read-only. Median CPU ms of "
        f"{results['cold_start']['repeats']} runs; ratio to a handler that imports only boto3, same variant."
        f" Goal: {results['cold_start']['goal_ratio']} x baseline.",
        "",
        "| function | no .pyc (SAM today) | x baseline | hash .pyc (`make build`) | x baseline | .pyc"
        " speed-up"
        " | wall ms (hash .pyc) | heavy optional modules loaded |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    functions = results["cold_start"]["functions"]
    ordered = [(name, functions[name]) for name in ("baseline", "ingest", "ga4", "meta", "appsflyer")]
    for name, row in ordered:
        lines.append(
            f"| {name} | {row['nopyc_ms']:.0f} | {row['ratio_nopyc']:.2f} | {row['hashpyc_ms']:.0f} | "
            f"{row['ratio_hashpyc']:.2f} | {row['pyc_speedup']:.2f} | {row['hashpyc_wall_ms']:.0f} | "
            f"{', '.join(row['heavy_optional_loaded']) or 'none'} |"
        )
    lines += [
        "",
        "Top imports with hash .pyc (self ms per top-level package from one `-X importtime` run):",
        "",
    ]
    for name, row in ordered:
        top = sorted(row["top_imports_hashpyc_ms"].items(), key=lambda item: -item[1])
        own = sorted(row.get("top_own_modules_hashpyc_ms", {}).items(), key=lambda item: -item[1])[:4]
        own_text = f"; ours: {', '.join(f'{k} {v:.0f}' for k, v in own)}" if own else ""
        lines.append(f"- {name}: {', '.join(f'{k} {v:.0f}' for k, v in top)}{own_text}")

    ingest = results["ingest"]
    lines += [
        "",
        "## Ingest overhead (CPU per webhook, AWS replaced at the boundary)",
        "",
        f"{ingest['webhooks']} distinct signed Stripe checkout webhooks ({ingest['body_bytes']} bytes),"
        " median of "
        f"{ingest['repeats']} passes; 3 destinations enabled; idempotency through Powertools with an"
        " in-memory"
        " persistence layer; SQS client stub.",
        "",
        "| step | us per webhook | x HMAC |",
        "| --- | ---: | ---: |",
    ]
    for label, key in (
        ("HMAC-SHA256 + compare (baseline)", "hmac_us"),
        ("stripe.verify (header parse + HMAC + tolerance)", "verify_us"),
        ("stripe.parse", "parse_us"),
        ("stripe.to_events", "to_events_us"),
        ("SQS message bodies (event.to_json)", "messages_us"),
        ("one INFO log line through the shared Logger", "log_line_us"),
        ("**ingest.receive** (all of the above + idempotency + enqueue)", "receive_us"),
        ("handler (adds routing, Logger context, EMF flush)", "handler_us"),
    ):
        lines.append(f"| {label} | {ingest[key]:.0f} | {ingest[key] / ingest['hmac_us']:.1f} |")
    lines.append(
        f"\nPer webhook: {ingest['sqs_requests_per_webhook']:.1f} SQS requests, "
        f"{ingest['dynamodb_writes_per_webhook']:.1f} DynamoDB writes,"
        f" {ingest['log_bytes_per_webhook']:.0f} bytes"
        " of logs + EMF."
    )

    consumers = results["consumers"]
    lines += [
        "",
        f"## Consumer throughput (fake destination answering after {consumers['latency_s'] * 1000:.0f} ms)",
        "",
        "Real handler -> delivery.process_batch, DynamoDB and SQS in-memory (no latency: see the calls"
        " column),"
        " the fake in its own process. Network limit = events / (ceil(requests / connections) x latency).",
        "",
        "| destination | batch | events/s per invocation | network limit | ratio | events/request |"
        " connections"
        " | CPU ms/event | DynamoDB calls/invocation |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in consumers["scenarios"]:
        lines.append(
            f"| {s['destination']} ({s['label']}) | {s['batch']} | {s['events_per_s']:.0f} | "
            f"{s['network_limit_events_per_s']:.0f} | {_ratio(s['ratio_to_limit'])} |"
            f" {s['events_per_request']:.0f} | "
            f"{s['connections']} | {s['cpu_ms_per_event']:.2f} | {s['dynamodb_calls_per_invocation']:.0f} |"
        )

    hashing = results["hashing"]
    lines += [
        "",
        "## Meta user_data hashing (normalize + SHA-256, 10 fields)",
        "",
        "| implementation | us per event | ratio |",
        "| --- | ---: | ---: |",
        "| facebook-business SDK `UserData(...).normalize()` (baseline) |"
        f" {hashing['sdk_us_per_event']:.1f} | 1.00 |",
        f"| ours `meta_normalize.hash_person` | {hashing['ours_us_per_event']:.1f} | "
        f"{hashing['ratio_ours_to_sdk']:.2f} |",
        "",
        f"Outputs compared field by field on all {hashing['outputs_compared']} inputs: identical"
        " (external_id left out: the SDK sends it raw, we hash it).",
    ]

    spike, trickle = priced["estimates"]["spike"], priced["estimates"]["trickle"]
    a = priced["assumptions"]
    lines += [
        "",
        f"## AWS cost per {a['webhooks']:,} webhooks ({priced['region']}, prices as of"
        f" {priced['prices_as_of']},"
        " bench/prices.json)",
        "",
        "| component | spike (full batches) | trickle (1 message per invocation) |",
        "| --- | ---: | ---: |",
    ]
    for component, dollars in spike["components"].items():
        lines.append(f"| {component} | {_money(dollars)} | {_money(trickle['components'][component])} |")
    lines.append(f"| **total** | **{_money(spike['total'])}** | **{_money(trickle['total'])}** |")
    lines.append(
        f"| per 1,000 webhooks | {_money(spike['total'] / 1000)} | {_money(trickle['total'] / 1000)} |"
    )
    durations = ", ".join(f"{k} {v:.0f} ms" for k, v in spike["durations_ms"].items())
    durations_t = ", ".join(f"{k} {v:.0f} ms" for k, v in trickle["durations_ms"].items())
    lines += [
        "",
        f"Billed durations assumed (arm64, {priced['settings']['ingest_memory_mb']} MB from template.yaml):"
        " spike "
        f"{durations}; trickle {durations_t}. Each = measured CPU x (1769 MB / memory) + sequential AWS"
        " calls "
        f"({a['dynamodb_call_ms']:.0f} ms DynamoDB, {a['sqs_call_ms']:.0f} ms SQS, assumed) + destination"
        " round"
        f" trips ({a['destination_latency_ms']:.0f} ms, the bench's fake). Also assumed:"
        f" {a['platform_log_bytes_per_invocation']} bytes of Lambda platform log lines per invocation,"
        f" {a['cold_start_fraction']:.0%} cold starts, {a['warm_containers_per_function']} warm container per"
        f" function refreshing its secret every {a['secret_max_age_seconds']} s over 30 days. Not per"
        " webhook and"
        " left out: $0.40 per secret per month (4 secrets), the ESM's idle long-polling of 3 queues,"
        " CloudWatch"
        " custom metrics and alarms, log storage, free tiers.",
    ]
    for alternative in priced["hosted_alternatives"]:
        lines.append(
            f"\nHosted alternative for comparison: {alternative['name']}: {alternative['figure']}"
            f" ({alternative['source']}), i.e. about {_money(alternative['per_thousand_webhooks'])} per"
            " 1,000 orders"
            f" on that plan, against {_money(spike['total'] / 1000)}-{_money(trickle['total'] / 1000)} of AWS"
            " usage here (the hosted price includes operating it; ours does not include your time)."
        )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    if "--render" in sys.argv:  # re-price and re-render the last run (e.g. after editing prices.json)
        saved = common.read_json(common.BUILD / "results.json")
        priced = cost.run(saved["results"], common.ROOT / "template.yaml")
        report = render(saved["results"], priced, saved["meta"])
        (common.RESULTS / f"{saved['meta']['date']}.md").write_text(report)
        (common.RESULTS / "latest.md").write_text(report)
        print(report)
        return
    started = time.time()
    load_start = _load()
    common.BUILD.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for key, module in STEPS:
        print(f"== {module}", flush=True)
        results[key] = _run_step(module, common.BUILD / f"{key}.json")
    priced = cost.run(results, common.ROOT / "template.yaml")
    today = dt.date.today().isoformat()
    meta = {
        "date": today,
        "machine": common.machine(),
        "load_start": load_start,
        "load_end": _load(),
        "seconds": time.time() - started,
    }
    common.write_json(common.BUILD / "results.json", {"meta": meta, "results": results, "cost": priced})
    report = render(results, priced, meta)
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    (common.RESULTS / f"{today}.md").write_text(report)
    (common.RESULTS / "latest.md").write_text(report)
    print(report)
    print(f"written: {common.RESULTS / (today + '.md')} and latest.md")


if __name__ == "__main__":
    main()
