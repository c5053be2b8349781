"""The CloudFormation template of the cart stack, rendered from the resource description.

``render(stack)`` turns the description of ``cart_aws/resources.py`` (the one provisioning
applies to the local AWS) into a template; ``python -m cart_aws.template`` (``make template``)
writes it to ``deploy/template.yaml`` and ``--check`` fails when the committed file differs from
what the description gives (the test suite runs the same comparison).

Every name carries the ``Stage`` parameter (``cart-purchases-prod``; the Glue database
``cart_lakehouse_prod``) so that stages share an account; the lake bucket's name, globally
unique, is the ``LakeBucketName`` parameter. Intrinsic functions are written in their JSON form
(``{"Ref": ...}``, ``{"Fn::GetAtt": [...]}``, ``{"Fn::Sub": ...}``), which YAML carries as they
are, so a plain YAML dump needs no custom tags.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from cart_aws.limits import WAF_WINDOW_SECONDS
from cart_aws.resources import (
    Access,
    Api,
    ApiKeysSecret,
    Bucket,
    Function,
    LogArchive,
    MetricAlarm,
    NameOf,
    Queue,
    QueueDepthAlarm,
    Stack,
    Table,
    UserPool,
    cart_stack,
    queue_depth_alarm,
    queue_policy_statements,
)
from cart_aws.settings import AwsSettings

TEMPLATE_FILE = Path(__file__).resolve().parents[1] / "deploy" / "template.yaml"
HEADER = (
    "# Generated from the resource description (cart_aws/resources.py) by `make template`\n"
    "# (python -m cart_aws.template): do not edit. Parameters and outputs: README, Running on AWS.\n"
)
LAKE_BUCKET_PARAMETER = "LakeBucketName"
USE_COGNITO = "UseCognito"
API_SCOPE = "purchases"  # the OAuth scope a Cognito client needs to call the API

Json = dict[str, Any]


def ref(name: str) -> Json:
    return {"Ref": name}


def get_att(resource: str, attribute: str) -> Json:
    return {"Fn::GetAtt": [resource, attribute]}


def sub(text: str) -> Json:
    return {"Fn::Sub": text}


def staged(name: str, separator: str = "-") -> Json:
    """A described name as deployed: with the stage (``cart-purchases`` -> ``cart-purchases-prod``)."""
    return sub(f"{name}{separator}${{Stage}}")


def logical_id(name: str, kind: str) -> str:
    """CloudFormation's id of a described resource: ``cart-purchases-dlq``, Queue -> CartPurchasesDlqQueue."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name) if part) + kind


