"""The SNS client of the API's publishing path: its query body, url-encoded once before signing,
is byte for byte the body a default client sends, the body signed is the body sent, and SNS (the
benchmark's stub, a real HTTP peer) reads every entry of it."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qsl

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSPreparedRequest, AWSRequest

from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_dev.sns_stub import SnsStub


@pytest.fixture(scope="module")
def stub() -> Iterator[SnsStub]:
    with SnsStub(delay_ms=0) as stub:
        yield stub


def test_the_publishing_client_signs_the_body_it_sends(stub: SnsStub) -> None:
    aws = AwsClients(Settings(aws_endpoint_url=stub.url), attempts=1)
    sns = aws.sns_publishing
    sent: list[AWSPreparedRequest] = []
    sns.meta.events.register("before-send.sns.PublishBatch", lambda request, **_: sent.append(request))
    entries = [
        {
            "Id": str(i),
            "Message": f'{{"n": {i}, "note": "a&b=c 100% + é 😀"}}',
            "MessageAttributes": {"purchase_id": {"DataType": "String", "StringValue": f"id {i}/+"}},
        }
        for i in range(10)
    ]
    before = stub.stats()
    response = sns.publish_batch(TopicArn=aws.topic_arn("cart-purchases"), PublishBatchRequestEntries=entries)  # type: ignore[arg-type]
    assert [s["Id"] for s in response["Successful"]] == [str(i) for i in range(10)]
    assert stub.stats()["messages"] == before["messages"] + 10

    (request,) = sent
    assert isinstance(request.body, bytes)  # encoded once, before signing
    fields = dict(parse_qsl(request.body.decode(), strict_parsing=True))
    assert [fields[f"PublishBatchRequestEntries.member.{i + 1}.Message"] for i in range(10)] == [
        e["Message"] for e in entries
    ]
    # the signature sent verifies against the body sent: sign it again at the same time
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
    authorization = headers.pop("Authorization")
    signed = authorization.split("SignedHeaders=", 1)[1].split(",", 1)[0].split(";")
    headers = {k: v for k, v in headers.items() if k.lower() in signed and k.lower() != "host"}
    signer = SigV4Auth(aws.session.get_credentials().get_frozen_credentials(), "sns", aws.settings.aws_region)

    def signature(body: bytes) -> str:
        again = AWSRequest(method=request.method, url=request.url, headers=headers, data=body)
        again.context["timestamp"] = headers["X-Amz-Date"]
        return signer.signature(signer.string_to_sign(again, signer.canonical_request(again)), again)

    assert authorization.endswith(f"Signature={signature(request.body)}")
    assert not authorization.endswith(f"Signature={signature(request.body.replace(b'%25', b'%2B', 1))}")


def test_the_publishing_client_sends_what_a_default_client_sends(stub: SnsStub) -> None:
    aws = AwsClients(Settings(aws_endpoint_url=stub.url), attempts=1)
    bodies: list[bytes] = []
    entries = [
        {"Id": "0", "Message": '{"note": "a&b=c 100% + é 😀 ~._-"}', "Subject": "x y"},
        {"Id": "1", "Message": "plain", "MessageGroupId": "g/1"},
    ]
    for sns in (aws.sns, aws.sns_publishing):
        sns.meta.events.register("before-send.sns.PublishBatch", lambda request, **_: bodies.append(request.body))
        sns.publish_batch(TopicArn=aws.topic_arn("cart-purchases"), PublishBatchRequestEntries=entries)  # type: ignore[arg-type]
    default, publishing = bodies
    assert publishing == (default.encode() if isinstance(default, str) else default)


def test_the_other_clients_are_unchanged(stub: SnsStub) -> None:
    """Only the publishing client skips parameter validation; the others still refuse a bad call."""
    from botocore.exceptions import ParamValidationError

    aws = AwsClients(Settings(aws_endpoint_url=stub.url), attempts=1)
    with pytest.raises(ParamValidationError):
        aws.sns.publish(TopicArn="t")  # type: ignore[call-arg]
