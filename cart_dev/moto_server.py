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
``dynamodb-query-one-partition``
    moto answers a Query by walking every item of the table on every page: ``Table.all_items`` lists
    and sorts the whole table, then each item's key is compared with the one asked for (one page of a
    GSI on a 100k-item table: seconds; one hour of 100k purchases over 16 index shards: minutes).
    The patch hands moto's own ``Table.query`` a view of the table whose ``all_items`` holds only the
    items with the asked partition key value, in the order ``all_items`` would list them; everything
    after that (key conditions, range order and direction, ``ExclusiveStartKey``, ``Limit``, the 1 MB
    page, filters, projections, ``COUNT``, ``LastEvaluatedKey``) is moto's code on a superset of the
    items it would keep, so its answers are the same. On the table's own key the items come from
    moto's own dict of partitions; on an index, from a map of attribute value to primary keys, built
    with one walk at the first Query on that attribute and kept up to date by every write
    (``Table.put_item``, which BatchWriteItem, TransactWriteItems, PartiQL and imports go through,
    ``Table.delete_item``, and ``update_item``, which changes an item in place). Items lacking the
    attribute are not in it (moto skips them too); a new table, a restored one or one whose items
    moto replaced starts without it; a failed update drops the table's maps (rebuilt on the next
    Query), since moto may have changed the item before failing.
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
``server-lists-its-services-once``
    To find the service a request is for, moto's server asks ``list_of_moto_modules`` (twice per
    request) whether the host names one of moto's own service packages; that lists moto's package
    folder and checks each of its ~170 entries on disk, 1 ms each time: about a fifth of the server's
    work on a small request, such as the ~56 of provisioning. The patch lists the folder once (it
    does not change while the server runs) and hands out that same list, in the same order.
``sqs-dlq-move-once``
    Two concurrent ``ReceiveMessage`` calls can both pick a message that reached its
    ``maxReceiveCount`` for moto's redrive to the DLQ; the second ``list.remove`` then fails
    (``ValueError``, an HTTP 500). The patch takes the message out of the queue under the queue's
    lock, and only the receiver that took it out moves it: each message reaches the DLQ once.

Besides moto's routes, the server answers ``/moto-api/cart/checkpoint`` and ``/moto-api/cart/restore``
(``cart_dev.moto_checkpoint``): a state kept in memory and restored in one request, which the tests
use instead of provisioning again for every test.

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
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("cart_dev.moto_server")

MOTO_VERSION_WRITTEN_FOR = "5.2.5"
APPLIED_LINE = "cart_dev.moto_server: patches applied:"

SQS = "moto.sqs.models"
SERVER = "moto.moto_server.werkzeug_app"  # holds moto.backends as ``backends``
DYNAMODB = "moto.dynamodb.models"
DYNAMO_TYPE = "moto.dynamodb.models.dynamo_type"
TABLE = "moto.dynamodb.models.table"


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
                owner = getattr(importlib.import_module(target.module), target.owner)
                if owner.__dict__[target.name] is not target.new:
                    _ORIGINALS.setdefault((target.module, target.owner, target.name), owner.__dict__[target.name])
                setattr(owner, target.name, target.new)
        applied.append(patch.name)
    return applied


# moto's own functions that patches replaced, for the patches that wrap them
_ORIGINALS: dict[tuple[str, str, str], Any] = {}


def _original(module: str, owner: str, name: str) -> Any:
    """moto's own function that a patch wraps: the one it replaced, or the one in place when the
    patch is not applied (a wrapper called directly, as the tests do)."""
    found = _ORIGINALS.get((module, owner, name))
    if found is None:
        found = getattr(importlib.import_module(module), owner).__dict__[name]
        if getattr(found, "__module__", None) == __name__:
            raise RuntimeError(f"{module}.{owner}.{name} is patched, but moto's own function was not kept")
    return found


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


# ---- dynamodb-query-one-partition ----

# Index maps and the writes that keep them are exclusive: a map is never read half-updated, and
# its build walks moto's dict of items while no patched write changes it. Reentrant: update_item
# calls put_item for an item it creates, TransactWriteItems calls the three.
_INDEX_LOCK = threading.RLock()
PrimaryKey = tuple[Any, Any]  # (hash DynamoType, range DynamoType or None), as Item holds them


class _AttributeMap:
    """Which stored items hold each value of one attribute: value → primary keys, and back."""

    def __init__(self) -> None:
        self.keys: dict[Any, dict[PrimaryKey, None]] = {}  # an insertion-ordered set per value
        # items whose value cannot be hashed (a set, list or map; DynamoType hashes its cast value):
        # handed to moto with every lookup, its own comparison drops them
        self.unhashable: dict[PrimaryKey, None] = {}
        self.value_of: dict[PrimaryKey, Any] = {}  # None: among the unhashable

    def remove(self, key: PrimaryKey) -> None:
        if key not in self.value_of:
            return
        value = self.value_of.pop(key)
        bucket = self.unhashable if value is None else self.keys[value]
        del bucket[key]
        if value is not None and not bucket:
            del self.keys[value]

    def add(self, key: PrimaryKey, item: Any, attribute: str) -> None:
        value = item.attrs.get(attribute)
        if value is None:
            return  # not in the index: moto skips an item lacking the attribute
        try:
            self.keys.setdefault(value, {})[key] = None
        except TypeError:
            self.unhashable[key] = None
            value = None
        self.value_of[key] = value

    def lookup(self, value: Any) -> list[PrimaryKey]:
        return [*self.keys.get(value, ()), *self.unhashable]