# what becomes of a stateful resource when the stack is deleted or an update replaces it (stated
# for each: cfn-lint's I3011 asks for it, and the default, delete, is not always wanted)
RETAIN = {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"}
DELETE = {"DeletionPolicy": "Delete", "UpdateReplacePolicy": "Delete"}


def _policy(statements: list[Json]) -> Json:
    return {"Version": "2012-10-17", "Statement": statements}


def _assume(service: str, condition: Json | None = None) -> Json:
    statement: Json = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    if condition:
        statement["Condition"] = condition
    return _policy([statement])


class _TemplateArns:
    """ARNs of described resources as intrinsic functions (``queue_policy_statements`` and
    ``queue_depth_alarm`` build the same documents with real ARNs for provisioning)."""

    def topic(self, name: str) -> Any:
        return ref(logical_id(name, "Topic"))

    def queue(self, name: str) -> Any:
        return get_att(logical_id(name, "Queue"), "Arn")

    def bucket(self, name: str) -> Any:
        # from the name parameter, not the bucket resource: the bucket's notification needs the
        # queue's policy first, which would otherwise need the bucket (a circular dependency)
        return sub(f"arn:${{AWS::Partition}}:s3:::${{{LAKE_BUCKET_PARAMETER}}}")

    @property
    def account_id(self) -> Any:
        return ref("AWS::AccountId")

    def queue_name(self, name: str) -> Any:
        return get_att(logical_id(name, "Queue"), "QueueName")


class _Renderer:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.arns = _TemplateArns()
        self.resources: Json = {}
        self.outputs: Json = {}
        if len(stack.buckets) != 1:
            raise ValueError(
                f"the template has one lake bucket ({LAKE_BUCKET_PARAMETER}); the description has {len(stack.buckets)}"
            )
        self._check_timeouts()

    def _check_timeouts(self) -> None:
        """Lambda refuses a queue trigger whose queue hides messages for less than the function may run."""
        functions = {f.name: f for f in self.stack.functions}
        queues = {q.name: q for q in self.stack.queues}
        for trigger in self.stack.queue_triggers:
            function, queue = functions[trigger.function], queues[trigger.queue]
            if queue.visibility_timeout < function.timeout_seconds:
                raise ValueError(
                    f"queue {queue.name} hides a message for {queue.visibility_timeout} s, less than function "
                    f"{function.name} may run ({function.timeout_seconds} s): Lambda refuses the trigger"
                )

    def add(self, logical: str, resource_type: str, properties: Json, **extra: Any) -> str:
        if logical in self.resources:
            raise ValueError(f"two described resources render as {logical}")
        self.resources[logical] = {"Type": resource_type, **extra, "Properties": properties}
        return logical

    def output(self, name: str, description: str, value: Any, condition: str | None = None) -> None:
        self.outputs[name] = {"Description": description, "Value": value}
        if condition:
            self.outputs[name]["Condition"] = condition

    @property
    def tags(self) -> list[Json]:
        return [{"Key": k, "Value": v} for k, v in self.stack.tags.items()]

    def template(self) -> Json:
        s = self.stack
        for topic in s.topics:
            logical = self.add(
                logical_id(topic.name, "Topic"), "AWS::SNS::Topic", {"TopicName": staged(topic.name), "Tags": self.tags}
            )
            self.output(f"{logical}Arn", topic.purpose, ref(logical))
        for queue in s.queues:
            self.queue(queue)
        for subscription in s.subscriptions:
            self.add(
                logical_id(f"{subscription.topic}-to-{subscription.queue}", "Subscription"),
                "AWS::SNS::Subscription",
                {
                    "TopicArn": self.arns.topic(subscription.topic),
                    "Protocol": "sqs",
                    "Endpoint": self.arns.queue(subscription.queue),
                    "RawMessageDelivery": subscription.raw_message_delivery,
                },
            )
        for table in s.tables:
            self.table(table)
        for bucket in s.buckets:
            self.bucket(bucket)
        for database in s.glue_databases:
            self.add(
                logical_id(database.name, "GlueDatabase"),
                "AWS::Glue::Database",
                {
                    "CatalogId": ref("AWS::AccountId"),
                    "DatabaseInput": {"Name": staged(database.name, "_"), "Description": database.purpose},
                },
            )
        for alarm in s.alarms:
            self.queue_alarm(alarm)
        for function in s.functions:
            self.function(function)
        for trigger in s.queue_triggers:
            self.add(
                logical_id(f"{trigger.function}-from-{trigger.queue}", "Trigger"),
                "AWS::Lambda::EventSourceMapping",
                {
                    "EventSourceArn": self.arns.queue(trigger.queue),
                    "FunctionName": ref(logical_id(trigger.function, "Function")),
                    "BatchSize": trigger.batch_size,
                    "FunctionResponseTypes": ["ReportBatchItemFailures"] if trigger.report_batch_item_failures else [],
                    "ScalingConfig": {"MaximumConcurrency": trigger.max_concurrency},
                    "Enabled": True,
                },
            )
        for secret in s.secrets:
            self.secret(secret)
        for pool in s.user_pools:
            self.user_pool(pool)
        for api in s.apis:
            self.api(api)
        for metric_alarm in s.metric_alarms:
            self.metric_alarm(metric_alarm)
        for archive in s.log_archives:
            self.log_archive(archive)
        return {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Description": (
                "cart lakehouse: ingest API and worker (Lambda), SNS/SQS with dead-letter queues, DynamoDB, "
                "the lake bucket, Glue, alarms, WAF, log archive. Generated from cart_aws/resources.py."
            ),
            "Parameters": self.parameters(),
            "Conditions": {USE_COGNITO: {"Fn::Equals": [ref("AuthMode"), "cognito"]}},
            "Resources": self.resources,
            "Outputs": self.outputs,
        }

    def parameters(self) -> Json:
        return {
            "Stage": {
                "Type": "String",
                "Default": "prod",
                "AllowedPattern": "^[a-z][a-z0-9]{0,15}$",
                "Description": "Suffix of every resource name (cart-purchases-<Stage>) and the API's stage name",
            },
            LAKE_BUCKET_PARAMETER: {
                "Type": "String",
                "AllowedPattern": "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
                "Description": "Name of the lake bucket (S3 names are global); set CART_LAKE_BUCKET to it",
            },
            "CodeBucket": {"Type": "String", "Description": "S3 bucket holding the functions' zip files"},
            **{
                f.code_key_parameter: {"Type": "String", "Description": f"S3 key of the {f.name} function's zip file"}
                for f in self.stack.functions
            },
            "AuthMode": {
                "Type": "String",
                "AllowedValues": ["api-key", "cognito"],
                "Default": "api-key",
                "Description": (
                    "api-key: clients send X-API-Key (keys in the Secrets Manager secret); cognito: the API "
                    "requires a Cognito access token (client credentials) and its authorizer checks it"
                ),
            },
            **{
                api.cors_parameter: {
                    "Type": "String",
                    "Default": "",
                    "Description": (
                        "Origins a browser may call the API from (CORS), comma-separated, e.g. "
                        "https://shop.example; empty (default): none, no CORS headers (CART_CORS_ALLOW_ORIGINS)"
                    ),
                }
                for api in self.stack.apis
            },
        }

    # --- SQS ----------------------------------------------------------------------------------
    def queue(self, queue: Queue) -> None:
        logical = logical_id(queue.name, "Queue")
        properties: Json = {
            "QueueName": staged(queue.name),
            "VisibilityTimeout": queue.visibility_timeout,
            "MessageRetentionPeriod": queue.retention_seconds,
            "ReceiveMessageWaitTimeSeconds": queue.long_poll_seconds,
        }
        if queue.dead_letter_queue:
            properties["RedrivePolicy"] = {
                "deadLetterTargetArn": self.arns.queue(queue.dead_letter_queue),
                "maxReceiveCount": queue.max_receive_count,
            }
        properties["Tags"] = self.tags
        # kept: their messages are accepted purchases (or the events of landed files) not yet stored
        self.add(logical, "AWS::SQS::Queue", properties, **RETAIN)
        self.output(f"{logical}Arn", queue.purpose, get_att(logical, "Arn"))
        statements = queue_policy_statements(queue, self.stack, self.arns)
        if statements:
            self.add(
                f"{logical}Policy",
                "AWS::SQS::QueuePolicy",
                {"Queues": [ref(logical)], "PolicyDocument": _policy(statements)},
            )

    def queue_alarm(self, alarm: QueueDepthAlarm) -> None:
        properties = queue_depth_alarm(alarm, self.arns)
        properties["AlarmName"] = staged(alarm.name)
        self.add(logical_id(alarm.name, "Alarm"), "AWS::CloudWatch::Alarm", properties)

    # --- DynamoDB -----------------------------------------------------------------------------
    def table(self, table: Table) -> None:
        logical = logical_id(table.name, "Table")
        properties: Json = {
            "TableName": staged(table.name),
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": table.key_schema(),
            "AttributeDefinitions": table.attribute_definitions(),
        }
        if table.indexes:
            properties["GlobalSecondaryIndexes"] = [table.index_spec(i.name) for i in table.indexes]
        if table.ttl_attribute:
            properties["TimeToLiveSpecification"] = {"AttributeName": table.ttl_attribute, "Enabled": True}
        properties["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": table.point_in_time_recovery}
        properties["DeletionProtectionEnabled"] = table.deletion_protection
        properties["Tags"] = self.tags
        # a protected table is kept when the stack is deleted or the table would be replaced; the
        # others hold what expires (idempotency keys) or is rebuilt (the KPIs, from Delta)
        self.add(logical, "AWS::DynamoDB::Table", properties, **(RETAIN if table.deletion_protection else DELETE))
        self.output(f"{logical}Name", table.purpose, ref(logical))

    # --- S3 -----------------------------------------------------------------------------------
    def bucket(self, bucket: Bucket) -> None:
        logical = logical_id(bucket.name, "Bucket")
        rules: list[Json] = []
        for rule in bucket.lifecycle:
            entry: Json = {
                "Id": rule.id,
                "Prefix": rule.prefix,
                "Status": "Enabled",
                "Transitions": [{"StorageClass": rule.storage_class, "TransitionInDays": rule.transition_days}],
            }
            if rule.expiration_days:
                entry["ExpirationInDays"] = rule.expiration_days
            rules.append(entry)
        rules.append(
            {
                "Id": "housekeeping",
                "Status": "Enabled",
                "NoncurrentVersionExpiration": {"NoncurrentDays": bucket.noncurrent_version_days},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": bucket.abort_multipart_days},
            }
        )
        notifications = [n for n in self.stack.notifications if n.bucket == bucket.name]
        properties: Json = {
            "BucketName": ref(LAKE_BUCKET_PARAMETER),
            "VersioningConfiguration": {"Status": "Enabled" if bucket.versioning else "Suspended"},
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": bucket.encryption}}
                ]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            "LifecycleConfiguration": {"Rules": rules},
        }
        if notifications:
            properties["NotificationConfiguration"] = {
                "QueueConfigurations": [
                    {
                        "Event": event,
                        "Queue": self.arns.queue(n.queue),
                        "Filter": {"S3Key": {"Rules": [{"Name": "prefix", "Value": n.prefix}]}},
                    }
                    for n in notifications
                    for event in n.events
                ]
            }
        properties["Tags"] = self.tags
        # S3 checks it may deliver to the queue when the configuration is put: the policy first
        depends = sorted({f"{logical_id(n.queue, 'Queue')}Policy" for n in notifications})
        extra: Json = dict(RETAIN)
        if depends:
            extra["DependsOn"] = depends
        self.add(logical, "AWS::S3::Bucket", properties, **extra)
        self.output(f"{logical}Name", bucket.purpose, ref(logical))

    # --- Lambda -------------------------------------------------------------------------------
    def _access_statement(self, access: Access) -> Json:
        resource: Any
        if access.kind == "topic":
            resource = self.arns.topic(access.name)
        elif access.kind == "queue":
            resource = self.arns.queue(access.name)
        else:
            resource = get_att(logical_id(access.name, "Table"), "Arn")
        return {"Effect": "Allow", "Action": list(access.actions), "Resource": resource}

    def _name_of(self, name: NameOf) -> Any:
        if name.kind == "topic":
            return get_att(logical_id(name.name, "Topic"), "TopicName")
        if name.kind == "queue":
            return self.arns.queue_name(name.name)
        return ref(logical_id(name.name, "Table"))

    def function(self, function: Function) -> None:
        logical = logical_id(function.name, "Function")
        log_group = self.add(
            logical_id(function.name, "LogGroup"),
            "AWS::Logs::LogGroup",
            {
                "LogGroupName": sub(f"/aws/lambda/{function.name}-${{Stage}}"),
                "RetentionInDays": function.log_retention_days,
            },
            **DELETE,  # archived in the lake bucket (the log archive)
        )
        statements: list[Json] = [
            {
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": get_att(log_group, "Arn"),
            },
            *(self._access_statement(a) for a in function.access),
        ]
        for trigger in self.stack.queue_triggers:
            if trigger.function == function.name:  # what Lambda's poller does with the function's role
                statements.append(
                    {
                        "Effect": "Allow",
                        "Action": [
                            "sqs:ReceiveMessage",
                            "sqs:DeleteMessage",
                            "sqs:ChangeMessageVisibility",
                            "sqs:GetQueueAttributes",
                        ],
                        "Resource": self.arns.queue(trigger.queue),
                    }
                )
        if function.metrics_namespace:
            # PutMetricData has no resource-level permission: the namespace condition is the limit
            statements.append(
                {
                    "Effect": "Allow",
                    "Action": "cloudwatch:PutMetricData",
                    "Resource": "*",
                    "Condition": {"StringEquals": {"cloudwatch:namespace": function.metrics_namespace}},
                }
            )
        role = self.add(
            logical_id(function.name, "Role"),
            "AWS::IAM::Role",
            {
                "Description": f"What the {function.name} function calls, and nothing else",
                "AssumeRolePolicyDocument": _assume("lambda.amazonaws.com"),
                "Policies": [{"PolicyName": "least-privilege", "PolicyDocument": _policy(statements)}],
            },
        )
        environment: Json = {
            "CART_AWS_ENDPOINT_URL": "",  # empty: real AWS, no emulator
            "CART_AWS_REGION": ref("AWS::Region"),
        }
        for key, value in function.environment.items():
            environment[key] = self._name_of(value) if isinstance(value, NameOf) else value
        apis = {a.name: a for a in self.stack.apis}
        for api in apis.values():
            if api.function == function.name:
                environment |= _limits_environment(api)
        for pool in self.stack.user_pools:
            if apis[pool.api].function == function.name:
                environment[pool.env_var] = ref("AuthMode")
        for secret in self.stack.secrets:
            if function.name in secret.functions:
                # a dynamic reference, resolved by CloudFormation at deploy time: the key itself
                # is never in the template
                secret_id = logical_id(secret.name, "Secret")
                environment[secret.env_var] = sub(f"{{{{resolve:secretsmanager:${{{secret_id}}}:SecretString}}}}")
        self.add(
            logical,
            "AWS::Lambda::Function",
            {
                "FunctionName": staged(function.name),
                "Description": function.purpose,
                "Runtime": function.runtime,
                "Handler": function.handler,
                "Code": {"S3Bucket": ref("CodeBucket"), "S3Key": ref(function.code_key_parameter)},
                "Role": get_att(role, "Arn"),
                "MemorySize": function.memory_mb,
                "Timeout": function.timeout_seconds,
                "Environment": {"Variables": environment},
                "LoggingConfig": {"LogGroup": ref(log_group)},
                "Tags": self.tags,
            },
        )

    # --- API: REST API, Cognito, WAF, secret --------------------------------------------------
    def secret(self, secret: ApiKeysSecret) -> None:
        logical = logical_id(secret.name, "Secret")
        self.add(
            logical,
            "AWS::SecretsManager::Secret",
            {
                "Name": staged(secret.name),
                "Description": secret.purpose,
                # {"<client>": "<generated key>"}: the JSON shape of CART_API_KEYS
                "GenerateSecretString": {
                    "SecretStringTemplate": "{}",
                    "GenerateStringKey": secret.client,
                    "PasswordLength": secret.key_length,
                    "ExcludePunctuation": True,
                },
                "Tags": self.tags,
            },
            **DELETE,  # Secrets Manager still keeps a deleted secret for its recovery window
        )
        self.output(f"{logical}Arn", f"{secret.purpose} (read it: aws secretsmanager get-secret-value)", ref(logical))

    def user_pool(self, pool: UserPool) -> None:
        logical = logical_id(pool.name, "UserPool")
        self.add(
            logical,
            "AWS::Cognito::UserPool",
            {
                "UserPoolName": staged(pool.name),
                # machine clients only: nobody signs up
                "AdminCreateUserConfig": {"AllowAdminCreateUserOnly": True},
                "UserPoolTags": dict(self.stack.tags),
            },
            Condition=USE_COGNITO,
            **DELETE,  # it holds app clients only, no users
        )
        server = self.add(
            f"{logical}ResourceServer",
            "AWS::Cognito::UserPoolResourceServer",
            {
                "UserPoolId": ref(logical),
                "Identifier": staged(pool.api),
                "Name": staged(pool.api),
                "Scopes": [{"ScopeName": API_SCOPE, "ScopeDescription": "Post and read purchases"}],
            },
            Condition=USE_COGNITO,
        )
        self.add(
            f"{logical}Client",
            "AWS::Cognito::UserPoolClient",
            {
                "UserPoolId": ref(logical),
                "ClientName": staged(pool.name),
                "GenerateSecret": True,
                "AllowedOAuthFlowsUserPoolClient": True,
                "AllowedOAuthFlows": ["client_credentials"],
                "AllowedOAuthScopes": [sub(f"{pool.api}-${{Stage}}/{API_SCOPE}")],
            },
            Condition=USE_COGNITO,
            DependsOn=server,
        )
        self.add(
            f"{logical}Domain",
            "AWS::Cognito::UserPoolDomain",
            {"UserPoolId": ref(logical), "Domain": sub(f"{pool.name}-${{Stage}}-${{AWS::AccountId}}")},
            Condition=USE_COGNITO,
        )
        self.output(f"{logical}Id", pool.purpose, ref(logical), USE_COGNITO)
        self.output(
            f"{logical}ClientId",
            "App client of the API's callers (its secret: Cognito console or CLI)",
            ref(f"{logical}Client"),
            USE_COGNITO,
        )
        self.output(
            f"{logical}TokenUrl",
            "OAuth 2.0 token endpoint (client_credentials) for an access token to send as Authorization",
            sub(
                f"https://{pool.name}-${{Stage}}-${{AWS::AccountId}}.auth.${{AWS::Region}}.amazoncognito.com/oauth2/token"
            ),
            USE_COGNITO,
        )

    def api(self, api: Api) -> None:
        rest = self.add(
            logical_id(api.name, "RestApi"),
            "AWS::ApiGateway::RestApi",
            {
                "Name": staged(api.name),
                "Description": api.purpose,
                "EndpointConfiguration": {"Types": ["REGIONAL"]},
                # every body passes as bytes: the function's base64-encoded answers (Mangum encodes
                # any type it does not know as text, application/problem+json among them) are
                # decoded for the client, which a REST API does only for binary media types
                "BinaryMediaTypes": ["*/*"],
            },
        )
        function = logical_id(api.function, "Function")
        pool = next((logical_id(p.name, "UserPool") for p in self.stack.user_pools if p.api == api.name), None)
        authorizer = None
        if pool:
            authorizer = self.add(
                logical_id(api.name, "Authorizer"),
                "AWS::ApiGateway::Authorizer",
                {
                    "Name": staged(api.name),
                    "RestApiId": ref(rest),
                    "Type": "COGNITO_USER_POOLS",
                    "IdentitySource": "method.request.header.Authorization",
                    "ProviderARNs": [get_att(pool, "Arn")],
                },
                Condition=USE_COGNITO,
            )
        proxy = self.add(
            logical_id(api.name, "ProxyResource"),
            "AWS::ApiGateway::Resource",
            {"RestApiId": ref(rest), "ParentId": get_att(rest, "RootResourceId"), "PathPart": "{proxy+}"},
        )
        methods: list[str] = []
        for name, resource in (("RootMethod", get_att(rest, "RootResourceId")), ("ProxyMethod", ref(proxy))):
            properties: Json = {
                "RestApiId": ref(rest),
                "ResourceId": resource,
                "HttpMethod": "ANY",
                "AuthorizationType": "NONE",
                "Integration": {
                    "Type": "AWS_PROXY",
                    "IntegrationHttpMethod": "POST",
                    "Uri": sub(
                        "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/"
                        f"${{{function}.Arn}}/invocations"
                    ),
                },
            }
            if authorizer:
                properties["AuthorizationType"] = {"Fn::If": [USE_COGNITO, "COGNITO_USER_POOLS", "NONE"]}
                properties["AuthorizerId"] = {"Fn::If": [USE_COGNITO, ref(authorizer), ref("AWS::NoValue")]}
                properties["AuthorizationScopes"] = {
                    "Fn::If": [USE_COGNITO, [sub(f"{api.name}-${{Stage}}/{API_SCOPE}")], ref("AWS::NoValue")]
                }
            methods.append(self.add(logical_id(api.name, name), "AWS::ApiGateway::Method", properties))
            # a CORS preflight carries no credentials, so OPTIONS reaches the function (whose CORS
            # middleware answers it) without the Cognito authorizer; API Gateway prefers an
            # explicit method over ANY
            preflight = {
                "RestApiId": ref(rest),
                "ResourceId": resource,
                "HttpMethod": "OPTIONS",
                "AuthorizationType": "NONE",
                "Integration": properties["Integration"],
            }
            methods.append(
                self.add(
                    logical_id(api.name, name.replace("Method", "OptionsMethod")), "AWS::ApiGateway::Method", preflight
                )
            )
        # a deployment is a snapshot of the methods: its id changes with them, so an update of the
        # stack deploys the API again (a fixed id would leave the stage on the old methods)
        fingerprint = hashlib.sha256(
            json.dumps([self.resources[m] for m in methods], sort_keys=True).encode()
        ).hexdigest()[:8]
        deployment = self.add(
            logical_id(api.name, f"Deployment{fingerprint}"),
            "AWS::ApiGateway::Deployment",
            {"RestApiId": ref(rest), "Description": "The API's methods"},
            DependsOn=methods,
        )
        stage = self.add(
            logical_id(api.name, "Stage"),
            "AWS::ApiGateway::Stage",
            {
                "RestApiId": ref(rest),
                "DeploymentId": ref(deployment),
                "StageName": ref("Stage"),
                "MethodSettings": [
                    {
                        "ResourcePath": "/*",
                        "HttpMethod": "*",
                        "ThrottlingRateLimit": api.limits.rate_per_second,
                        "ThrottlingBurstLimit": api.limits.burst,
                        "MetricsEnabled": True,
                    }
                ],
                "Tags": self.tags,
            },
        )
        self.add(
            logical_id(api.name, "Permission"),
            "AWS::Lambda::Permission",
            {
                "Action": "lambda:InvokeFunction",
                "FunctionName": ref(function),
                "Principal": "apigateway.amazonaws.com",
                "SourceArn": sub(
                    f"arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{{rest}}}/*"
                ),
            },
        )
        visibility = {"SampledRequestsEnabled": True, "CloudWatchMetricsEnabled": True}
        acl = self.add(
            logical_id(api.name, "WebAcl"),
            "AWS::WAFv2::WebACL",
            {
                "Name": staged(api.name),
                "Scope": "REGIONAL",
                "DefaultAction": {"Allow": {}},
                "Rules": [
                    {
                        "Name": "rate-per-ip",
                        "Priority": 0,
                        # the app's answer over a rate: 429
                        "Action": {"Block": {"CustomResponse": {"ResponseCode": 429}}},
                        "Statement": {
                            "RateBasedStatement": {
                                "Limit": api.limits.waf_requests_per_window_per_ip,
                                "EvaluationWindowSec": WAF_WINDOW_SECONDS,
                                "AggregateKeyType": "IP",
                            }
                        },
                        "VisibilityConfig": {**visibility, "MetricName": sub(f"{api.name}-${{Stage}}-rate-per-ip")},
                    },
                    {
                        "Name": "body-size",
                        "Priority": 1,
                        # the app's answer to a body over its limit: 413
                        "Action": {"Block": {"CustomResponse": {"ResponseCode": 413}}},
                        "Statement": {
                            "SizeConstraintStatement": {
                                # a body longer than WAF inspects (AssociationConfig below, at
                                # least the limit) counts as matching: over the limit too
                                "FieldToMatch": {"Body": {"OversizeHandling": "MATCH"}},
                                "ComparisonOperator": "GT",
                                "Size": api.limits.max_body_bytes,
                                "TextTransformations": [{"Priority": 0, "Type": "NONE"}],
                            }
                        },
                        "VisibilityConfig": {**visibility, "MetricName": sub(f"{api.name}-${{Stage}}-body-size")},
                    },
                ],
                "AssociationConfig": {
                    "RequestBody": {
                        "API_GATEWAY": {
                            "DefaultSizeInspectionLimit": waf_body_inspection_limit(api.limits.max_body_bytes)
                        }
                    }
                },
                "VisibilityConfig": {**visibility, "MetricName": staged(api.name)},
                "Tags": self.tags,
            },
        )
        self.add(
            logical_id(api.name, "WebAclAssociation"),
            "AWS::WAFv2::WebACLAssociation",
            {
                "ResourceArn": sub(
                    f"arn:${{AWS::Partition}}:apigateway:${{AWS::Region}}::/restapis/${{{rest}}}/stages/${{{stage}}}"
                ),
                "WebACLArn": get_att(acl, "Arn"),
            },
        )
        self.output(
            "ApiUrl",
            api.purpose,
            # the stage's name is the Stage parameter
            sub(f"https://${{{rest}}}.execute-api.${{AWS::Region}}.${{AWS::URLSuffix}}/${{Stage}}/"),
        )

    # --- CloudWatch ---------------------------------------------------------------------------
    def metric_alarm(self, alarm: MetricAlarm) -> None:
        if alarm.target_kind == "function":
            namespace = "AWS/Lambda"
            dimensions = [{"Name": "FunctionName", "Value": ref(logical_id(alarm.target, "Function"))}]
        else:
            namespace = "AWS/ApiGateway"
            dimensions = [
                {"Name": "ApiName", "Value": staged(alarm.target)},
                {"Name": "Stage", "Value": ref(logical_id(alarm.target, "Stage"))},
            ]
        topic = self.arns.topic(alarm.topic)
        self.add(
            logical_id(alarm.name, "Alarm"),
            "AWS::CloudWatch::Alarm",
            {
                "AlarmName": staged(alarm.name),
                "AlarmDescription": alarm.purpose,
                "Namespace": namespace,
                "MetricName": alarm.metric,
                "Dimensions": dimensions,
                "Statistic": "Sum",
                "Period": alarm.period_seconds,
                "EvaluationPeriods": alarm.evaluation_periods,
                "Threshold": alarm.threshold,
                "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                "TreatMissingData": "notBreaching",
                "AlarmActions": [topic],
                "OKActions": [topic],
            },
        )

    # --- log archive --------------------------------------------------------------------------
    def log_archive(self, archive: LogArchive) -> None:
        bucket = logical_id(archive.bucket, "Bucket")
        stream = logical_id(archive.name, "DeliveryStream")
        firehose_role = self.add(
            logical_id(archive.name, "DeliveryRole"),
            "AWS::IAM::Role",
            {
                "Description": f"Firehose writing the archived logs under {archive.prefix} of the lake bucket",
                "AssumeRolePolicyDocument": _assume(
                    "firehose.amazonaws.com", {"StringEquals": {"sts:ExternalId": ref("AWS::AccountId")}}
                ),
                "Policies": [
                    {
                        "PolicyName": "write-log-archive",
                        "PolicyDocument": _policy(
                            [
                                {
                                    "Effect": "Allow",
                                    "Action": [
                                        "s3:GetBucketLocation",
                                        "s3:ListBucket",
                                        "s3:ListBucketMultipartUploads",
                                    ],
                                    "Resource": get_att(bucket, "Arn"),
                                },
                                {
                                    "Effect": "Allow",
                                    "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
                                    "Resource": sub(f"${{{bucket}.Arn}}/{archive.prefix}*"),
                                },
                            ]
                        ),
                    }
                ],
            },
        )
        self.add(
            stream,
            "AWS::KinesisFirehose::DeliveryStream",
            {
                "DeliveryStreamName": staged(archive.name),
                "DeliveryStreamType": "DirectPut",
                "ExtendedS3DestinationConfiguration": {
                    "BucketARN": get_att(bucket, "Arn"),
                    "RoleARN": get_att(firehose_role, "Arn"),
                    "Prefix": f"{archive.prefix}!{{timestamp:yyyy/MM/dd}}/",
                    "ErrorOutputPrefix": (
                        f"{archive.prefix}_errors/!{{firehose:error-output-type}}/!{{timestamp:yyyy/MM/dd}}/"
                    ),
                    "BufferingHints": {"IntervalInSeconds": archive.buffer_seconds, "SizeInMBs": 5},
                    # CloudWatch Logs sends every batch gzipped already
                    "CompressionFormat": "UNCOMPRESSED",
                },
            },
        )
        logs_role = self.add(
            logical_id(archive.name, "SubscriptionRole"),
            "AWS::IAM::Role",
            {
                "Description": "CloudWatch Logs sending the functions' log events to the archive's delivery stream",
                "AssumeRolePolicyDocument": _assume(
                    "logs.amazonaws.com",
                    {
                        "StringLike": {
                            "aws:SourceArn": sub("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:*")
                        }
                    },
                ),
                "Policies": [
                    {
                        "PolicyName": "send-to-log-archive",
                        "PolicyDocument": _policy(
                            [
                                {
                                    "Effect": "Allow",
                                    "Action": ["firehose:PutRecord", "firehose:PutRecordBatch"],
                                    # the ARN from the stream's name (its Ref) rather than its Arn
                                    # attribute, the same value: moto's CloudFormation, which
                                    # skips delivery streams, fails a stack on an attribute of a
                                    # resource it skipped but leaves an unresolved Ref alone
                                    "Resource": sub(
                                        "arn:${AWS::Partition}:firehose:${AWS::Region}:${AWS::AccountId}:"
                                        f"deliverystream/${{{stream}}}"
                                    ),
                                }
                            ]
                        ),
                    }
                ],
            },
        )
        for function in archive.functions:
            self.add(
                logical_id(function, "LogArchiveFilter"),
                "AWS::Logs::SubscriptionFilter",
                {
                    "LogGroupName": ref(logical_id(function, "LogGroup")),
                    "FilterPattern": "",  # every event
                    "DestinationArn": get_att(stream, "Arn"),
                    "RoleArn": get_att(logs_role, "Arn"),
                },
            )


