"""The CloudFormation template comes from the resource description: the committed file is what it
gives, cfn-lint finds nothing in it, it holds everything provisioning creates, its roles allow only
what each function calls, and it deploys into the moto server's CloudFormation."""

from __future__ import annotations

import ast
import io
import json
import re
import time
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cart_api.settings import LOCAL_DEV_KEYS, Settings
from cart_aws import template as template_module
from cart_aws.aws import AwsClients
from cart_aws.limits import ApiLimits
from cart_aws.provision import provision
from cart_aws.resources import cart_stack
from cart_aws.settings import AwsSettings
from cart_aws.template import TEMPLATE_FILE, main, render, render_yaml, waf_body_inspection_limit
from cart_dev.local_aws import MotoServer

DEFAULTS = AwsSettings.model_construct()


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return render(cart_stack(DEFAULTS))


def test_the_committed_template_is_what_the_description_gives() -> None:
    assert TEMPLATE_FILE.read_text(encoding="utf-8") == render_yaml(), "run: make template"
    assert main(["--check"]) == 0


def test_check_fails_and_says_what_to_run_when_the_file_drifted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    drifted = tmp_path / "template.yaml"
    drifted.write_text(render_yaml().replace("RetentionInDays: 30", "RetentionInDays: 7"), encoding="utf-8")
    monkeypatch.setattr(template_module, "TEMPLATE_FILE", drifted)
    assert main(["--check"]) == 1
    assert "out of date: run make template" in capsys.readouterr().err
    assert main([]) == 0  # writes it again
    assert drifted.read_text(encoding="utf-8") == render_yaml()


def test_the_template_does_not_depend_on_this_machines_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CART_PURCHASES_TOPIC", "someone-elses-topic")
    assert "someone-elses-topic" not in render_yaml()


def cfn_lint(path: Path) -> list[Any]:
    """cfn-lint's findings on a template, informational ones included."""
    from cfnlint.api import ManualArgs, lint_file  # 4.7 s to import: here, not in every worker's collection

    return list(lint_file(path, config=ManualArgs(include_checks=["I"])))


def test_cfn_lint_finds_no_error_warning_or_information() -> None:
    assert cfn_lint(TEMPLATE_FILE) == []


def test_cfn_lint_does_report_what_is_wrong(tmp_path: Path) -> None:
    # the same linter call on a broken copy: proof that the empty answer above is a verdict
    broken = tmp_path / "template.yaml"
    broken.write_text(render_yaml().replace("Runtime: python3.11", "Runtime: python2.7"), encoding="utf-8")
    rules = {m.rule.id for m in cfn_lint(broken)}
    assert rules, "cfn-lint found nothing in a template with a retired Lambda runtime"


# --- what provisioning creates is in the template ----------------------------------------------
_PROVISIONED_KINDS = {
    "AWS::SNS::Topic": ("sns topic", "TopicName"),
    "AWS::SQS::Queue": ("sqs queue", "QueueName"),
    "AWS::DynamoDB::Table": ("dynamodb table", "TableName"),
    "AWS::S3::Bucket": ("s3 bucket", "BucketName"),
    "AWS::CloudWatch::Alarm": ("cloudwatch alarm", "AlarmName"),
}


def _described_name(value: Any, lake_bucket: str) -> str:
    """The description's name of a deployed one: ``cart-purchases-${Stage}`` -> ``cart-purchases``;
    the LakeBucketName parameter stands for CART_LAKE_BUCKET."""
    if value == {"Ref": "LakeBucketName"}:
        return lake_bucket
    return re.sub(r"[-_]\$\{Stage\}$", "", value["Fn::Sub"])


