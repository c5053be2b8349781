"""The project's moto server: moto's own server with targeted performance patches and one race fix.

Run it as ``python -m cart_dev.moto_server -H host -p port`` (the arguments of ``python -m
moto.server``); ``cart_dev.local_aws.MotoServer`` does, unless asked for stock moto. It patches
moto's backends in this process, logs which patches it applied, then runs moto's server ``main``.

moto holds everything in memory and some of its per-request work grows with what it holds, which
dominated every local measurement (docs/benchmarks.md, section *local AWS: stock vs patched moto*).
Each patch removes one hot spot found with a profile (cProfile in-process, py-spy on the server),
and keeps moto's observable behaviour: same answers, same limits, same errors.

Written against moto 5.2.5 (``MOTO_VERSION_WRITTEN_FOR``). The patches:

``dynamodb-item-size-once``
    moto's ``Item.__init__`` sets every attribute through ``LimitedSizeDict.__setitem__``, which
    re-sums the size of all attributes already set, to refuse an item over the 400 KB limit:
    quadratic in attributes per item, ~75 % of a ``put_item`` profile. The patch builds the item
    summing each attribute's size once, and refuses it at the same point with the same
    ``ItemSizeTooLarge`` (same limit, same size rule). Later updates still go through moto's check.
``sqs-one-clock-read``
    ``Queue.messages`` and the approximate counts (delayed, not visible) ask every message
    ``visible``/``delayed``, each reading the clock (``utcnow()``); the patch reads it once per call
    and compares each message's ``visible_at``/``delayed_until`` with it (what those properties do).
``sqs-send-reads-one-attribute``
    ``SQSBackend.send_message`` computes ``queue.attributes`` (all of them, three walking every
    message) to read ``ContentBasedDeduplication``: at a few thousand queued messages a send took
    ~150 ms (SNS→SQS delivery at 4-6 messages/s). The patch reads that one attribute.
``sqs-queue-attributes-once``
    ``SQSBackend.get_queue_attributes`` computes ``queue.attributes`` three times per requested name;
    the patch computes it once per call.
``sqs-retention-reads-one-attribute``
    ``receive_message`` checks each message it returns against the retention period through
    ``get_queue_attributes`` (all attributes, each walking every message); the patch reads
    ``MessageRetentionPeriod`` alone.
``sqs-delete-keeps-concurrent-sends`` (a correctness fix, not a speed-up)
    ``Queue.delete_message`` rebuilds the queue's message list without the lock that
    ``add_message`` appends under: a message sent while a delete runs is dropped with the old list.
    ``cart-demo --purchases 10000`` lost 10 accepted purchases this way (the worker deleting while
    SNS delivered). The patch rebuilds the list under that lock.
``sqs-dlq-move-once``
    Two concurrent ``ReceiveMessage`` calls can both pick a message that reached its
    ``maxReceiveCount`` for moto's redrive to the DLQ; the second ``list.remove`` then fails
    (``ValueError``, an HTTP 500). The patch takes the message out of the queue under the queue's
    lock, and only the receiver that took it out moves it: each message reaches the DLQ once.

Some patches replace a moto function by a copy with the one change; a copy is only right for the
code it was copied from. So each patch names the moto functions it replaces or reproduces, with
the SHA-256 of their source as of the version above; if one is missing, has another signature or
other source (moto changed shape), that patch is not applied, a warning says so and which, and
moto's own code runs (correct, slower at volume). ``tests/cart_dev/test_moto_server.py`` fails
when a patch does not apply to the locked moto version, so an upgrade cannot silently slow down.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import inspect
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("cart_dev.moto_server")

MOTO_VERSION_WRITTEN_FOR = "5.2.5"
APPLIED_LINE = "cart_dev.moto_server: patches applied:"

SQS = "moto.sqs.models"
DYNAMO_TYPE = "moto.dynamodb.models.dynamo_type"


@dataclass(frozen=True)
class Target:
    """A moto function (or property, by its getter) a patch replaces, or whose logic it reproduces
    (``new`` is None), with the SHA-256 prefix of its source in the version the patch was written for."""

    module: str
    owner: str
    name: str
    digest: str
    new: Any = None


@dataclass(frozen=True)
class Patch:
    name: str
    why: str
    targets: tuple[Target, ...]


def _digest(function: Callable[..., Any]) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]


def _function(value: Any) -> Callable[..., Any]:
    if isinstance(value, property) and value.fget is not None:
        return value.fget
    return value  # type: ignore[no-any-return]


def _shape(function: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    """Parameter names, kinds and defaults (annotations may be strings in moto, so left out)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def _problem(target: Target) -> str | None:
    """Why ``target`` does not match what the patch was written for, or None."""
    where = f"{target.module}.{target.owner}.{target.name}"
    try:
        owner = getattr(importlib.import_module(target.module), target.owner)
        original = _function(owner.__dict__[target.name])
    except (ImportError, AttributeError, KeyError):
        return f"{where} is missing"
    if target.new is not None and original is _function(target.new):
        return None  # applied already (in this process)
    try:
        if target.new is not None and _shape(original) != _shape(_function(target.new)):
            return f"{where} has another signature: {inspect.signature(original)}"
        if _digest(original) != target.digest:
            return f"{where} has other source than the one this patch was written for"
    except (OSError, TypeError, ValueError) as exc:
        return f"{where} cannot be inspected: {exc}"
    return None