# the body sizes WAF can inspect on an API Gateway stage (its AssociationConfig); larger bodies are
# "oversize" and handled by the rule's OversizeHandling
WAF_BODY_INSPECTION_LIMITS = {16_384: "KB_16", 32_768: "KB_32", 49_152: "KB_48", 65_536: "KB_64"}


def waf_body_inspection_limit(max_body_bytes: int) -> str:
    """The smallest body WAF inspects that holds a whole body of the largest size the API accepts,
    so a body-size rule sees up to the limit and counts anything longer as oversize."""
    for size, name in WAF_BODY_INSPECTION_LIMITS.items():
        if max_body_bytes <= size:
            return name
    raise ValueError(f"WAF inspects at most 64 KiB of a body; the API's body limit is {max_body_bytes} bytes")


def _limits_environment(api: Api) -> Json:
    """The API function's limits: the numbers the stage and WAF state (cart_api's settings read them)."""
    return {
        "CART_RATE_LIMIT_PER_SECOND": str(api.limits.rate_per_second),
        "CART_RATE_LIMIT_BURST": str(api.limits.burst),
        "CART_MAX_BODY_BYTES": str(api.limits.max_body_bytes),
        "CART_CORS_ALLOW_ORIGINS": ref(api.cors_parameter),
    }


