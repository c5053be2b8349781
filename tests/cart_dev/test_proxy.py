"""The fault proxy forwards every AWS protocol the project uses unchanged, and injects each fault
in the form botocore sees on AWS: throttling it retries, outages, resets and refused connections."""

from __future__ import annotations

import time
from collections.abc import Iterator

import botocore.exceptions
import pytest

from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_dev.proxy import Call, FaultProxy, identify, main


@pytest.fixture
def proxy(settings: Settings) -> Iterator[FaultProxy]:
    assert settings.aws_endpoint_url
    with FaultProxy(settings.aws_endpoint_url, seed=7) as proxy:
        yield proxy


def clients(settings: Settings, proxy: FaultProxy, attempts: int = 1) -> AwsClients:
    """Clients through the proxy; ``attempts`` 1 means botocore does not retry."""
    return AwsClients(settings.model_copy(update={"aws_endpoint_url": proxy.url}), attempts=attempts)


def test_every_protocol_passes_through_unchanged(settings: Settings, proxy: FaultProxy) -> None:
    aws = clients(settings, proxy)
    # SNS (query protocol), SQS (JSON), DynamoDB (JSON), S3 (REST, with HEAD and a binary body)
    aws.sns.publish(TopicArn=aws.topic_arn(settings.purchases_topic), Message='{"x": 1}')
    queue = aws.queue_url(settings.purchases_queue)
    (message,) = aws.sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
    assert message["Body"] == '{"x": 1}'
    aws.dynamodb.put_item(TableName=settings.purchases_table, Item={"purchase_id": {"S": "p1"}})
    item = aws.dynamodb.get_item(TableName=settings.purchases_table, Key={"purchase_id": {"S": "p1"}})["Item"]
    assert item == {"purchase_id": {"S": "p1"}}
    payload = bytes(range(256)) * 4000  # ~1 MB, every byte value
    aws.s3.put_object(Bucket=settings.lake_bucket, Key="k/bin", Body=payload)
    assert aws.s3.head_object(Bucket=settings.lake_bucket, Key="k/bin")["ContentLength"] == len(payload)
    assert aws.s3.get_object(Bucket=settings.lake_bucket, Key="k/bin")["Body"].read() == payload

    forwarded = proxy.stats.forwarded
    assert forwarded["sns:Publish"] == 1
    assert forwarded["sqs:ReceiveMessage"] == 1
    assert forwarded["dynamodb:PutItem"] == 1
    assert forwarded["s3:PUT"] == 1
    assert forwarded["s3:HEAD"] == 1
    assert forwarded["s3:GET"] == 1
    assert proxy.stats.total_injected() == 0


@pytest.mark.parametrize(
    ("service", "code"),
    [
        ("dynamodb", "ProvisionedThroughputExceededException"),
        ("sqs", "RequestThrottled"),
        ("sns", "Throttling"),
        ("s3", "SlowDown"),
    ],
)
def test_throttling_speaks_each_services_error(settings: Settings, proxy: FaultProxy, service: str, code: str) -> None:
    aws = clients(settings, proxy)
    calls = {
        "dynamodb": lambda: aws.dynamodb.describe_table(TableName=settings.purchases_table),
        "sqs": lambda: aws.sqs.list_queues(),
        "sns": lambda: aws.sns.list_topics(),
        "s3": lambda: aws.s3.list_objects_v2(Bucket=settings.lake_bucket),
    }
    proxy.throttle(only=service)
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        calls[service]()
    assert raised.value.response["Error"]["Code"] == code
    others = [s for s in calls if s != service]
    for other in others:  # only the named service is throttled
        calls[other]()
    proxy.clear()
    calls[service]()


def test_botocore_retries_a_throttle_and_succeeds(settings: Settings, proxy: FaultProxy) -> None:
    aws = clients(settings, proxy, attempts=3)
    proxy.throttle(only="dynamodb:PutItem", count=2)
    aws.dynamodb.put_item(TableName=settings.purchases_table, Item={"purchase_id": {"S": "p2"}})
    assert proxy.stats.injected["throttle dynamodb:PutItem"] == 2
    assert proxy.stats.forwarded["dynamodb:PutItem"] == 1


def test_share_is_seeded_and_roughly_honoured(settings: Settings) -> None:
    assert settings.aws_endpoint_url
    outcomes = []
    for _ in range(2):
        with FaultProxy(settings.aws_endpoint_url, seed=3) as proxy:
            proxy.throttle(0.3, only="sqs")
            aws = clients(settings, proxy)
            seen = []
            for _ in range(60):
                try:
                    aws.sqs.list_queues()
                    seen.append(True)
                except botocore.exceptions.ClientError:
                    seen.append(False)
            outcomes.append(seen)
    assert outcomes[0] == outcomes[1]
    assert 8 <= outcomes[0].count(False) <= 30