def problems(patches: Sequence[Patch] | None = None) -> dict[str, list[str]]:
    """For each patch that would not apply to the installed moto, why (nothing is patched)."""
    found = {}
    for patch in PATCHES if patches is None else patches:
        reasons = [reason for target in patch.targets if (reason := _problem(target))]
        if reasons:
            found[patch.name] = reasons
    return found


def apply_patches(patches: Sequence[Patch] | None = None) -> list[str]:
    """Apply every patch (default: ``PATCHES``) that fits the installed moto; the names of those
    applied. A patch that does not fit is left out with a warning, and moto's own code runs for it."""
    patches = PATCHES if patches is None else patches
    version = importlib.metadata.version("moto")
    if version != MOTO_VERSION_WRITTEN_FOR:
        log.warning(
            "cart_dev.moto_server: written for moto %s, running moto %s; each patch is checked against it",
            MOTO_VERSION_WRITTEN_FOR,
            version,
        )
    refused = problems(patches)
    applied = []
    for patch in patches:
        if patch.name in refused:
            log.warning(
                "cart_dev.moto_server: patch %s NOT applied, moto changed shape (%s); running moto's own "
                "code for it (correct, but slow at volume: %s). Update the patch in cart_dev/moto_server.py.",
                patch.name,
                "; ".join(refused[patch.name]),
                patch.why,
            )
            continue
        for target in patch.targets:
            if target.new is not None:
                setattr(getattr(importlib.import_module(target.module), target.owner), target.name, target.new)
        applied.append(patch.name)
    return applied


# ---- dynamodb-item-size-once ----

# moto's limit in LimitedSizeDict.__setitem__ (the official 400 KB; AWS accepts a little more)
ITEM_SIZE_LIMIT = 405000


def _item_init(self: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
    types = importlib.import_module(DYNAMO_TYPE)
    self.hash_key = hash_key
    self.range_key = range_key
    values = {}
    size = 0
    for key, value in attrs.items():
        typed = types.DynamoType(value)
        # LimitedSizeDict's rule: the key's UTF-8 bytes plus the value's size, refused past the limit
        size += types.bytesize(key) + typed.size()
        if size > ITEM_SIZE_LIMIT:
            raise types.ItemSizeTooLarge
        values[key] = typed
    self.attrs = types.LimitedSizeDict(values)  # its __init__ uses dict.update: no re-check


# ---- sqs-one-clock-read ----


def _queue_messages(self: Any) -> list[Any]:
    now = importlib.import_module(SQS).unix_time_millis()
    # Message.visible is now > visible_at, Message.delayed is now < delayed_until
    return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]


def _queue_delayed(self: Any) -> int:
    now = importlib.import_module(SQS).unix_time_millis()
    return sum(1 for m in self._messages if now < m.delayed_until)


def _queue_not_visible(self: Any) -> int:
    now = importlib.import_module(SQS).unix_time_millis()
    return sum(1 for m in self._messages if not now > m.visible_at)


# ---- sqs-send-reads-one-attribute ----


def _content_based_deduplication(queue: Any) -> Any:
    """What ``queue.attributes.get("ContentBasedDeduplication")`` answers, without the others."""
    if not queue.fifo_queue:
        return None  # Queue.attributes has the FIFO attributes of FIFO queues only
    value = queue.content_based_deduplication
    return str(value).lower() if isinstance(value, bool) else value