@dataclass
class _TableMaps:
    items: Any  # the table's dict of items these maps describe (moto may replace it whole)
    by_attribute: dict[str, _AttributeMap]


# per moto Table object: a deleted, reset or rolled-back table takes its maps with it
_MAPS: weakref.WeakKeyDictionary[Any, _TableMaps] = weakref.WeakKeyDictionary()


def _stored_items(table: Any) -> Iterable[Any]:
    """Every item of the table, unsorted (moto's layout: hash → item, or hash → range → item)."""
    for partition in table.items.values():
        if table.range_key_attr:
            yield from partition.values()
        else:
            yield partition


def _stored_item(table: Any, key: PrimaryKey) -> Any:
    hash_key, range_key = key
    partition = table.items.get(hash_key)  # .get: table.items is a defaultdict
    if partition is None or not table.range_key_attr:
        return partition
    return partition.get(range_key)


def _attribute_map(table: Any, attribute: str) -> _AttributeMap:
    """The map of ``attribute`` for ``table``, built with one walk of its items if it has none."""
    maps = _MAPS.get(table)
    if maps is None or maps.items is not table.items:
        maps = _MAPS[table] = _TableMaps(table.items, {})
    found = maps.by_attribute.get(attribute)
    if found is None:
        found = maps.by_attribute[attribute] = _AttributeMap()
        for item in _stored_items(table):
            found.add((item.hash_key, item.range_key), item, attribute)
    return found


def _reindex(table: Any, keys: Callable[[], Iterable[PrimaryKey]]) -> None:
    """After a write: place the items now stored at ``keys`` (or their absence) in every map."""
    maps = _MAPS.get(table)
    if maps is None:
        return  # nothing built for this table yet: the first Query builds it from the items as they are
    if maps.items is not table.items:
        del _MAPS[table]
        return
    try:
        written = list(keys())
    except Exception:  # noqa: BLE001 - keys moto refused; rebuild rather than guess what it stored
        del _MAPS[table]
        return
    for key in written:
        item = _stored_item(table, key)
        for attribute, found in maps.by_attribute.items():
            found.remove(key)
            if item is not None:
                found.add(key, item, attribute)


def _forget(table: Any) -> None:
    _MAPS.pop(table, None)


def indexed_keys(table: Any, attribute: str) -> dict[Any, list[PrimaryKey]] | None:
    """What the patch's map of ``attribute`` holds for a moto ``Table``: each value's primary keys
    (None: no map yet). For tests: a Query hands moto only the items listed under its key."""
    with _INDEX_LOCK:
        maps = _MAPS.get(table)
        found = maps.by_attribute.get(attribute) if maps is not None and maps.items is table.items else None
        if found is None:
            return None
        return {value: list(keys) for value, keys in found.keys.items()}


def _all_items_order(item: Any) -> Any:
    # the sort key of moto's Table.all_items
    return (item.hash_key, item.range_key) if item.range_key else item.hash_key


def _partition_items(
    table: Any, hash_key: Any, index_name: str | None, hash_key_conditions: Sequence[tuple[str, Any]] | None
) -> list[Any] | None:
    """The items moto's Query may keep, in ``Table.all_items`` order; None: let it walk the table
    (a Query this patch does not narrow)."""
    with _INDEX_LOCK:
        found = _matching_items(table, hash_key, index_name, hash_key_conditions)
    return None if found is None else sorted(found, key=_all_items_order)


def _matching_items(
    table: Any, hash_key: Any, index_name: str | None, hash_key_conditions: Sequence[tuple[str, Any]] | None
) -> list[Any] | None:
    if index_name is None:
        if hash_key is None:
            return None
        try:
            hash(hash_key)
        except TypeError:
            return None
        partition = table.items.get(hash_key)
        if partition is None:
            return []
        found = list(partition.values()) if table.range_key_attr else [partition]
    else:
        if not hash_key_conditions or index_name not in {i.name for i in table.all_indexes()}:
            return None  # moto's own code matches everything, or refuses the index
        attribute, value = hash_key_conditions[0]
        try:
            hash(value)
        except TypeError:
            return None
        keys = _attribute_map(table, attribute).lookup(value)
        found = [item for key in keys if (item := _stored_item(table, key)) is not None]
    return found


class _Partition:
    """A moto Table as its Query sees it: ``all_items`` lists only the given items; every other
    attribute and method is the table's own."""

    def __init__(self, table: Any, items: list[Any]) -> None:
        self._table = table
        self._items = items

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)

    def all_items(self) -> list[Any]:
        return self._items


