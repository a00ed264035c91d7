from __future__ import annotations

import pytest

from exporter.naming import dimension_label, metric_name, snake_case


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("NumberOfRecordsPendingProcessing", "number_of_records_pending_processing"),
        ("NumberOfInputTokensProcessedPerMinute", "number_of_input_tokens_processed_per_minute"),
        ("CPUUtilization", "cpuutilization"),
        ("Bedrock/Batch", "bedrock_batch"),
        ("Latency.p99", "latency_p99"),
        ("a--b", "a_b"),
    ],
)
def test_snake_case(text: str, expected: str) -> None:
    assert snake_case(text) == expected


def test_yace_compatible_names() -> None:
    assert (
        metric_name("AWS/Bedrock/Batch", "NumberOfRecordsPendingProcessing", "Average")
        == "aws_bedrock_batch_number_of_records_pending_processing_average"
    )
    assert metric_name("AWS/EC2", "CPUUtilization", "Maximum") == "aws_ec2_cpuutilization_maximum"
    assert metric_name("AWS/ELB", "RequestCount", "SampleCount") == "aws_elb_request_count_sample_count"
    assert metric_name("Custom/App", "Latency", "p99.9") == "aws_custom_app_latency_p99_9"


def test_dimension_labels_keep_case_and_drop_bad_characters() -> None:
    assert dimension_label("ModelId") == "dimension_ModelId"
    assert dimension_label("Model-Id.x") == "dimension_Model_Id_x"