def _send_message(
    self: Any,
    queue_name: str,
    message_body: str,
    message_attributes: dict[str, Any] | None = None,
    delay_seconds: int | None = None,
    deduplication_id: str | None = None,
    group_id: str | None = None,
    system_attributes: dict[str, Any] | None = None,
    validate_group_id: bool = True,
) -> Any:
    # moto 5.2.5's SQSBackend.send_message; the one change is marked
    sqs = importlib.import_module(SQS)
    queue = self.get_queue(queue_name)

    self._validate_message(
        queue,
        message_body=message_body,
        delay_seconds=int(delay_seconds or 0),
        deduplication_id=deduplication_id,
        group_id=group_id,
        validate_group_id=validate_group_id,
    )

    delay_seconds = int(delay_seconds) if delay_seconds is not None else queue.delay_seconds

    message_id = str(sqs.random.uuid4())
    message = sqs.Message(message_id, message_body, system_attributes)

    # CHANGED: moto reads queue.attributes.get("ContentBasedDeduplication")
    if _content_based_deduplication(queue) == "true":
        sha256 = hashlib.sha256()
        sha256.update(message_body.encode("utf-8"))
        message.deduplication_id = sha256.hexdigest()

    if deduplication_id is not None:
        message.deduplication_id = deduplication_id
        message.sequence_number = "".join(sqs.random.choice(sqs.string.digits) for _ in range(20))

    if group_id is not None:
        message.group_id = group_id

    if message_attributes:
        message.message_attributes = message_attributes

    if delay_seconds > sqs.MAXIMUM_MESSAGE_DELAY:
        msg = (
            f"Value {delay_seconds} for parameter DelaySeconds is invalid. "
            "Reason: DelaySeconds must be >= 0 and <= 900."
        )
        raise sqs.InvalidParameterValue(msg)

    message.mark_sent(delay_seconds=delay_seconds)

    queue.add_message(message)

    return message


# ---- sqs-queue-attributes-once ----


def _get_queue_attributes(self: Any, queue_name: str, attribute_names: list[str]) -> dict[str, Any]:
    # moto 5.2.5's SQSBackend.get_queue_attributes; the one change is marked
    sqs = importlib.import_module(SQS)
    queue = self.get_queue(queue_name)
    if not attribute_names:
        return {}

    valid_names = ["All", *queue.BASE_ATTRIBUTES, *queue.FIFO_ATTRIBUTES, *queue.KMS_ATTRIBUTES]
    invalid_name = next((name for name in attribute_names if name not in valid_names), None)

    if invalid_name or invalid_name == "":
        raise sqs.InvalidAttributeName(invalid_name)

    # CHANGED: moto computes queue.attributes once, then three times per requested name
    current: dict[str, Any] = queue.attributes
    if "All" in attribute_names:
        return current
    return {name: current[name] for name in attribute_names if current.get(name) is not None}


# ---- sqs-retention-reads-one-attribute ----


def _is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
    sqs = importlib.import_module(SQS)
    # moto reads it through get_queue_attributes(queue_name, ["MessageRetentionPeriod"]), i.e. this
    retention_period = self.get_queue(queue_name).message_retention_period
    retain_until = retention_period + message.sent_timestamp / 1000
    return bool(retain_until > sqs.unix_time())


# ---- sqs-dlq-move-once ----


def _receive_message(
    self: Any,
    queue_name: str,
    count: int,
    wait_seconds_timeout: int,
    visibility_timeout: int,
    message_attribute_names: list[str] | None = None,
) -> list[Any]:
    # moto 5.2.5's SQSBackend.receive_message; the one change is marked
    sqs = importlib.import_module(SQS)
    if message_attribute_names is None:
        message_attribute_names = []
    queue = self.get_queue(queue_name)
    result: list[Any] = []
    previous_result_count = len(result)

    polling_end = sqs.unix_time() + wait_seconds_timeout
    currently_pending_groups = sqs.deepcopy(queue.pending_message_groups)

    while True:
        if result or (wait_seconds_timeout and sqs.unix_time() > polling_end):
            break

        messages_to_dlq: list[Any] = []

        for message in queue.messages:
            if not message.visible:
                continue

            if message in queue.pending_messages:
                queue.pending_messages.remove(message)
                currently_pending_groups = sqs.deepcopy(queue.pending_message_groups)

            if message.group_id and queue.fifo_queue and message.group_id in currently_pending_groups:
                continue

            if (
                queue.dead_letter_queue is not None
                and queue.redrive_policy
                and message.approximate_receive_count >= queue.redrive_policy["maxReceiveCount"]
            ):
                messages_to_dlq.append(message)
                continue

            queue.pending_messages.add(message)
            message.mark_received(visibility_timeout=visibility_timeout)
            message_copy = sqs.deepcopy(message)
            sqs._filter_message_attributes(message_copy, message_attribute_names)
            if not self.is_message_valid_based_on_retention_period(queue_name, message):
                break
            result.append(message_copy)
            if len(result) >= count:
                break

        for message in messages_to_dlq:
            # CHANGED: a concurrent receive may have picked the same message and moved it already
            # (moto: ValueError, HTTP 500); only the receive that takes it out of the queue moves it
            with queue._messages_lock:
                try:
                    queue._messages.remove(message)
                except ValueError:
                    continue
            queue.dead_letter_queue.add_message(message)

        if previous_result_count == len(result):
            if wait_seconds_timeout == 0:
                break

            queue.wait_for_messages(1)
            continue

        previous_result_count = len(result)

    return result