def _template_inventory(template: dict[str, Any], lake_bucket: str) -> set[tuple[str, str]]:
    """(kind, name) of every resource, in provisioning's words (``Change.kind``, ``Change.name``)."""
    resources = template["Resources"]

    def name_of(reference: Any) -> str:
        logical = reference["Ref"] if "Ref" in reference else reference["Fn::GetAtt"][0]
        _, prop = _PROVISIONED_KINDS[resources[logical]["Type"]]
        return _described_name(resources[logical]["Properties"][prop], lake_bucket)

    found: set[tuple[str, str]] = set()
    for resource in resources.values():
        props = resource["Properties"]
        if resource["Type"] in _PROVISIONED_KINDS:
            kind, prop = _PROVISIONED_KINDS[resource["Type"]]
            found.add((kind, _described_name(props[prop], lake_bucket)))
        if resource["Type"] == "AWS::SNS::Subscription":
            found.add(("sns subscription", f"{name_of(props['TopicArn'])} -> {name_of(props['Endpoint'])}"))
        if resource["Type"] == "AWS::Glue::Database":
            found.add(("glue database", _described_name(props["DatabaseInput"]["Name"], lake_bucket)))
        for config in props.get("NotificationConfiguration", {}).get("QueueConfigurations", []):
            (rule,) = config["Filter"]["S3Key"]["Rules"]
            bucket = _described_name(props["BucketName"], lake_bucket)
            found.add(("s3 notification", f"{bucket} {rule['Value']} -> {name_of(config['Queue'])}"))
    return found


def test_everything_provisioning_creates_is_in_the_template(settings: Settings, template: dict[str, Any]) -> None:
    # what provisioning really did on the moto server, not what the description says it would
    provisioned = {(c.kind, c.name) for c in provision(settings)}
    in_template = _template_inventory(template, settings.lake_bucket)
    assert provisioned - in_template == set(), "provisioned but missing from the template"
    # the rest of the template's alarms are the template-only ones, on the functions and the API
    only_in_template = {("cloudwatch alarm", a.name) for a in cart_stack(settings).metric_alarms}
    assert in_template - provisioned == only_in_template


# --- least privilege --------------------------------------------------------------------------
def _role_statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    (policy,) = template["Resources"][role]["Properties"]["Policies"]
    statements: list[dict[str, Any]] = policy["PolicyDocument"]["Statement"]
    return statements


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def test_each_function_may_call_what_it_declares_on_those_resources_only(template: dict[str, Any]) -> None:
    for role in ("CartApiRole", "CartWorkerRole", "CartLogsDeliveryRole", "CartLogsSubscriptionRole"):
        for statement in _role_statements(template, role):
            assert all(not a.endswith("*") for a in _actions(statement)), (role, statement)
            if statement["Resource"] == "*":
                # PutMetricData has no resource-level permission: a namespace condition instead
                assert _actions(statement) == ["cloudwatch:PutMetricData"], (role, statement)
                assert statement["Condition"] == {"StringEquals": {"cloudwatch:namespace": "CartLakehouse"}}
            else:
                assert isinstance(statement["Resource"], dict), (role, statement)  # Ref / GetAtt / Sub

    def allowed(role: str) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for statement in _role_statements(template, role):
            out.setdefault(json.dumps(statement["Resource"], sort_keys=True), set()).update(_actions(statement))
        return out

    def arn(logical: str) -> str:
        kind = template["Resources"][logical]["Type"]
        value = {"Ref": logical} if kind == "AWS::SNS::Topic" else {"Fn::GetAtt": [logical, "Arn"]}
        return json.dumps(value, sort_keys=True)

    api = allowed("CartApiRole")
    assert api[arn("CartPurchasesTopic")] == {"sns:Publish", "sns:GetTopicAttributes"}
    assert api[arn("CartPurchasesTable")] == {"dynamodb:GetItem", "dynamodb:DescribeTable"}
    assert api[arn("CartIdempotencyTable")] == {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}
    assert not any(a.startswith("sqs:") for actions in api.values() for a in actions)
    worker = allowed("CartWorkerRole")
    assert worker[arn("CartPurchasesTable")] == {"dynamodb:BatchWriteItem"}
    assert worker[arn("CartPurchasesDlqQueue")] == {"sqs:GetQueueUrl", "sqs:SendMessage"}
    # what Lambda's poller needs for the queue trigger, on the purchases queue alone
    assert worker[arn("CartPurchasesQueue")] == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
    }
    assert not any(a.startswith("sns:") for actions in worker.values() for a in actions)


