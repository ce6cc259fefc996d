"""Deployments billed by the hour."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from ledger.api.schemas.base import Out, WriteBody, examples


class DeploymentIn(WriteBody):
    model_config = examples(deployment_id="llama-70b-prod", instance_type="gpu-m")

    deployment_id: Annotated[str, Field(min_length=1, max_length=200, examples=["dep-llama-1"])]
    instance_type: Annotated[str, Field(min_length=1, max_length=100, examples=["gpu-s"])]


class DeploymentActionIn(WriteBody):
    pass


class PauseIn(WriteBody):
    reason: Annotated[str, Field(min_length=1, max_length=200)] = "paused_by_user"


class DeploymentOut(Out):
    id: str
    instance_type: str
    status: str
    hourly: str
    hourly_ucr: int
    hours_charged: int
    credits: str
    credits_ucr: int
    paused_reason: str | None
    started_at: datetime


class DeploymentList(Out):
    data: list[DeploymentOut]
