"""The benchmark's SNS stub answers Publish and PublishBatch in the shape boto3 parses, after its
delay, and refuses what it does not stand in for with an error botocore reports."""

from __future__ import annotations

import time
from collections.abc import Iterator

import botocore.exceptions
import pytest

from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_dev.sns_stub import SnsStub

DELAY_MS = 150


@pytest.fixture(scope="module")
def stub() -> Iterator[SnsStub]:
    with SnsStub(delay_ms=DELAY_MS) as stub:
        yield stub


@pytest.fixture
def aws(stub: SnsStub) -> AwsClients:
    return AwsClients(Settings(aws_endpoint_url=stub.url), attempts=1)


def test_publish_is_answered_after_the_delay(stub: SnsStub, aws: AwsClients) -> None:
    arn = aws.topic_arn("cart-purchases")  # STS GetCallerIdentity, answered by the stub too
    assert arn == "arn:aws:sns:us-east-1:123456789012:cart-purchases"
    before = stub.stats()
    started = time.perf_counter()
    response = aws.sns.publish(TopicArn=arn, Message='{"x": 1}', MessageAttributes={})
    assert time.perf_counter() - started >= DELAY_MS / 1000
    assert len(response["MessageId"]) == 36
    after = stub.stats()
    assert after["calls"]["Publish"] == before["calls"].get("Publish", 0) + 1
    assert after["messages"] == before["messages"] + 1


def test_publish_batch_confirms_every_entry_by_its_id(stub: SnsStub, aws: AwsClients) -> None:
    entries = [{"Id": f"e-{i}", "Message": f'{{"n": {i}, "s": "a&b=c%"}}'} for i in range(10)]
    before = stub.stats()
    started = time.perf_counter()
    response = aws.sns.publish_batch(TopicArn=aws.topic_arn("t"), PublishBatchRequestEntries=entries)  # type: ignore[arg-type]
    assert time.perf_counter() - started >= DELAY_MS / 1000
    assert [s["Id"] for s in response["Successful"]] == [e["Id"] for e in entries]
    assert len({s["MessageId"] for s in response["Successful"]}) == 10
    assert response["Failed"] == []
    after = stub.stats()
    assert after["calls"]["PublishBatch"] == before["calls"].get("PublishBatch", 0) + 1
    assert after["messages"] == before["messages"] + 10


def test_other_calls_are_refused_with_the_reason(aws: AwsClients) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        aws.sns.create_topic(Name="t")
    assert raised.value.response["Error"]["Code"] == "InvalidAction"
    assert "CreateTopic" in raised.value.response["Error"]["Message"]


def test_the_delay_can_be_changed_while_it_runs() -> None:
    with SnsStub(delay_ms=0) as stub:
        aws = AwsClients(Settings(aws_endpoint_url=stub.url), attempts=1)
        aws.sns.publish(TopicArn=aws.topic_arn("t"), Message="m")
        assert stub.stats()["delay_ms"] == 0
        stub.set_delay(DELAY_MS)
        assert stub.stats()["delay_ms"] == DELAY_MS
        started = time.perf_counter()
        aws.sns.publish(TopicArn=aws.topic_arn("t"), Message="m")
        assert time.perf_counter() - started >= DELAY_MS / 1000
