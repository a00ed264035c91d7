from __future__ import annotations

import re

import pytest

from exporter.naming import dimension_label, metric_name, otel_metric_name, snake_case

BEDROCK = "AWS/Bedrock/Batch"
BEDROCK_METRICS = (
    "NumberOfRecordsPendingProcessing",
    "NumberOfTokensPendingProcessing",
    "NumberOfInputTokensProcessedPerMinute",
    "NumberOfOutputTokensProcessedPerMinute",
)


@pytest.mark.parametrize(
    ("namespace", "metric", "statistic", "expected"),
    [
        # YACE's own expectations (pkg/promutil/migrate_test.go: TestBuildMetrics, TestBuildNamespaceInfoMetrics)
        ("AWS/ElastiCache", "CPUUtilization", "Average", "aws_elasticache_cpuutilization_average"),
        ("AWS/ElastiCache", "FreeableMemory", "Average", "aws_elasticache_freeable_memory_average"),
        ("AWS/ElastiCache", "NetworkBytesIn", "Average", "aws_elasticache_network_bytes_in_average"),
        ("AWS/ElastiCache", "NetworkPacketsIn", "Average", "aws_elasticache_network_packets_in_average"),
        (
            "/aws/sagemaker/TrainingJobs",
            "CPUUtilization",
            "Average",
            "aws_sagemaker_trainingjobs_cpuutilization_average",
        ),
        ("Glue", "glue.driver.aggregate.bytesRead", "Average", "aws_glue_driver_aggregate_bytes_read_average"),
        ("Glue", "aggregate.glue.jobs.bytesRead", "Average", "aws_glue_aggregate_glue_jobs_bytes_read_average"),
        ("AWS/EC2", "CPUUtilization", "Maximum", "aws_ec2_cpuutilization_maximum"),
        ("AWS/ElastiCache", "info", "", "aws_elasticache_info"),
        ("/aws/sagemaker/TrainingJobs", "info", "", "aws_sagemaker_trainingjobs_info"),
        # YACE's PromString rules applied: digit before an upper-case letter, `%`, percentiles, punctuation
        ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "Sum", "aws_applicationelb_httpcode_target_5_xx_count_sum"),
        ("AWS/ApiGateway", "5XXError", "Sum", "aws_apigateway_5_xxerror_sum"),
        ("AWS/EC2", "CPU%", "Average", "aws_ec2_cpu_percent_average"),
        ("AWS/ELB", "RequestCount", "SampleCount", "aws_elb_request_count_sample_count"),
        ("Custom/App", "Latency", "p99.9", "aws_custom_app_latency_p99_9"),
        ("AWS/EC2", "ec2.Launches", "Sum", "aws_ec2_launches_sum"),
    ],
)
def test_yace_build_metric_name(namespace: str, metric: str, statistic: str, expected: str) -> None:
    assert metric_name(namespace, metric, statistic) == expected


@pytest.mark.parametrize("metric", BEDROCK_METRICS)
@pytest.mark.parametrize("statistic", ["Average", "Maximum", "Minimum", "Sum", "SampleCount", "p99", "p99.9"])
def test_bedrock_batch_names_are_unchanged(metric: str, statistic: str) -> None:
    # the names this exporter has always published for AWS/Bedrock/Batch (dashboards and alerts depend on them)
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", metric).lower()
    stat = {"SampleCount": "sample_count", "p99.9": "p99_9"}.get(statistic, statistic.lower())
    assert metric_name(BEDROCK, metric, statistic) == f"aws_bedrock_batch_{words}_{stat}"
    assert otel_metric_name(BEDROCK, metric, statistic) == f"aws.bedrock.batch.{words}.{stat}"


def test_bedrock_batch_names_spelled_out() -> None:
    assert (
        metric_name(BEDROCK, "NumberOfRecordsPendingProcessing", "Average")
        == "aws_bedrock_batch_number_of_records_pending_processing_average"
    )
    assert (
        metric_name(BEDROCK, "NumberOfOutputTokensProcessedPerMinute", "Sum")
        == "aws_bedrock_batch_number_of_output_tokens_processed_per_minute_sum"
    )
    assert (
        otel_metric_name(BEDROCK, "NumberOfRecordsPendingProcessing", "Maximum")
        == "aws.bedrock.batch.number_of_records_pending_processing.maximum"
    )


@pytest.mark.parametrize(
    ("namespace", "metric", "statistic", "expected"),
    [
        ("AWS/ElastiCache", "CPUUtilization", "Average", "aws.elasticache.cpuutilization.average"),
        (
            "/aws/sagemaker/TrainingJobs",
            "CPUUtilization",
            "Average",
            "aws.sagemaker.trainingjobs.cpuutilization.average",
        ),
        ("Glue", "glue.driver.aggregate.bytesRead", "Average", "aws.glue.driver_aggregate_bytes_read.average"),
        ("Custom/App", "Latency", "p99.9", "aws.custom.app.latency.p99_9"),
        ("AWS/EC2", "CPU%", "TM(10%:90%)", "aws.ec2.cpu_percent.tm_10_percent_90_percent"),
    ],
)
def test_otel_names_follow_from_the_same_parts(namespace: str, metric: str, statistic: str, expected: str) -> None:
    assert otel_metric_name(namespace, metric, statistic) == expected
    # the Prometheus name is the same words, with `_` where OpenTelemetry has `.` (edge underscores aside)
    assert metric_name(namespace, metric, statistic).strip("_") == expected.replace(".", "_")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("NumberOfRecordsPendingProcessing", "number_of_records_pending_processing"),
        ("CPUUtilization", "cpuutilization"),
        ("labelName", "label_name"),  # YACE TestPromStringTag, snake case
        ("Latency.p99", "latency_p99"),
        ("a--b", "a__b"),  # YACE does not fold repeated underscores
        ("HTTPCode_Target_5XX_Count", "httpcode_target_5_xx_count"),
        ("IHaveA%Sign", "ihave_a_percentsign"),
        ("Price$", "price_"),  # YACE keeps `$` (an invalid name); here it becomes `_`
    ],
)
def test_snake_case(text: str, expected: str) -> None:
    assert snake_case(text) == expected


@pytest.mark.parametrize(
    ("dimension", "expected"),
    [
        ("ModelId", "dimension_ModelId"),
        ("Model-Id.x", "dimension_Model_Id_x"),
        # YACE's TestSanitize cases
        ("Global.Topic.Count", "dimension_Global_Topic_Count"),
        ("Status.Check.Failed_Instance", "dimension_Status_Check_Failed_Instance"),
        ("IHaveA%Sign", "dimension_IHaveA_percentSign"),
        ("invalidChars@$", "dimension_invalidChars__"),  # YACE drops this dimension; here it is kept
        ("Zoné", "dimension_Zon_"),
    ],
)
def test_dimension_labels_keep_case_and_follow_yace_sanitising(dimension: str, expected: str) -> None:
    assert dimension_label(dimension) == expected
