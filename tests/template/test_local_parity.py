"""The local stack reads template.yaml (relay_local.template_settings): it must see what SAM deploys."""

from __future__ import annotations

from relay_local import template_settings
from tools.template_model import consumers


def test_local_stack_consumers_match_the_transformed_template(cfn, template_path):
    local = template_settings.load(template_path).consumers
    deployed = {c.destination: c for c in consumers(cfn)}
    assert set(local) == set(deployed)
    for name, expected in deployed.items():
        seen = local[name]
        assert (
            seen.function.logical_id,
            seen.queue.logical_id,
            seen.dead_letter_queue.logical_id,
            seen.function.timeout,
            seen.queue.visibility_timeout,
            seen.queue.message_retention,
            seen.dead_letter_queue.message_retention,
            seen.max_receive_count,
            seen.batch_size,
            seen.batching_window_seconds,
            seen.maximum_concurrency,
            seen.function_response_types,
        ) == (
            expected.function,
            expected.queue,
            expected.dead_letter_queue,
            expected.function_timeout,
            expected.visibility_timeout,
            expected.queue_retention,
            expected.dead_letter_retention,
            expected.max_receive_count,
            expected.batch_size,
            expected.batching_window,
            expected.maximum_concurrency,
            expected.function_response_types,
        ), name


def test_local_stack_environment_matches_the_transformed_template(cfn, template_path):
    settings = template_settings.load(template_path)
    for function in settings.functions():
        deployed = cfn["Resources"][function.logical_id]["Properties"]["Environment"]["Variables"]
        assert set(function.environment) == set(deployed), function.logical_id