class _NoAliases(yaml.SafeDumper):
    """Writes a value used twice twice: CloudFormation rejects YAML anchors and aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(stack: Stack) -> Json:
    """The CloudFormation template of a described stack, as a document (JSON-shaped)."""
    return _Renderer(stack).template()


def render_yaml(stack: Stack | None = None) -> str:
    """The template as ``deploy/template.yaml`` holds it, from the default settings' description."""
    # the settings' defaults, not this machine's environment or .env: the committed file must not
    # depend on who generates it
    document = render(stack or cart_stack(AwsSettings.model_construct()))
    return HEADER + yaml.dump(document, Dumper=_NoAliases, sort_keys=False, width=120, allow_unicode=True)


def resource_types(template: Json) -> dict[str, int]:
    """How many resources of each type the template has."""
    counts: dict[str, int] = {}
    for resource in template["Resources"].values():
        counts[resource["Type"]] = counts.get(resource["Type"], 0) + 1
    return dict(sorted(counts.items()))


def _lines(counts: Iterable[tuple[str, int]]) -> str:
    return "\n".join(f"  {n:>3}  {t}" for t, n in counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cart_aws.template",
        description="Write the cart stack's CloudFormation template (deploy/template.yaml) from cart_aws/resources.py.",
    )
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if the file is out of date")
    args = parser.parse_args(argv)
    wanted = render_yaml()
    current = TEMPLATE_FILE.read_text(encoding="utf-8") if TEMPLATE_FILE.exists() else ""
    if args.check:
        if current != wanted:
            print(f"{TEMPLATE_FILE} is out of date: run make template", file=sys.stderr)
            return 1
        print(f"{TEMPLATE_FILE} agrees with the resource description")
        return 0
    TEMPLATE_FILE.parent.mkdir(parents=True, exist_ok=True)
    TEMPLATE_FILE.write_text(wanted, encoding="utf-8")
    counts = resource_types(yaml.safe_load(wanted))
    print(f"wrote {TEMPLATE_FILE}: {sum(counts.values())} resources")
    print(_lines(counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