def _table_query(
    self: Any,
    hash_key: Any,
    range_comparison: str | None,
    range_objs: list[Any],
    limit: int,
    exclusive_start_key: dict[str, Any],
    scan_index_forward: bool,
    projection_expressions: list[list[str]] | None,
    index_name: str | None = None,
    consistent_read: bool = False,
    filter_expression: Any = None,
    hash_key_conditions: list[tuple[str, Any]] | None = None,
    range_key_conditions: list[tuple[str, str, list[Any]]] | None = None,
    **filter_kwargs: Any,
) -> tuple[list[Any], int, dict[str, Any] | None]:
    # moto's Table.query calls self.all_items() once and keeps, in that order, the items whose
    # partition key matches: handed a superset of those, in the same order, it answers the same
    items = _partition_items(self, hash_key, index_name, hash_key_conditions)
    query = _original(TABLE, "Table", "query")
    return query(  # type: ignore[no-any-return]
        self if items is None else _Partition(self, items),
        hash_key,
        range_comparison,
        range_objs,
        limit,
        exclusive_start_key,
        scan_index_forward,
        projection_expressions,
        index_name,
        consistent_read,
        filter_expression,
        hash_key_conditions=hash_key_conditions,
        range_key_conditions=range_key_conditions,
        **filter_kwargs,
    )


def _table_put_item(
    self: Any,
    item_attrs: dict[str, Any],
    expected: dict[str, Any] | None = None,
    condition_expression: str | None = None,
    expression_attribute_names: dict[str, str] | None = None,
    expression_attribute_values: dict[str, Any] | None = None,
    overwrite: bool = False,
    return_values_on_condition_check_failure: str | None = None,
) -> Any:
    def written() -> list[PrimaryKey]:
        # Table.put_item stores Item(hash_value, range_value, ...) under these keys
        types = importlib.import_module(DYNAMO_TYPE)
        hash_key = types.DynamoType(item_attrs[self.hash_key_attr])
        range_key = types.DynamoType(item_attrs[self.range_key_attr]) if self.range_key_attr else None
        return [(hash_key, range_key)]

    with _INDEX_LOCK:
        try:
            return _original(TABLE, "Table", "put_item")(
                self,
                item_attrs,
                expected,
                condition_expression,
                expression_attribute_names,
                expression_attribute_values,
                overwrite,
                return_values_on_condition_check_failure,
            )
        finally:
            _reindex(self, written)


def _table_delete_item(self: Any, hash_key: Any, range_key: Any) -> Any:
    with _INDEX_LOCK:
        try:
            return _original(TABLE, "Table", "delete_item")(self, hash_key, range_key)
        finally:
            _reindex(self, lambda: [(hash_key, range_key if self.range_key_attr else None)])


def _backend_update_item(
    self: Any,
    table_name: str,
    key: dict[str, dict[str, Any]],
    update_expression: str,
    expression_attribute_names: dict[str, Any],
    expression_attribute_values: dict[str, Any],
    attribute_updates: dict[str, Any] | None = None,
    expected: dict[str, Any] | None = None,
    condition_expression: str | None = None,
    return_values_on_condition_check_failure: str | None = None,
) -> Any:
    # moto changes the stored item in place (no put_item), possibly its indexed attributes
    with _INDEX_LOCK:
        item = None
        try:
            item = _original(DYNAMODB, "DynamoDBBackend", "update_item")(
                self,
                table_name,
                key,
                update_expression,
                expression_attribute_names,
                expression_attribute_values,
                attribute_updates,
                expected,
                condition_expression,
                return_values_on_condition_check_failure,
            )
            return item
        finally:
            table = self.tables.get(table_name)
            if table is not None:
                if item is None:
                    _forget(table)  # it may have failed after changing the item: rebuilt when next queried
                else:
                    _reindex(table, lambda: [(item.hash_key, item.range_key)])


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


# ---- server-lists-its-services-once ----

_moto_modules: tuple[str, ...] | None = None


def _list_of_moto_modules() -> Iterable[str]:
    # moto's own list_of_moto_modules (a listdir and an isdir per entry), called once; its answer
    # is kept, since moto's package folder does not change while the server runs
    global _moto_modules
    if _moto_modules is None:
        _moto_modules = tuple(_original(SERVER, "backends", "list_of_moto_modules")())
    return iter(_moto_modules)


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
        "dynamodb-query-one-partition",
        "every Query page walks and sorts every item of the table",
        (
            Target(TABLE, "Table", "query", "002b4d00be6df07c", _table_query),
            Target(TABLE, "Table", "all_items", "c80d2ee3c896acd0"),
            Target(TABLE, "Table", "put_item", "de23933013ef8426", _table_put_item),
            Target(TABLE, "Table", "delete_item", "1594f7b07616c8cb", _table_delete_item),
            Target(DYNAMODB, "DynamoDBBackend", "update_item", "218984588dd689a5", _backend_update_item),
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
        "server-lists-its-services-once",
        "every request lists moto's package folder twice to find its service",
        (Target(SERVER, "backends", "list_of_moto_modules", "4f741a10b06500e8", _list_of_moto_modules),),
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
    from cart_dev import moto_checkpoint

    moto_checkpoint.register_routes()
    from moto.server import main as moto_main

    moto_main(argv)


if __name__ == "__main__":
    main()
