"""A simulated Bedrock batch workload: per-model backlogs that drain as tokens are processed and refill."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

NAMESPACE = "AWS/Bedrock/Batch"


@dataclass
class SimulatedModel:
    """One model's batch backlog; records drain at a wandering rate and new jobs arrive now and then."""

    model_id: str
    input_tokens_per_record: int
    output_tokens_per_record: int
    records_per_minute: float
    anthropic: bool = False
    pending_records: float = 0.0
    rng: random.Random = field(default_factory=random.Random)

    def step(self, seconds: float) -> tuple[float, float]:
        """Advance the simulation; returns (records processed per minute, records that arrived)."""
        arrived = 0.0
        if self.pending_records < self.records_per_minute * 2 or self.rng.random() < 0.02:
            arrived = float(self.rng.randint(2, 12) * 500)
            self.pending_records += arrived
        self.records_per_minute = min(max(self.records_per_minute * self.rng.uniform(0.9, 1.1), 50.0), 5000.0)
        processed = min(self.pending_records, self.records_per_minute * seconds / 60.0)
        self.pending_records -= processed
        return processed * 60.0 / seconds if seconds > 0 else 0.0, arrived

    def datapoints(self, rate: float, when: datetime) -> list[dict[str, Any]]:
        """The CloudWatch datapoints Bedrock would publish for this model at `when`."""
        dims = [{"Name": "ModelId", "Value": self.model_id}]
        jitter = self.rng.uniform(0.9, 1.1)
        values = {
            "NumberOfRecordsPendingProcessing": round(self.pending_records),
            "NumberOfInputTokensProcessedPerMinute": round(rate * self.input_tokens_per_record * jitter),
            "NumberOfOutputTokensProcessedPerMinute": round(rate * self.output_tokens_per_record * jitter),
        }
        if self.anthropic:
            values["NumberOfTokensPendingProcessing"] = round(
                self.pending_records * (self.input_tokens_per_record + self.output_tokens_per_record)
            )
        return [
            {
                "MetricName": name,
                "Dimensions": dims,
                "Value": float(value),
                "Timestamp": when,
                "Unit": "Count",
            }
            for name, value in values.items()
        ]


def default_models(seed: int = 7) -> dict[str, list[SimulatedModel]]:
    """The demo's models per region: an Anthropic model (with tokens pending) and two others."""
    rng = random.Random(seed)

    def model(model_id: str, tin: int, tout: int, rpm: float, anthropic: bool = False) -> SimulatedModel:
        return SimulatedModel(model_id, tin, tout, rpm, anthropic, rng=random.Random(rng.random()))

    return {
        "us-east-1": [
            model("anthropic.claude-3-5-sonnet-20240620-v1:0", 900, 300, 800, anthropic=True),
            model("amazon.nova-pro-v1:0", 600, 200, 1500),
            model("meta.llama3-1-70b-instruct-v1:0", 700, 250, 600),
        ],
        "us-west-2": [
            model("anthropic.claude-3-haiku-20240307-v1:0", 500, 150, 2500, anthropic=True),
            model("amazon.titan-embed-text-v2:0", 300, 0, 4000),
        ],
    }


class Workload:
    """Publishes the simulated models' metrics to CloudWatch (the simulated one) through real clients."""

    def __init__(self, clients: dict[str, Any], models: dict[str, list[SimulatedModel]]) -> None:
        self._clients = clients
        self.models = models

    def publish(self, seconds: float, now: datetime | None = None) -> int:
        """Advance every model by `seconds` and publish one datapoint per metric; returns datapoints sent."""
        when = now or datetime.now(UTC)
        sent = 0
        for region, models in self.models.items():
            data = []
            for model in models:
                rate, _ = model.step(seconds)
                data.extend(model.datapoints(rate, when))
            self._clients[region].put_metric_data(Namespace=NAMESPACE, MetricData=data)
            sent += len(data)
        return sent
