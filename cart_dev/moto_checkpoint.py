"""Checkpoints of the moto server's state, kept in its memory, to come back to in one request.

The tests start each test that uses AWS from a freshly reset and provisioned moto server. Provisioning
is ~56 requests (every resource read, then created): about 0.55 s of CPU between the test process and
the server, for each of ~150 tests of ``make test-quick``. With a checkpoint, the first test of a
process provisions and saves the result; every later test restores it with one request.

``cart_dev.moto_server`` serves two routes of moto's own API with these functions:

``POST /moto-api/cart/checkpoint?name=N``
    keeps a deep copy of every backend moto holds (every service, account and region in use) as N.
``POST /moto-api/cart/restore?name=N``
    resets moto exactly as ``/moto-api/reset`` does, then puts fresh deep copies of N's backends in
    their places: the server holds what it held when N was taken and nothing else (404 when there is
    no checkpoint N). The checkpoint itself is never handed out, so it can be restored any number of
    times.

What a deep copy cannot copy is handled by hand: a lock or condition (SQS queues hold one) gets a new
one, and a reference to moto's registries of backends, or to a backend outside the copy, stays that
same object. A copied backend that refers to another copied one (an SNS topic to its backend) refers
to that one's copy. The copies are new objects: the per-table indexes of ``cart_dev.moto_server``'s
``dynamodb-query-one-partition`` patch start empty for them, as for a new table.
"""

from __future__ import annotations

import copy
import json
import threading
import types
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

CHECKPOINT_PATH = "/moto-api/cart/checkpoint"
RESTORE_PATH = "/moto-api/cart/restore"

_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()), threading.Condition)


@dataclass(frozen=True)
class Checkpoint:
    # (moto's registry of the service's backends, account, region): a copy of that backend
    backends: dict[tuple[Any, str, str], Any]
    # objects of the copies not to copy again on restore: locks (new ones each time), registries
    kept: tuple[Any, ...]


_CHECKPOINTS: dict[str, Checkpoint] = {}


def _backend_lock() -> Any:
    from moto.core.base_backend import backend_lock

    return backend_lock


def _in_use() -> dict[tuple[Any, str, str], Any]:
    from moto.core.base_backend import BackendDict

    registries: list[Any] = list(BackendDict._instances)  # type: ignore[misc]  # (as moto's own code says)
    return {
        (registry, account, region): backend
        for registry in registries
        for account, region, backend in registry.iter_backends()
    }


def _uncopyable(roots: list[Any]) -> tuple[Any, ...]:
    """Objects reachable from ``roots`` that a deep copy must not copy: locks and conditions, moto's
    registries of backends, and backends other than the roots. Walks what ``copy.deepcopy`` walks
    in moto's models: instance attributes (``__dict__`` and ``__slots__``), dicts, lists, tuples,
    sets and bound methods."""
    from moto.core.base_backend import AccountSpecificBackend, BackendDict, BaseBackend

    root_ids = {id(r) for r in roots}
    found: dict[int, Any] = {}
    seen: set[int] = set()
    stack: list[Any] = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (*_LOCK_TYPES, BackendDict, AccountSpecificBackend)) or (
            isinstance(obj, BaseBackend) and id(obj) not in root_ids
        ):
            found[id(obj)] = obj
            continue
        if isinstance(obj, (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)):
            continue
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif isinstance(obj, types.MethodType):
            stack.append(obj.__self__)
        if hasattr(obj, "__dict__"):
            stack.append(vars(obj))
        for slot in getattr(type(obj), "__slots__", ()):
            if isinstance(slot, str) and hasattr(obj, slot):
                stack.append(getattr(obj, slot))
    return tuple(found.values())


def _deep_copy(roots: list[Any], kept: tuple[Any, ...]) -> list[Any]:
    memo: dict[int, Any] = {}
    for obj in kept:
        if isinstance(obj, threading.Condition):
            memo[id(obj)] = threading.Condition()
        elif isinstance(obj, type(threading.RLock())):
            memo[id(obj)] = threading.RLock()
        elif isinstance(obj, type(threading.Lock())):
            memo[id(obj)] = threading.Lock()
        else:
            memo[id(obj)] = obj  # the same registry or outside backend, not a copy
    return copy.deepcopy(roots, memo)


def take(name: str) -> int:
    """Keep a copy of every backend in use as checkpoint ``name``; the number of backends."""
    with _backend_lock():
        live = _in_use()
        keys, roots = list(live), list(live.values())
        copies = _deep_copy(roots, _uncopyable(roots))
    _CHECKPOINTS[name] = Checkpoint(dict(zip(keys, copies, strict=True)), _uncopyable(copies))
    return len(copies)


def restore(name: str) -> bool:
    """Reset moto, then install copies of checkpoint ``name``'s backends; False if there is none."""
    from moto.moto_api._internal.models import moto_api_backend

    checkpoint = _CHECKPOINTS.get(name)
    if checkpoint is None:
        return False
    with _backend_lock():
        moto_api_backend.reset()  # what POST /moto-api/reset does
        copies = _deep_copy(list(checkpoint.backends.values()), checkpoint.kept)
        for (registry, account, region), backend in zip(checkpoint.backends, copies, strict=True):
            # registry[account] registers the registry as in use again (after the reset) and makes
            # the account's dict of regions; the region's backend is then the copy, not a new one
            dict.__setitem__(registry[account], region, backend)
    return True


def _name(full_url: str) -> str | None:
    names = parse_qs(urlparse(full_url).query).get("name", [])
    return names[0] if len(names) == 1 and names[0] else None


def checkpoint_response(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
    name = _name(full_url)
    if request.method != "POST" or name is None:
        return 400, {}, json.dumps({"Error": f"POST {CHECKPOINT_PATH}?name=<name>"})
    return 200, {}, json.dumps({"checkpoint": name, "backends": take(name)})


def restore_response(request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], str]:
    name = _name(full_url)
    if request.method != "POST" or name is None:
        return 400, {}, json.dumps({"Error": f"POST {RESTORE_PATH}?name=<name>"})
    if not restore(name):
        return 404, {}, json.dumps({"Error": f"no checkpoint named {name!r}"})
    return 200, {}, json.dumps({"restored": name})


def register_routes() -> None:
    """Serve the two routes among moto's own API (before moto's server builds its app)."""
    from moto.moto_api._internal import urls

    urls.url_paths["{0}" + CHECKPOINT_PATH + "$"] = checkpoint_response
    urls.url_paths["{0}" + RESTORE_PATH + "$"] = restore_response