def test_no_api_key_is_written_in_the_template(template: dict[str, Any]) -> None:
    text = render_yaml()
    for key in LOCAL_DEV_KEYS.values():
        assert key not in text
    secret = template["Resources"]["CartApiKeysSecret"]["Properties"]
    assert "SecretString" not in secret
    assert secret["GenerateSecretString"]["GenerateStringKey"] == "default"
    # both functions read cart_api's Settings, which want production keys on AWS
    for function in ("CartApiFunction", "CartWorkerFunction"):
        variables = template["Resources"][function]["Properties"]["Environment"]["Variables"]
        assert variables["CART_API_KEYS"] == {"Fn::Sub": "{{resolve:secretsmanager:${CartApiKeysSecret}:SecretString}}"}


# --- the API's limits: the template states the app's -----------------------------------------
def test_the_templates_limits_are_the_apps_defaults(template: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    app = Settings.model_construct()  # the app's defaults, not this machine's environment
    resources = template["Resources"]
    (throttle,) = resources["CartApiStage"]["Properties"]["MethodSettings"]
    assert (throttle["ThrottlingRateLimit"], throttle["ThrottlingBurstLimit"]) == (
        app.rate_limit_per_second,
        app.rate_limit_burst,
    )
    acl = resources["CartApiWebAcl"]["Properties"]
    rules = {rule["Name"]: rule for rule in acl["Rules"]}
    rate = rules["rate-per-ip"]["Statement"]["RateBasedStatement"]
    # one client's rate over WAF's window, per address
    assert rate["Limit"] == app.rate_limit_per_second * rate["EvaluationWindowSec"]
    assert rules["rate-per-ip"]["Action"]["Block"]["CustomResponse"]["ResponseCode"] == 429  # as the app answers
    size = rules["body-size"]["Statement"]["SizeConstraintStatement"]
    assert (size["ComparisonOperator"], size["Size"]) == ("GT", app.max_body_bytes)
    # a body longer than WAF inspects counts as over the limit, and WAF inspects at least the limit
    assert size["FieldToMatch"] == {"Body": {"OversizeHandling": "MATCH"}}
    inspected = acl["AssociationConfig"]["RequestBody"]["API_GATEWAY"]["DefaultSizeInspectionLimit"]
    assert int(inspected.removeprefix("KB_")) * 1024 >= app.max_body_bytes
    assert rules["body-size"]["Action"]["Block"]["CustomResponse"]["ResponseCode"] == 413

    # the function is told the same numbers, and the CORS origins of the stack's parameter
    variables = resources["CartApiFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["CART_CORS_ALLOW_ORIGINS"] == {"Ref": "CorsAllowOrigins"}
    assert template["Parameters"]["CorsAllowOrigins"]["Default"] == ""
    for name in ("CART_RATE_LIMIT_PER_SECOND", "CART_RATE_LIMIT_BURST", "CART_MAX_BODY_BYTES"):
        monkeypatch.setenv(name, variables[name])
    monkeypatch.setenv("CART_CORS_ALLOW_ORIGINS", template["Parameters"]["CorsAllowOrigins"]["Default"])
    deployed = Settings()
    assert (deployed.rate_limit_per_second, deployed.rate_limit_burst, deployed.max_body_bytes) == (
        app.rate_limit_per_second,
        app.rate_limit_burst,
        app.max_body_bytes,
    )
    assert deployed.cors_allow_origins == app.cors_allow_origins == []


def test_changed_limits_change_the_stage_waf_and_function_alike() -> None:
    stack = cart_stack(DEFAULTS)
    tighter = ApiLimits(rate_per_second=20.0, burst=40, max_body_bytes=40_000)
    changed = render(replace(stack, apis=tuple(replace(a, limits=tighter) for a in stack.apis)))["Resources"]
    (throttle,) = changed["CartApiStage"]["Properties"]["MethodSettings"]
    assert (throttle["ThrottlingRateLimit"], throttle["ThrottlingBurstLimit"]) == (20.0, 40)
    acl = changed["CartApiWebAcl"]["Properties"]
    assert acl["Rules"][0]["Statement"]["RateBasedStatement"]["Limit"] == 6000
    assert acl["Rules"][1]["Statement"]["SizeConstraintStatement"]["Size"] == 40_000
    assert acl["AssociationConfig"]["RequestBody"]["API_GATEWAY"]["DefaultSizeInspectionLimit"] == "KB_48"
    variables = changed["CartApiFunction"]["Properties"]["Environment"]["Variables"]
    assert (variables["CART_RATE_LIMIT_PER_SECOND"], variables["CART_MAX_BODY_BYTES"]) == ("20.0", "40000")
    assert "CART_RATE_LIMIT_PER_SECOND" not in changed["CartWorkerFunction"]["Properties"]["Environment"]["Variables"]
    with pytest.raises(ValueError, match="WAF inspects at most 64 KiB"):
        waf_body_inspection_limit(65_537)
    assert waf_body_inspection_limit(16_384) == "KB_16"
    assert waf_body_inspection_limit(16_385) == "KB_32"


def test_a_cors_preflight_reaches_the_function_without_the_authorizer(template: dict[str, Any]) -> None:
    methods = {
        (r["Properties"]["ResourceId"].get("Ref", "root"), r["Properties"]["HttpMethod"]): r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::ApiGateway::Method"
    }
    assert set(methods) == {("root", "ANY"), ("root", "OPTIONS"), ("CartApiProxyResource", "ANY"),
                            ("CartApiProxyResource", "OPTIONS")}  # fmt: skip
    for (resource, verb), method in methods.items():
        if verb == "OPTIONS":
            assert method["AuthorizationType"] == "NONE"
            assert "AuthorizerId" not in method
            assert method["Integration"] == methods[(resource, "ANY")]["Integration"]  # the function answers it
        else:  # with AuthMode cognito, everything else goes through the authorizer
            assert method["AuthorizationType"] == {"Fn::If": ["UseCognito", "COGNITO_USER_POOLS", "NONE"]}


def test_a_queue_trigger_the_queue_would_time_out_is_refused() -> None:
    stack = cart_stack(DEFAULTS)
    worker = next(f for f in stack.functions if f.name == "cart-worker")
    slow = replace(
        stack, functions=tuple(replace(f, timeout_seconds=60) if f is worker else f for f in stack.functions)
    )
    with pytest.raises(ValueError, match=r"hides a message for 30 s, less than function cart-worker may run \(60 s\)"):
        render(slow)


# --- deployed into the moto server's CloudFormation --------------------------------------------
STAGE = "cfntest"  # every name ends in -cfntest: nothing shared with the other tests' resources
STACK = f"cart-{STAGE}"
LAKE = f"cart-{STAGE}-lake"
CODE = f"cart-{STAGE}-code"

# resource types moto's CloudFormation has no model for: it logs a warning, marks them created
# without a type or id, and creates nothing (moto 5.2; checked against its model map below)
MOTO_SKIPS = {
    "AWS::SNS::Subscription",
    "AWS::SQS::QueuePolicy",
    "AWS::Glue::Database",
    "AWS::CloudWatch::Alarm",
    "AWS::SecretsManager::Secret",
    "AWS::ApiGateway::Stage",
    "AWS::ApiGateway::Authorizer",
    "AWS::WAFv2::WebACL",
    "AWS::WAFv2::WebACLAssociation",
    "AWS::KinesisFirehose::DeliveryStream",
    "AWS::Logs::SubscriptionFilter",
    "AWS::Cognito::UserPool",
    "AWS::Cognito::UserPoolClient",
    "AWS::Cognito::UserPoolDomain",
    "AWS::Cognito::UserPoolResourceServer",
}


def _wait(clients: AwsClients, stack_id: str, deadline_seconds: float = 120.0) -> dict[str, Any]:
    """The stack once it is no longer in progress (polled, with a deadline)."""
    cloudformation = clients.client("cloudformation")
    deadline = time.monotonic() + deadline_seconds
    while True:
        stack: dict[str, Any] = cloudformation.describe_stacks(StackName=stack_id)["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS"):
            return stack
        assert time.monotonic() < deadline, f"stack {stack_id} still {stack['StackStatus']}"
        time.sleep(0.2)


@pytest.fixture
def deployed(moto_server: MotoServer) -> Iterator[tuple[AwsClients, dict[str, Any]]]:
    """The committed template as a stack of stage cfntest; deleted afterwards, with what it retains."""
    clients = AwsClients(AwsSettings(aws_endpoint_url=moto_server.endpoint_url))
    cloudformation = clients.client("cloudformation")
    clients.s3.create_bucket(Bucket=CODE)
    for key in ("api.zip", "worker.zip"):  # the handlers' code matters not: moto invokes nothing here
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zipped:
            zipped.writestr("cart_api/lambda_handler.py", "def api_handler(event, context): ...\n")
        clients.s3.put_object(Bucket=CODE, Key=key, Body=archive.getvalue())
    parameters = {
        "Stage": STAGE,
        "LakeBucketName": LAKE,
        "CodeBucket": CODE,
        "ApiCodeKey": "api.zip",
        "WorkerCodeKey": "worker.zip",
        "AuthMode": "api-key",
    }
    stack_id = cloudformation.create_stack(
        StackName=STACK,
        TemplateBody=TEMPLATE_FILE.read_text(encoding="utf-8"),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )["StackId"]
    try:
        yield clients, _wait(clients, stack_id)
    finally:
        cloudformation.delete_stack(StackName=stack_id)
        assert _wait(clients, stack_id)["StackStatus"] == "DELETE_COMPLETE"
        # what DeletionPolicy Retain kept (moto honours it): removed by hand, as an operator would
        for name in ("cart-purchases", "cart-purchases-dlq", "cart-landing", "cart-landing-dlq"):
            clients.sqs.delete_queue(QueueUrl=clients.queue_url(f"{name}-{STAGE}"))
        table = f"cart-purchases-{STAGE}"
        clients.dynamodb.update_table(TableName=table, DeletionProtectionEnabled=False)
        clients.dynamodb.delete_table(TableName=table)
        clients.s3.delete_bucket(Bucket=LAKE)
        for key in ("api.zip", "worker.zip"):
            clients.s3.delete_object(Bucket=CODE, Key=key)
        clients.s3.delete_bucket(Bucket=CODE)
        # and what moto's stack deletion leaves behind (AWS deletes it with the stack)
        apigateway = clients.client("apigateway")
        for api in apigateway.get_rest_apis()["items"]:
            if api["name"] == f"cart-api-{STAGE}":
                apigateway.delete_rest_api(restApiId=api["id"])


def test_moto_has_no_cloudformation_model_for_the_types_it_skips() -> None:
    from moto.cloudformation.parsing import get_model_map  # 3.7 s to import: here, not at collection

    models = get_model_map()
    assert sorted(t for t in MOTO_SKIPS if t in models) == [], "moto supports it now: check it in the deploy test"
    assert sorted(t for t in set(_types(render(cart_stack(DEFAULTS)))) - MOTO_SKIPS if t not in models) == []


def _types(template: dict[str, Any]) -> list[str]:
    return [r["Type"] for r in template["Resources"].values()]


@pytest.mark.integration
def test_the_template_deploys_into_the_moto_servers_cloudformation(
    deployed: tuple[AwsClients, dict[str, Any]], template: dict[str, Any]
) -> None:
    clients, stack = deployed
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    summaries = clients.client("cloudformation").list_stack_resources(StackName=STACK)["StackResourceSummaries"]
    assert {s["ResourceStatus"] for s in summaries} == {"CREATE_COMPLETE"}
    created = {s["LogicalResourceId"]: s["ResourceType"] for s in summaries if s["LogicalResourceId"]}
    # every resource moto has a model for and whose condition holds (AuthMode api-key: no Cognito)
    wanted = {
        logical: r["Type"]
        for logical, r in template["Resources"].items()
        if r["Type"] not in MOTO_SKIPS and "Condition" not in r
    }
    assert created == wanted
    # the skipped ones and those whose condition is false are listed too, without a type or an id
    assert len(summaries) == len(template["Resources"])

    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert re.fullmatch(rf"https://\w+\.execute-api\.us-east-1\.amazonaws\.com/{STAGE}/", outputs["ApiUrl"])
    assert outputs["CartPurchasesTableName"] == f"cart-purchases-{STAGE}"
    assert outputs["CartPurchasesQueueArn"] == clients.queue_arn(f"cart-purchases-{STAGE}")

    # the queue with its redrive policy
    attrs = clients.sqs.get_queue_attributes(
        QueueUrl=clients.queue_url(f"cart-purchases-{STAGE}"), AttributeNames=["All"]
    )["Attributes"]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == clients.queue_arn(f"cart-purchases-dlq-{STAGE}")
    assert int(redrive["maxReceiveCount"]) == DEFAULTS.max_receive_count
    assert attrs["VisibilityTimeout"] == str(DEFAULTS.visibility_timeout)

    # the table with its index and deletion protection
    table = clients.dynamodb.describe_table(TableName=f"cart-purchases-{STAGE}")["Table"]
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == DEFAULTS.ingest_hour_index
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["ingest_shard", "received_at"]
    assert table["DeletionProtectionEnabled"] is True

    # the bucket: encrypted. moto's CloudFormation applies a bucket's encryption and tags only (not
    # its versioning, lifecycle or notifications: provisioning's tests check those on moto)
    rules = clients.s3.get_bucket_encryption(Bucket=LAKE)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert "Status" not in clients.s3.get_bucket_versioning(Bucket=LAKE)

    # the worker's queue trigger, and its role's policy as rendered
    functions = clients.client("lambda")
    (mapping,) = functions.list_event_source_mappings(FunctionName=f"cart-worker-{STAGE}")["EventSourceMappings"]
    assert mapping["EventSourceArn"] == clients.queue_arn(f"cart-purchases-{STAGE}")
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert (mapping["BatchSize"], mapping["ScalingConfig"]) == (10, {"MaximumConcurrency": 10})
    api = functions.get_function(FunctionName=f"cart-api-{STAGE}")["Configuration"]
    assert api["Handler"] == "cart_api.lambda_handler.api_handler"
    assert api["Environment"]["Variables"]["CART_PURCHASES_TOPIC"] == f"cart-purchases-{STAGE}"
    role = api["Role"].rsplit("/", 1)[1]
    policy: Any = clients.client("iam").get_role_policy(RoleName=role, PolicyName="least-privilege")["PolicyDocument"]
    if isinstance(policy, str):  # moto 5.2 keeps a CloudFormation role's inline policy as Python's repr of it
        policy = ast.literal_eval(policy)
    topic_statement = next(s for s in policy["Statement"] if "sns:Publish" in s["Action"])
    assert topic_statement["Resource"] == clients.topic_arn(f"cart-purchases-{STAGE}")

    groups = clients.client("logs").describe_log_groups(logGroupNamePrefix="/aws/lambda/cart-")["logGroups"]
    assert {(g["logGroupName"], g["retentionInDays"]) for g in groups} >= {
        (f"/aws/lambda/cart-api-{STAGE}", 30),
        (f"/aws/lambda/cart-worker-{STAGE}", 30),
    }
