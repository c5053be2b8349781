"""The manifest of landed files (recording events) and the forming of file sets, as pure functions;
reading references from S3 against the moto server."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cart_api.settings import Settings
from cart_aws.aws import AwsClients
from cart_lakehouse.filedrop.events import LandedObject
from cart_lakehouse.filedrop.manifest import (
    COMPLETE,
    GONE,
    IN_SET,
    INCOMPLETE,
    PENDING,
    SETTLE_LIMIT_SECONDS,
    UNREADABLE,
    Entry,
    FormedSet,
    Gone,
    Manifest,
    ObjectHead,
    RefReader,
    Refs,
    Unreadable,
    form_sets,
    new_set_id,
    parse_refs,
    reference_columns,
    set_formed_at,
)
from cart_lakehouse.lake import Lake

T0 = datetime(2026, 11, 27, 16, 0, 0, tzinfo=UTC)
WAIT = 900.0
ORDERS, PRODUCTS = "orders.order_id", "products.id"


def landed(key: str, etag: str = "e1", at: datetime = T0, sequencer: str = "") -> LandedObject:
    return LandedObject(key, 10, etag, sequencer, at.isoformat(), "ObjectCreated:Put")


def heads(objects: dict[str, str]) -> object:
    """HeadObject as S3 would answer it for ``{key: etag}``."""
    return lambda key: ObjectHead(objects[key], 10) if key in objects else None


def record(manifest: Manifest, obj: LandedObject, objects: dict[str, str] | None = None) -> str:
    return manifest.record(obj, heads(objects or {obj.key: obj.etag}), T0).outcome  # type: ignore[arg-type]


# --- recording --------------------------------------------------------------------------------
def test_a_duplicate_event_is_recorded_once() -> None:
    manifest = Manifest()
    obj = landed("landing/orders/a.csv")
    assert record(manifest, obj) == "new"
    assert record(manifest, obj) == "duplicate"
    # the same bytes uploaded again before their set was formed: still one file
    assert record(manifest, landed("landing/orders/a.csv", at=T0 + timedelta(seconds=3))) == "duplicate"
    (entry,) = manifest.files
    assert (entry.state, entry.table, entry.etag) == (PENDING, "orders", "e1")
    assert len(entry.event_ids) == 2


def test_a_new_etag_for_the_same_key_is_a_new_file_and_the_old_version_is_gone() -> None:
    manifest = Manifest()
    record(manifest, landed("landing/orders/a.csv", "e1"))
    assert record(manifest, landed("landing/orders/a.csv", "e2", T0 + timedelta(seconds=1))) == "new"
    old, new = manifest.files
    assert (old.state, new.state) == (GONE, PENDING)
    assert "replaced by a newer upload (ETag e2)" in old.note
    assert old.id != new.id
    # the older event arriving late: S3 holds the newer version, so that one is gone at once
    late = landed("landing/orders/b.csv", "e1")
    assert record(manifest, late, {"landing/orders/b.csv": "e9"}) == "gone"
    assert "replaced by another upload (ETag e9)" in manifest.files[-1].note


def test_an_event_for_a_file_no_longer_there_is_marked_gone() -> None:
    manifest = Manifest()
    assert manifest.record(landed("landing/orders/a.csv"), lambda key: None, T0).outcome == "gone"
    (entry,) = manifest.files
    assert entry.state == GONE
    assert "HeadObject: 404" in entry.note
    assert manifest.pending() == []


def test_after_its_set_a_redelivered_event_is_a_duplicate_and_a_re_drop_a_new_file() -> None:
    manifest = Manifest()
    first = landed("landing/orders/a.csv", sequencer="0001")
    record(manifest, first)
    formed = FormedSet("20261127T160000Z-00000000", COMPLETE, tuple(manifest.files), T0, "test")
    manifest.assign(formed, T0)
    assert manifest.files[0].state == IN_SET
    assert record(manifest, first) == "duplicate"  # the same event again (same sequencer)
    assert record(manifest, landed("landing/orders/a.csv", sequencer="0002")) == "new"  # the same bytes re-dropped
    assert [f.state for f in manifest.files] == [IN_SET, PENDING]


def test_manifest_round_trips_through_the_lake_and_prunes_what_settled_long_ago(tmp_path: Path) -> None:
    lake = Lake.open(str(tmp_path))
    manifest = Manifest()
    record(manifest, landed("landing/orders/a.csv"))
    record(manifest, landed("landing/products/p.csv"))
    manifest.assign(FormedSet("s1", COMPLETE, (manifest.files[1],), T0, "test"), T0)
    manifest.save(lake, T0)
    again = Manifest.load(lake)
    assert again == manifest
    assert again.unconfirmed == ["s1"]
    assert again.prune(T0 + timedelta(days=13)) == []
    (pruned,) = again.prune(T0 + timedelta(days=15))
    assert pruned.key == "landing/products/p.csv"
    assert [f.key for f in again.files] == ["landing/orders/a.csv"]  # pending files are never pruned


def test_a_manifest_of_another_format_is_refused(tmp_path: Path) -> None:
    lake = Lake.open(str(tmp_path))
    lake.write_bytes("filedrop/manifest.json", b'{"version": 99, "files": []}')
    with pytest.raises(ValueError, match="format version 99"):
        Manifest.load(lake)


# --- forming sets -----------------------------------------------------------------------------
def pending(key: str, at: datetime = T0, etag: str = "e1", size: int = 10) -> Entry:
    table = key.split("/")[1] if key.count("/") == 2 else None
    return Entry(key, etag, table if table in ("orders", "order_items", "products") else None, size, at.isoformat())


def provides(target: str, *ids: str) -> Refs:
    return Refs({target: frozenset(ids)}, {}, len(ids))


def needs(orders: set[str], products: set[str]) -> Refs:
    return Refs({}, {ORDERS: frozenset(orders), PRODUCTS: frozenset(products)}, len(orders))


class Known:
    """Ids loaded in silver, counting how often they are asked for."""

    def __init__(self, **ids: set[str]) -> None:
        self.ids = {ORDERS: ids.get("orders", set()), PRODUCTS: ids.get("products", set())}
        self.asked: list[str] = []

    def __call__(self, target: str) -> set[str]:
        self.asked.append(target)
        return self.ids[target]


def manifest_of(*entries: Entry) -> Manifest:
    return Manifest(files=list(entries))


def test_a_drop_of_orders_items_and_products_forms_one_complete_set() -> None:
    o, i, p = pending("landing/orders/o.csv"), pending("landing/order_items/i.csv"), pending("landing/products/p.csv")
    refs = {o.id: provides(ORDERS, "o1", "o2"), p.id: provides(PRODUCTS, "P0001"), i.id: needs({"o1", "o2"}, {"P0001"})}
    known = Known()
    forming = form_sets(manifest_of(o, i, p), T0 + timedelta(seconds=6), WAIT, refs, known)
    (formed,) = forming.sets
    assert formed.kind == COMPLETE
    assert formed.complete
    assert [f.key for f in formed.files] == [i.key, o.key, p.key]
    assert formed.tables() == {"order_items": 1, "orders": 1, "products": 1}
    assert re.fullmatch(r"20261127T160006\.000000Z-[0-9a-f]{8}", formed.set_id)
    assert formed.missing == {ORDERS: 0, PRODUCTS: 0}
    assert known.asked == []  # everything was in the set: silver was not read
    assert forming.waiting == []
    record = formed.record()
    assert record["complete"] is True
    assert record["files"][0] == {
        "key": i.key,
        "table": "order_items",
        "size": 10,
        "etag": "e1",
        "landed_at": i.landed_at,
    }


def test_nothing_is_formed_while_a_drop_is_still_landing() -> None:
    o, p = pending("landing/orders/o.csv"), pending("landing/products/p.csv", T0 + timedelta(seconds=2))
    refs = {o.id: provides(ORDERS, "o1"), p.id: provides(PRODUCTS, "P0001")}
    forming = form_sets(manifest_of(o, p), T0 + timedelta(seconds=4), WAIT, refs, Known())
    assert forming.sets == []
    assert "the last file landed 2 s ago" in forming.held
    # a steady stream of files does not hold the oldest back for ever
    late = T0 + timedelta(seconds=SETTLE_LIMIT_SECONDS)
    q = pending("landing/products/q.csv", late)
    refs[q.id] = provides(PRODUCTS, "P0002")
    (formed,) = form_sets(manifest_of(o, p, q), late, WAIT, refs, Known()).sets
    assert len(formed.files) == 3


def test_files_whose_references_are_not_read_yet_hold_the_set_back() -> None:
    o, p = pending("landing/orders/o.csv"), pending("landing/products/p.csv")
    forming = form_sets(manifest_of(o, p), T0 + timedelta(seconds=10), WAIT, {o.id: provides(ORDERS, "o1")}, Known())
    assert forming.sets == []
    assert forming.held == "references of 1 pending file not read yet"


def test_an_unreadable_file_forms_a_set_of_its_own_at_once() -> None:
    o, bad = pending("landing/orders/o.csv"), pending("landing/orders/bad.csv")
    refs: dict[str, Refs | Unreadable] = {o.id: provides(ORDERS, "o1"), bad.id: Unreadable("not readable as a CSV")}
    (alone,) = form_sets(manifest_of(o, bad), T0, WAIT, refs, Known()).sets  # not even settled
    assert (alone.kind, alone.complete, [f.key for f in alone.files]) == (UNREADABLE, True, [bad.key])
    assert alone.reason == "landing/orders/bad.csv: not readable as a CSV"
    kinds = [s.kind for s in form_sets(manifest_of(o, bad), T0 + timedelta(seconds=6), WAIT, refs, Known()).sets]
    assert kinds == [UNREADABLE, COMPLETE]


def test_items_whose_orders_and_products_are_loaded_already_form_a_set() -> None:
    i = pending("landing/order_items/i.csv")
    refs = {i.id: needs({"o1", "o2"}, {"P0001"})}
    known = Known(orders={"o1", "o2", "o3"}, products={"P0001"})
    (formed,) = form_sets(manifest_of(i), T0 + timedelta(seconds=6), WAIT, refs, known).sets
    assert formed.kind == COMPLETE
    assert sorted(known.asked) == [ORDERS, PRODUCTS]  # asked once each


def test_items_missing_ids_wait_then_form_an_incomplete_set_after_the_wait() -> None:
    o = pending("landing/orders/o.csv")
    i = pending("landing/order_items/i.csv")
    refs = {o.id: provides(ORDERS, "o1"), i.id: needs({"o1", "o2", "o3"}, {"P0001", "P0009"})}
    known = Known(products={"P0001"})
    forming = form_sets(manifest_of(o, i), T0 + timedelta(seconds=6), WAIT, refs, known)
    (formed,) = forming.sets  # the orders go ahead; the items wait
    assert [f.key for f in formed.files] == [o.key]
    (waiting,) = forming.waiting
    assert waiting.deadline == T0 + timedelta(seconds=WAIT)
    assert (
        waiting.describe() == "landing/order_items/i.csv waits for 2 orders.order_id (o2, o3) and 1 products.id (P0009)"
    )

    later = manifest_of(i)  # the orders file is in its set now; o1 loaded
    known = Known(orders={"o1"}, products={"P0001"})
    assert form_sets(later, T0 + timedelta(seconds=WAIT - 1), WAIT, refs, known).sets == []
    (incomplete,) = form_sets(later, T0 + timedelta(seconds=WAIT), WAIT, refs, known).sets
    assert (incomplete.kind, incomplete.complete) == (INCOMPLETE, False)
    assert incomplete.missing == {ORDERS: 2, PRODUCTS: 1}
    assert incomplete.record()["waiting"] == [
        {
            "key": i.key,
            "missing": {ORDERS: {"count": 2, "sample": ["o2", "o3"]}, PRODUCTS: {"count": 1, "sample": ["P0009"]}},
        }
    ]
    assert "900 s after landing" in incomplete.reason


def test_set_ids_sort_by_time_and_tell_re_drops_apart() -> None:
    files = [pending("landing/orders/o.csv"), pending("landing/products/p.csv")]
    first = new_set_id(T0, files)
    assert first == new_set_id(T0, list(reversed(files)))
    assert new_set_id(T0 + timedelta(minutes=5), files) > first  # the same bytes dropped again
    assert new_set_id(T0, [files[0], pending("landing/products/p.csv", etag="e2")]) != first


def test_sets_formed_within_one_second_sort_in_the_order_they_were_formed() -> None:
    # whatever their hashes: to the second, two sets formed in one second sorted by hash (a
    # correction could lose to the set it corrects)
    drops = [[pending(f"landing/orders/o{n}.csv", etag=f"e{n}")] for n in range(50)]
    ids = [new_set_id(T0 + timedelta(microseconds=n), files) for n, files in enumerate(drops)]
    assert sorted(ids) == ids
    assert [set_formed_at(i) for i in ids] == [T0 + timedelta(microseconds=n) for n in range(50)]


def test_set_ids_of_older_lakes_keep_their_time_and_order() -> None:
    old = "20261127T160000Z-ffffffff"  # to the second, as lakes written before hold them
    assert set_formed_at(old) == datetime(2026, 11, 27, 16, 0, tzinfo=UTC)
    assert new_set_id(T0 + timedelta(seconds=1), [pending("landing/orders/o.csv")]) > old
    with pytest.raises(ValueError, match="not a file-drop set id"):
        set_formed_at("seed")


# --- references -------------------------------------------------------------------------------
def test_references_come_from_the_contracts_foreign_keys() -> None:
    assert reference_columns("orders") == {"order_id": ("provides", ORDERS)}
    assert reference_columns("products") == {"id": ("provides", PRODUCTS)}
    assert reference_columns("order_items") == {"order_id": ("needs", ORDERS), "product_id": ("needs", PRODUCTS)}


def test_parse_refs_reads_only_the_reference_columns() -> None:
    items = b"id,order_id,user_id,product_id,status\n1,o1,u1,P0001,shipped\n2,o1,u1,P0002,returned\n3,,u2,P0001,x\n"
    refs = parse_refs(io.BytesIO(items), "order_items")
    assert refs.rows == 3
    assert refs.needs == {ORDERS: {"o1"}, PRODUCTS: {"P0001", "P0002"}}  # an empty id is validation's to report
    assert refs.provides == {}


def test_ref_reader_reads_once_and_refuses_what_it_should_not_read(
    settings: Settings, aws: AwsClients, tmp_path: Path
) -> None:
    lake = Lake.open(str(tmp_path))
    reader = RefReader(lake, aws.s3, settings.lake_bucket, max_bytes=100)
    put = aws.s3.put_object(Bucket=settings.lake_bucket, Key="landing/orders/o.csv", Body=b"order_id,user_id\no1,u\n")
    entry = pending("landing/orders/o.csv", etag=put["ETag"].strip('"'))
    assert reader.read(entry) == Refs({ORDERS: frozenset({"o1"})}, {}, 1)
    aws.s3.delete_object(Bucket=settings.lake_bucket, Key=entry.key)
    assert reader.read(entry) == Refs({ORDERS: frozenset({"o1"})}, {}, 1)  # from the cache, not S3
    reader.forget([entry])
    assert isinstance(reader.read(entry), Gone)

    aws.s3.put_object(Bucket=settings.lake_bucket, Key="landing/orders/o.csv", Body=b"order_id\no2\n")
    replaced = reader.read(entry)  # another version than the event announced
    assert isinstance(replaced, Gone)
    assert "ETag changed" in replaced.note

    big = reader.read(pending("landing/orders/big.csv", size=101))  # not even asked for: it does not exist
    assert big == Unreadable("101 bytes, over the limit of 100 (CART_FILEDROP_MAX_FILE_BYTES)")
    unknown = reader.read(pending("landing/customers/c.csv"))
    assert isinstance(unknown, Unreadable)
    assert unknown.reason.startswith("unknown file name")

    for key, body, reason in [
        ("landing/orders/semicolons.csv", b"order_id;user_id\no1;u\n", "Column 'order_id' in include_columns"),
        ("landing/orders/empty.csv", b"", "Empty CSV file"),
        ("landing/orders/header.csv", b"order_id,user_id\n", "no data rows (header only)"),
        ("landing/orders/latin1.csv", "order_id\nä\n".encode("latin-1"), "invalid UTF8"),
    ]:
        put = aws.s3.put_object(Bucket=settings.lake_bucket, Key=key, Body=body)
        found = reader.read(pending(key, etag=put["ETag"].strip('"')))
        assert isinstance(found, Unreadable), key
        assert reason in found.reason, found.reason
