"""The silver_runner resource carries silver's runner settings to the run unchanged (what the job run
request is built from), and refuses an EMR runner without what it needs."""

import pytest
from pydantic import ValidationError

from cart_lakehouse.resources import SilverRunnerResource
from cart_lakehouse.settings import LakeSettings
from tests.cart_lakehouse.jobs.test_silver_entry import EMR as EMR_RUN

EMR = {**EMR_RUN, "emr_pipes_bucket": "cart-pipes", "spark_shuffle_partitions": 8, "aws_region": "eu-west-1"}


@pytest.mark.parametrize("endpoint", ["", "http://127.0.0.1:5000"])
def test_the_runner_settings_reach_the_run_as_they_were_set(endpoint: str) -> None:
    settings = LakeSettings(**EMR, aws_endpoint_url=endpoint)  # type: ignore[arg-type]

    carried = SilverRunnerResource.from_settings(settings).settings()

    fields = [*EMR, "aws_endpoint_url"]
    assert {f: getattr(carried, f) for f in fields} == {f: getattr(settings, f) for f in fields}


def test_an_emr_runner_without_its_application_is_refused_naming_the_setting() -> None:
    resource = SilverRunnerResource(runner="emr-serverless", emr_entry_point=EMR["emr_entry_point"])

    with pytest.raises((ValidationError, ValueError), match=r"(?i)emr_application_id"):
        resource.settings()