# ---- sqs-delete-keeps-concurrent-sends ----


def _queue_delete_message(self: Any, receipt_handle: str) -> None:
    # moto 5.2.5's Queue.delete_message; the one change: the queue's message list is rebuilt under
    # the lock that add_message appends under, so a message sent meanwhile is not dropped with it
    sqs = importlib.import_module(SQS)
    if receipt_handle in self.deleted_messages:
        # Already deleted - gracefully handle deleting it again
        return

    with self._messages_lock:  # changed: the rebuild below and concurrent appends are exclusive
        if not any(message.had_receipt_handle(receipt_handle) for message in self._messages):
            raise sqs.ReceiptHandleIsInvalid()

        # Delete message from queue regardless of pending state
        new_messages = []
        for message in self._messages:
            if message.had_receipt_handle(receipt_handle):
                self.pending_messages.discard(message)
                self.deleted_messages.update(message.all_receipt_handles)
                continue
            new_messages.append(message)
        self._messages = new_messages


PATCHES: tuple[Patch, ...] = (
    Patch(
        "dynamodb-item-size-once",
        "every stored item re-sums its size once per attribute",
        (
            Target(DYNAMO_TYPE, "Item", "__init__", "d9c12b62cb921831", _item_init),
            Target(DYNAMO_TYPE, "LimitedSizeDict", "__setitem__", "d979580fdbe14f79"),
        ),
    ),
    Patch(
        "sqs-one-clock-read",
        "queue counts read the clock once per queued message",
        (
            Target(SQS, "Queue", "messages", "03a531dbcbcf9aee", property(_queue_messages)),
            Target(
                SQS, "Queue", "approximate_number_of_messages_delayed", "c3c1dadb0c42ed5f", property(_queue_delayed)
            ),
            Target(
                SQS,
                "Queue",
                "approximate_number_of_messages_not_visible",
                "5dbecc4dda174358",
                property(_queue_not_visible),
            ),
            Target(SQS, "Message", "visible", "5129b573308de62a"),
            Target(SQS, "Message", "delayed", "e2fd48abf582683a"),
        ),
    ),
    Patch(
        "sqs-send-reads-one-attribute",
        "every send computes all queue attributes, walking every queued message",
        (Target(SQS, "SQSBackend", "send_message", "bf161af09a9e6b86", _send_message),),
    ),
    Patch(
        "sqs-queue-attributes-once",
        "GetQueueAttributes computes all attributes three times per name asked",
        (Target(SQS, "SQSBackend", "get_queue_attributes", "58417223da457b5a", _get_queue_attributes),),
    ),
    Patch(
        "sqs-retention-reads-one-attribute",
        "every received message computes all queue attributes three times",
        (
            Target(
                SQS,
                "SQSBackend",
                "is_message_valid_based_on_retention_period",
                "cca23b94a5f3af9d",
                _is_message_valid_based_on_retention_period,
            ),
        ),
    ),
    Patch(
        "sqs-dlq-move-once",
        "concurrent receives of a message due for the DLQ fail with HTTP 500",
        (Target(SQS, "SQSBackend", "receive_message", "065f3e5e7d214408", _receive_message),),
    ),
    Patch(
        "sqs-delete-keeps-concurrent-sends",
        "a delete racing a send drops the sent message (seen: 10 of 9007 purchases lost by cart-demo)",
        (Target(SQS, "Queue", "delete_message", "fa6fd5b9bd2cafb4", _queue_delete_message),),
    ),
)


def main(argv: list[str] | None = None) -> None:
    # a handler of its own: configuring the root logger would change how moto and werkzeug log
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log.addHandler(handler)
    log.propagate = False
    applied = apply_patches()
    print(f"{APPLIED_LINE} {', '.join(applied) or 'none'}", file=sys.stderr, flush=True)
    from moto.server import main as moto_main

    moto_main(argv)


if __name__ == "__main__":
    main()
