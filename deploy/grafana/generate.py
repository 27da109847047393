#!/usr/bin/env python3
"""Writes the Grafana dashboards in dashboards/ (run from anywhere; no dependencies).

The JSON files are what operators import; this script is how they are kept consistent
(one datasource variable, one tenant variable, the same panel layout). The test suite
checks that every PromQL expression in them names a metric custos exposes and that a
real Prometheus accepts it.
"""
import json
import os

T = 'tenant=~"$tenant"'
R = "$__rate_interval"


def panel(title, exprs, kind="timeseries", unit=None, legend=None, w=12, h=8, description=""):
    targets = []
    for i, expr in enumerate(exprs if isinstance(exprs, list) else [exprs]):
        if isinstance(expr, tuple):
            expr, leg = expr
        else:
            leg = legend
        target = {"refId": chr(ord("A") + i), "expr": expr, "datasource": {"type": "prometheus", "uid": "${datasource}"}}
        if leg:
            target["legendFormat"] = leg
        if kind == "table":
            target["format"] = "table"
            target["instant"] = True
        targets.append(target)
    p = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "targets": targets,
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {},
        "gridPos": {"w": w, "h": h},
    }
    if unit:
        p["fieldConfig"]["defaults"]["unit"] = unit
    return p


def dashboard(uid, title, description, panels, tenant=True):
    x = y = 0
    row_h = 0
    for i, p in enumerate(panels):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24:
            x, y = 0, y + row_h
            row_h = 0
        p["gridPos"].update({"x": x, "y": y})
        p["id"] = i + 1
        x += w
        row_h = max(row_h, h)
    templating = [
        {
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
        }
    ]
    if tenant:
        templating.append(
            {
                "name": "tenant",
                "label": "Tenant",
                "type": "query",
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "query": {"query": "label_values(custos_metrics_series, tenant)", "refId": "tenants"},
                "definition": "label_values(custos_metrics_series, tenant)",
                "includeAll": True,
                "multi": True,
                "allValue": ".*",
                "current": {"text": "All", "value": "$__all"},
                "refresh": 2,
                "sort": 1,
                "hide": 0,
            }
        )
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["custos"],
        "timezone": "browser",
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {"list": templating},
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["custos"], "title": "custos", "asDropdown": True}],
        "panels": panels,
    }