def test_unavailable_answers_503(settings: Settings, proxy: FaultProxy) -> None:
    aws = clients(settings, proxy)
    proxy.unavailable(only="sns:Publish")
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        aws.sns.publish(TopicArn=aws.topic_arn(settings.purchases_topic), Message="m")
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    aws.sns.list_topics()  # other SNS operations still answer


def test_reset_before_forwarding_loses_the_call(settings: Settings, proxy: FaultProxy) -> None:
    aws = clients(settings, proxy)
    proxy.reset(only="dynamodb:PutItem")
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        aws.dynamodb.put_item(TableName=settings.purchases_table, Item={"purchase_id": {"S": "lost"}})
    direct = AwsClients(settings)
    assert "Item" not in direct.dynamodb.get_item(
        TableName=settings.purchases_table, Key={"purchase_id": {"S": "lost"}}
    )
    aws.dynamodb.put_item(TableName=settings.purchases_table, Item={"purchase_id": {"S": "lost"}})  # count was 1


def test_reset_after_forwarding_applies_the_call_unheard(settings: Settings, proxy: FaultProxy) -> None:
    aws = clients(settings, proxy)
    proxy.reset(only="dynamodb:PutItem", after_forward=True)
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        aws.dynamodb.put_item(TableName=settings.purchases_table, Item={"purchase_id": {"S": "unheard"}})
    direct = AwsClients(settings)
    key = {"purchase_id": {"S": "unheard"}}
    assert direct.dynamodb.get_item(TableName=settings.purchases_table, Key=key)["Item"] == key


def test_hang_holds_the_call_until_the_client_gives_up(settings: Settings, proxy: FaultProxy) -> None:
    assert settings.aws_endpoint_url
    aws = AwsClients(settings.model_copy(update={"aws_endpoint_url": proxy.url}), attempts=1, read_timeout=1)
    proxy.hang(only="sqs:ListQueues", count=1)
    started = time.perf_counter()
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        aws.sqs.list_queues()
    assert time.perf_counter() - started >= 1
    assert proxy.stats.injected["hang sqs:ListQueues"] == 1
    assert proxy.stats.forwarded["sqs:ListQueues"] == 0  # it never reached AWS
    aws.sqs.list_queues()


def test_refuse_and_accept(settings: Settings, proxy: FaultProxy) -> None:
    aws = clients(settings, proxy)
    aws.sqs.list_queues()  # a kept-alive connection exists
    port = proxy.port
    proxy.refuse()
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        aws.sqs.list_queues()
    proxy.accept()
    assert proxy.port == port
    aws.sqs.list_queues()


def test_delay_is_added_to_every_call(settings: Settings, proxy: FaultProxy) -> None:
    aws = clients(settings, proxy)
    aws.sqs.list_queues()
    start = time.perf_counter()
    for _ in range(5):
        aws.sqs.list_queues()
    fast = time.perf_counter() - start
    proxy.delay_ms = 60
    start = time.perf_counter()
    for _ in range(5):
        aws.sqs.list_queues()
    slow = time.perf_counter() - start
    assert slow >= 5 * 0.06
    assert slow > fast


def test_identify_reads_service_and_operation() -> None:
    auth = "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host"
    headers = {"authorization": auth, "x-amz-target": "DynamoDB_20120810.BatchWriteItem"}
    assert identify("POST", "/", headers, b"") == Call("dynamodb", "BatchWriteItem")
    sns = {
        "authorization": auth.replace("dynamodb", "sns"),
        "content-type": "application/x-www-form-urlencoded; charset=utf-8",
    }
    assert identify("POST", "/", sns, b"Action=PublishBatch&Version=2010-03-31") == Call("sns", "PublishBatch")
    assert Call("sns", "Publish").matches("SNS")
    assert not Call("sns", "Publish").matches("sns:PublishBatch")
    with pytest.raises(ValueError, match="share"):
        FaultProxy("http://x").throttle(1.5)


def test_cli_runs_until_interrupted(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert settings.aws_endpoint_url

    def interrupt() -> None:
        raise KeyboardInterrupt

    assert main(["--upstream", settings.aws_endpoint_url, "--port", "0", "--throttle", "0.5"], wait=interrupt) == 0
    out = capsys.readouterr().out
    assert "fault proxy on http://127.0.0.1:" in out
    assert "forwarded 0, injected 0" in out