DASHBOARDS = {
    "custos-connectors": dashboard(
        "custos-connectors",
        "custos · Connectors and freshness",
        "Are connectors syncing? Freshness by each connector's own thresholds, time since the last success, sync durations and failures.",
        [
            panel("Connectors by freshness state", f'count by (state) (custos_connector_freshness_state{{{T}}} == 1)', "stat", legend="{{state}}", w=8),
            panel("Red connectors", f'custos_connector_freshness_state{{{T},state="red"}} == 1', "table", w=16),
            panel("Time since last successful sync", f"time() - custos_connector_last_success_timestamp_seconds{{{T}}}", unit="s", legend="{{tenant}} {{integration_id}}"),
            panel("Sync duration p95 by provider", f"histogram_quantile(0.95, sum by (tenant, provider, le) (rate(custos_connector_sync_duration_seconds_bucket{{{T}}}[{R}])))", unit="s", legend="{{tenant}} {{provider}}"),
            panel("Failed share of syncs", f'sum by (tenant, integration_id) (rate(custos_connector_sync_duration_seconds_count{{{T},status="failed"}}[{R}])) / sum by (tenant, integration_id) (rate(custos_connector_sync_duration_seconds_count{{{T}}}[{R}]))', unit="percentunit", legend="{{tenant}} {{integration_id}}"),
            panel("Events ingested per second", f"sum by (tenant, integration_id) (rate(custos_connector_events_ingested_total{{{T}}}[{R}]))", legend="{{tenant}} {{integration_id}}"),
        ],
    ),
    "custos-deliveries": dashboard(
        "custos-deliveries",
        "custos · Deliveries and dead letters",
        "Findings and events delivered to SIEM and workflow destinations: outcomes, retries, queue depth and dead letters.",
        [
            panel("Dead-lettered items", [(f'sum by (tenant, destination_id) (custos_siem_delivery_queue_depth{{{T},status="dead_lettered"}})', "siem {{tenant}} {{destination_id}}"), (f'sum by (tenant, destination_id) (custos_workflow_delivery_queue_depth{{{T},status="dead_lettered"}})', "workflow {{tenant}} {{destination_id}}")], "stat", w=8),
            panel("Delivery success ratio", f'sum by (tenant, destination_kind) (rate(custos_delivery_attempts_total{{{T},status="succeeded"}}[{R}])) / sum by (tenant, destination_kind) (rate(custos_delivery_attempts_total{{{T}}}[{R}]))', unit="percentunit", legend="{{tenant}} {{destination_kind}}", w=16),
            panel("Attempts by status", f"sum by (destination_kind, status) (rate(custos_delivery_attempts_total{{{T}}}[{R}]))", legend="{{destination_kind}} {{status}}"),
            panel("Retry depth p90 (attempt number)", f"histogram_quantile(0.9, sum by (destination_kind, le) (rate(custos_delivery_retry_depth_bucket{{{T}}}[{R}])))", legend="{{destination_kind}}"),
            panel("SIEM delivery queue by status", f"sum by (status) (custos_siem_delivery_queue_depth{{{T}}})", legend="{{status}}"),
            panel("Workflow delivery queue by status", f"sum by (status) (custos_workflow_delivery_queue_depth{{{T}}})", legend="{{status}}"),
            panel("Oldest undelivered item", f"custos_delivery_queue_oldest_item_age_seconds{{{T}}}", unit="s", legend="{{tenant}} {{destination_id}}", w=24),
        ],
    ),
    "custos-ingestion": dashboard(
        "custos-ingestion",
        "custos · Ingestion",
        "The platform's ingestion queues (depth, age, throughput, failures) and what custos itself accepted.",
        [
            panel("Queue depth by status", f"sum by (queue, status) (custos_ingestion_queue_depth{{{T}}})", legend="{{queue}} {{status}}"),
            panel("Oldest item age", f"custos_ingestion_queue_oldest_item_age_seconds{{{T}}}", unit="s", legend="{{tenant}} {{queue}}"),
            panel("Processed and failed per second", [(f"sum by (queue) (rate(custos_ingestion_queue_processed_total{{{T}}}[{R}]))", "processed {{queue}}"), (f"sum by (queue) (rate(custos_ingestion_queue_failed_total{{{T}}}[{R}]))", "failed {{queue}}")]),
            panel("Time since the latest queue snapshot", f"time() - custos_queue_snapshot_timestamp_seconds{{{T}}}", unit="s", legend="{{tenant}} {{queue}}"),
            panel("Records custos accepted, by kind and outcome", f"sum by (kind, outcome) (rate(custos_ingest_records_total[{R}]))", legend="{{kind}} {{outcome}}", w=24),
        ],
    ),
    "custos-rules": dashboard(
        "custos-rules",
        "custos · Rules: slowest and noisiest",
        "Detection rules: the slowest (p95), the noisiest (findings created), failing and silent rules.",
        [
            panel("Slowest rules (p95)", f"topk(10, histogram_quantile(0.95, sum by (tenant, rule_key, le) (rate(custos_rule_execution_duration_seconds_bucket{{{T}}}[{R}]))))", "table", unit="s"),
            panel("Noisiest rules (findings created, 1 h)", f"topk(10, sum by (tenant, rule_key) (increase(custos_rule_findings_created_total{{{T}}}[1h])))", "table"),
            panel("Failing share of runs", f'sum by (tenant, rule_key) (rate(custos_rule_execution_duration_seconds_count{{{T},status="failed"}}[{R}])) / sum by (tenant, rule_key) (rate(custos_rule_execution_duration_seconds_count{{{T}}}[{R}])) > 0', unit="percentunit", legend="{{tenant}} {{rule_key}}"),
            panel("Events evaluated per second", f"sum by (tenant) (rate(custos_rule_events_evaluated_total{{{T}}}[{R}]))", legend="{{tenant}}"),
            panel("Findings per second", [(f"sum (rate(custos_rule_findings_created_total{{{T}}}[{R}]))", "created"), (f"sum (rate(custos_rule_findings_reopened_total{{{T}}}[{R}]))", "reopened"), (f"sum (rate(custos_rule_findings_resolved_total{{{T}}}[{R}]))", "resolved")]),
            panel("Silent rules (no run for a day)", f"time() - custos_rule_last_run_timestamp_seconds{{{T}}} > 86400", "table", unit="s"),
            panel("Series folded into other (cardinality cap)", f"sum by (tenant, family) (increase(custos_metrics_series_dropped_total{{{T}}}[1h]))", legend="{{tenant}} {{family}}", w=24),
        ],
    ),
    "custos-golden-signals": dashboard(
        "custos-golden-signals",
        "custos · Golden signals",
        "custos itself: traffic, errors, latency and saturation, auth failures, store time, trace export and the process.",
        [
            panel("Requests per second by route", f"sum by (route) (rate(custos_http_requests_total[{R}]))", legend="{{route}}"),
            panel("Server error ratio", f'sum (rate(custos_http_requests_total{{status=~"5.."}}[{R}])) / sum (rate(custos_http_requests_total[{R}]))', unit="percentunit", legend="5xx"),
            panel("Latency p50 and p99", [(f"histogram_quantile(0.5, sum by (le) (rate(custos_http_request_duration_seconds_bucket[{R}])))", "p50"), (f"histogram_quantile(0.99, sum by (le) (rate(custos_http_request_duration_seconds_bucket[{R}])))", "p99")], unit="s"),
            panel("Requests in flight", "sum (custos_http_requests_in_flight)", legend="in flight"),
            panel("Auth failures by reason", f"sum by (reason) (rate(custos_auth_failures_total[{R}]))", legend="{{reason}}"),
            panel("Store time p99 by operation", f"histogram_quantile(0.99, sum by (operation, le) (rate(custos_store_operation_duration_seconds_bucket[{R}])))", unit="s", legend="{{operation}}"),
            panel("Token calls by scope and status", f"sum by (scope, status) (rate(custos_api_token_invocations_total[{R}]))", legend="{{scope}} {{status}}"),
            panel("Trace export", [(f"sum (rate(custos_trace_spans_exported_total[{R}]))", "exported"), (f"sum (rate(custos_trace_spans_dropped_total[{R}]))", "dropped"), (f"sum (rate(custos_trace_spans_export_failed_total[{R}]))", "failed")]),
            panel("Resident memory", "process_resident_memory_bytes", unit="bytes", legend="{{instance}}"),
            panel("CPU", f"rate(process_cpu_seconds_total[{R}])", unit="percentunit", legend="{{instance}}"),
            panel("Platform metrics collection time", "custos_metrics_collection_duration_seconds", unit="s", legend="{{instance}}"),
            panel("Worker iteration p99", f"histogram_quantile(0.99, sum by (worker, le) (rate(custos_worker_loop_duration_seconds_bucket[{R}])))", unit="s", legend="{{worker}}"),
            panel("Database connections", [("sum by (state) (custos_db_pool_connections)", "{{state}}"), ("max (custos_db_pool_max_connections)", "max")]),
            panel("Running builds", "custos_build_info", "table"),
        ],
        tenant=False,
    ),
}

here = os.path.dirname(os.path.abspath(__file__))
for name, board in DASHBOARDS.items():
    with open(os.path.join(here, "dashboards", f"{name}.json"), "w") as f:
        json.dump(board, f, indent=2)
        f.write("\n")
