"""The manifest of landed files, and how pending files are grouped into file sets.

The manifest (``filedrop/manifest.json`` in the lake, written by the ``landing_files`` sensor only)
holds one entry per landed file: its key and ETag, table, size, when it landed, and its state:
``pending`` (waiting to be part of a set), ``in_set`` (``set_id`` says which) or ``gone`` (the
object was deleted or replaced before the sensor got to it; ``note`` says which). Entries whose
state settled more than ``RETENTION`` ago are pruned: no event older than the queue's retention can
still arrive.

Recording an event (``Manifest.record``):

- an event for a key and ETag that is still pending, or that repeats an event already seen (same
  S3 sequencer, or event time where S3 sends none), is a *duplicate*: recorded once;
- otherwise the object is looked at (HeadObject): gone (404) or replaced (another ETag) marks the
  entry ``gone``; else it is a new pending file, and any older pending version of the key is gone
  (its bytes no longer exist). The same bytes uploaded again after their set was formed are a new
  file: a re-drop is a new set.

Forming sets (``form_sets``, pure): each pending file's *references* are the ids of the contract's
foreign keys (``contracts/filedrop.odcs.yaml``: order_items.order_id -> orders.order_id,
order_items.product_id -> products.id) that it provides (orders, products) or needs (order items),
read by ``RefReader`` and cached beside the manifest. Then, in one tick:

1. a file whose references cannot be read (unknown name, over ``CART_FILEDROP_MAX_FILE_BYTES``, not
   a CSV, a missing column, no data rows) forms a set on its own at once, for validation to reject
   with its rule;
2. nothing else is formed while the newest pending file landed less than ``SETTLE_SECONDS`` ago
   (a drop's files arrive over a few seconds), unless the oldest has waited ``SETTLE_LIMIT_SECONDS``
   (a steady stream of files must not starve), nor while a file's references are still unread;
3. the complete set: every pending file that needs nothing (orders, products) and every file whose
   needed ids are all provided by those files or already loaded (silver; ``known``);
4. a file still missing ids ``wait_seconds`` (``CART_FILEDROP_SET_WAIT_SECONDS``) after it landed
   forms an incomplete set (all such files of the tick together), reported and not launched; the
   others keep waiting.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING, Any

import pyarrow as arrow
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from botocore.exceptions import ClientError

from cart_lakehouse.filedrop.events import LandedObject
from cart_lakehouse.filedrop.landing import is_gone, is_replaced
from cart_lakehouse.filedrop.layout import MANIFEST, TABLES, set_record, table_of
from cart_lakehouse.filedrop.store import write_parquet
from cart_lakehouse.lake import Lake
from contracts import ForeignKey, load_contract

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PENDING, IN_SET, GONE = "pending", "in_set", "gone"
SETTLE_SECONDS = 5.0  # a drop's files land over a few seconds: form a set once none came for this long
SETTLE_LIMIT_SECONDS = 60.0  # ... or once the oldest pending file waited this long
RETENTION = timedelta(days=14)  # SQS's longest retention: no event older than this can still arrive
REFS = "filedrop/refs"  # cached references of pending files, one Parquet file per entry
FORMAT_VERSION = 1
EVENT_IDS_KEPT = 20  # per entry: enough to recognise redeliveries, bounded for a file re-sent forever
SAMPLE = 5  # missing ids named in a report

Known = Callable[[str], "frozenset[str] | set[str]"]  # target ("orders.order_id") -> ids loaded in silver


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


@dataclass
class Entry:
    """One landed file (one version of a key) in the manifest."""

    key: str
    etag: str
    table: str | None  # None: not directly under landing/<orders|order_items|products>/
    size: int
    landed_at: str  # ISO UTC: the S3 event's time
    state: str = PENDING
    set_id: str | None = None
    note: str = ""  # why it is gone
    recorded_at: str = ""
    changed_at: str = ""  # when the state last changed
    event_ids: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        """Stable id of this version of the file (key, ETag and first event's time)."""
        return hashlib.sha256(f"{self.key}\n{self.etag}\n{self.landed_at}".encode()).hexdigest()[:16]

    @property
    def landed(self) -> datetime:
        return utc(self.landed_at)

    def record(self) -> dict[str, Any]:
        """As a set record lists it."""
        return {"key": self.key, "table": self.table, "size": self.size, "etag": self.etag, "landed_at": self.landed_at}


@dataclass(frozen=True)
class ObjectHead:
    etag: str
    size: int


Head = Callable[[str], ObjectHead | None]  # key -> the object as S3 has it now, None if there is none


@dataclass(frozen=True)
class Recorded:
    outcome: str  # "new", "duplicate" or "gone"
    entry: Entry


@dataclass
class Manifest:
    files: list[Entry] = field(default_factory=list)
    unconfirmed: list[str] = field(default_factory=list)  # sets formed, not yet seen as partitions
    updated_at: str = ""

    @classmethod
    def load(cls, lake: Lake) -> Manifest:
        if not lake.exists(MANIFEST):
            return cls()
        data = json.loads(lake.read_bytes(MANIFEST))
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{lake.uri(MANIFEST)} has format version {data.get('version')!r}, this code reads "
                f"{FORMAT_VERSION}: upgrade the code, or move the file away to start a new manifest"
            )
        return cls(
            files=[Entry(**f) for f in data["files"]],
            unconfirmed=list(data.get("unconfirmed", [])),
            updated_at=str(data.get("updated_at", "")),
        )

    def save(self, lake: Lake, now: datetime) -> str:
        self.updated_at = iso(now)
        document = {
            "version": FORMAT_VERSION,
            "updated_at": self.updated_at,
            "unconfirmed": self.unconfirmed,
            "files": [asdict(f) for f in self.files],
        }
        return lake.write_bytes(MANIFEST, json.dumps(document, indent=1).encode())

    def pending(self) -> list[Entry]:
        return [f for f in self.files if f.state == PENDING]

    def entry(self, entry_id: str) -> Entry:
        return next(f for f in self.files if f.id == entry_id)

    def record(self, obj: LandedObject, head: Head, now: datetime) -> Recorded:
        """Record one landed-object event (see the module's docstring)."""
        for known in self.files:
            same = known.key == obj.key and known.etag == obj.etag
            if same and (known.state == PENDING or obj.event_id in known.event_ids):
                if obj.event_id not in known.event_ids:
                    known.event_ids = [*known.event_ids, obj.event_id][-EVENT_IDS_KEPT:]
                return Recorded("duplicate", known)
        landed = obj.event_time or iso(now)
        entry = Entry(
            key=obj.key,
            etag=obj.etag,
            table=table_of(obj.key),
            size=obj.size,
            landed_at=iso(utc(landed)),
            recorded_at=iso(now),
            changed_at=iso(now),
            event_ids=[obj.event_id],
        )
        current = head(obj.key)
        if current is None:
            entry.state, entry.note = GONE, "no longer in the bucket when the sensor looked (HeadObject: 404)"
        elif current.etag != obj.etag:
            entry.state = GONE
            entry.note = f"replaced by another upload (ETag {current.etag}) before the sensor looked"
        else:
            entry.size = current.size
            for older in self.pending():
                if older.key == obj.key:
                    self.mark_gone(older, f"replaced by a newer upload (ETag {obj.etag})", now)
        self.files.append(entry)
        return Recorded("new" if entry.state == PENDING else "gone", entry)

    def mark_gone(self, entry: Entry, note: str, now: datetime) -> None:
        entry.state, entry.note, entry.changed_at = GONE, note, iso(now)

    def assign(self, formed: FormedSet, now: datetime) -> None:
        """The set's files are in it: no longer pending."""
        for member in formed.files:
            entry = self.entry(member.id)
            entry.state, entry.set_id, entry.changed_at = IN_SET, formed.set_id, iso(now)
        self.unconfirmed.append(formed.set_id)

    def prune(self, now: datetime) -> list[Entry]:
        """Drop entries that settled (in a set, gone) longer ago than ``RETENTION``."""
        cutoff = now - RETENTION
        old = [f for f in self.files if f.state != PENDING and utc(f.changed_at or f.recorded_at) < cutoff]
        self.files = [f for f in self.files if f not in old]
        return old


# --- references -------------------------------------------------------------------------------
def references() -> tuple[ForeignKey, ...]:
    """The contract's foreign keys (ODCS ``relationships`` of type foreignKey)."""
    return load_contract("filedrop").foreign_keys()


def reference_columns(table: str) -> dict[str, tuple[str, str]]:
    """The columns to read of a table's file: column -> (``needs`` or ``provides``, target)."""
    columns: dict[str, tuple[str, str]] = {}
    for ref in references():
        if ref.target_table == table:
            columns[ref.target_column] = ("provides", ref.target)
        if ref.table == table:
            columns[ref.column] = ("needs", ref.target)
    return columns


@dataclass(frozen=True)
class Refs:
    """The distinct ids a file provides (orders: order ids) and needs (order items: order and product
    ids), per target."""

    provides: Mapping[str, frozenset[str]]
    needs: Mapping[str, frozenset[str]]
    rows: int


@dataclass(frozen=True)
class Unreadable:
    """Why a file's references cannot be read: it forms a set of its own, which validation rejects."""

    reason: str


def parse_refs(stream: IO[bytes] | arrow.NativeFile, table: str) -> Refs:
    """Read only the reference columns of a CSV stream, batch by batch (memory: the distinct ids).

    Raises ``pyarrow.ArrowException`` (or ``KeyError``/``ValueError``) when it is not a CSV with
    those columns."""
    columns = reference_columns(table)
    reader = pacsv.open_csv(
        stream,
        read_options=pacsv.ReadOptions(block_size=8 << 20),
        convert_options=pacsv.ConvertOptions(
            include_columns=list(columns),
            column_types=dict.fromkeys(columns, arrow.string()),
            strings_can_be_null=False,
        ),
    )
    found: dict[str, set[str]] = {c: set() for c in columns}
    rows = 0
    for batch in reader:
        rows += batch.num_rows
        for column in columns:
            found[column].update(v for v in batch.column(column).unique().to_pylist() if v)
    provides = {t: frozenset(found[c]) for c, (role, t) in columns.items() if role == "provides"}
    needs = {t: frozenset(found[c]) for c, (role, t) in columns.items() if role == "needs"}
    return Refs(provides, needs, rows)


@dataclass(frozen=True)
class Gone:
    note: str


class RefReader:
    """Reads pending files' references from the landing bucket, cached in the lake under ``REFS``
    (a waiting file is read once, not at every tick)."""

    def __init__(self, lake: Lake, s3: S3Client, bucket: str, max_bytes: int) -> None:
        self.lake = lake
        self.s3 = s3
        self.bucket = bucket
        self.max_bytes = max_bytes

    @staticmethod
    def cache_path(entry: Entry) -> str:
        return f"{REFS}/{entry.id}.parquet"

    def read(self, entry: Entry) -> Refs | Unreadable | Gone:
        """The entry's references. S3 errors other than the object being gone (throttling, an
        outage) are raised: the file is not unreadable, the next tick reads it again."""
        if entry.table is None:
            return Unreadable(
                f"unknown file name: {entry.key} is not directly under landing/<{'|'.join(TABLES)}>/, "
                "so no contract describes it"
            )
        if entry.size > self.max_bytes:  # refused before a byte is read
            return Unreadable(
                f"{entry.size:,} bytes, over the limit of {self.max_bytes:,} (CART_FILEDROP_MAX_FILE_BYTES)"
            )
        cached = self.cache_path(entry)
        if self.lake.exists(cached):
            return self._load(cached)
        try:
            # IfMatch: exactly the bytes the event announced, or nothing
            body = self.s3.get_object(Bucket=self.bucket, Key=entry.key, IfMatch=f'"{entry.etag}"')["Body"]
        except ClientError as exc:
            if is_gone(exc):
                return Gone("deleted from the bucket before its set was formed (GetObject: NoSuchKey)")
            if is_replaced(exc):
                return Gone("replaced by another upload before its set was formed (ETag changed)")
            raise
        try:
            refs = parse_refs(arrow.PythonFile(body, mode="r"), entry.table)
        except (arrow.ArrowException, KeyError, ValueError) as exc:
            return Unreadable(f"not readable as a CSV with {', '.join(reference_columns(entry.table))}: {exc}")
        finally:
            body.close()
        if refs.rows == 0:
            return Unreadable("no data rows (header only)")
        self._save(cached, refs)
        return refs

    def _save(self, path: str, refs: Refs) -> None:
        roles: list[str] = []
        targets: list[str] = []
        ids: list[str] = []
        for role, part in (("provides", refs.provides), ("needs", refs.needs)):
            for target, values in part.items():
                roles += [role] * len(values)
                targets += [target] * len(values)
                ids += sorted(values)
        table = arrow.table(
            {
                "role": arrow.array(roles, arrow.string()).dictionary_encode(),
                "target": arrow.array(targets, arrow.string()).dictionary_encode(),
                "id": arrow.array(ids, arrow.string()),
            }
        )
        table = table.replace_schema_metadata({"rows": str(refs.rows)})
        write_parquet(self.lake, path, table)

    def _load(self, path: str) -> Refs:
        table = pq.read_table(io.BytesIO(self.lake.read_bytes(path)))
        roles = table.column("role").cast(arrow.string())
        targets = table.column("target").cast(arrow.string())
        parts: dict[str, dict[str, frozenset[str]]] = {"provides": {}, "needs": {}}
        for role in parts:
            for target in pc.unique(pc.filter(targets, pc.equal(roles, role))).to_pylist():
                chosen = pc.and_(pc.equal(roles, role), pc.equal(targets, target))
                parts[role][target] = frozenset(pc.filter(table.column("id"), chosen).to_pylist())
        rows = int((table.schema.metadata or {}).get(b"rows", b"0"))
        return Refs(parts["provides"], parts["needs"], rows)

    def forget(self, entries: Iterable[Entry]) -> None:
        """Drop the cached references of entries no longer pending."""
        for entry in entries:
            self.lake.delete(self.cache_path(entry))


# --- sets -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Waiting:
    """A file missing ids: per target, how many and a few of them."""

    entry: Entry
    missing: Mapping[str, tuple[int, tuple[str, ...]]]
    deadline: datetime  # when it is reported as incomplete

    def describe(self) -> str:
        parts = [
            f"{count} {target} ({', '.join(sample)}{', …' if count > len(sample) else ''})"
            for target, (count, sample) in sorted(self.missing.items())
            if count
        ]
        return f"{self.entry.key} waits for {' and '.join(parts)}"

    def record(self) -> dict[str, Any]:
        return {
            "key": self.entry.key,
            "missing": {t: {"count": c, "sample": list(s)} for t, (c, s) in sorted(self.missing.items())},
        }


COMPLETE, UNREADABLE, INCOMPLETE = "complete", "unreadable", "incomplete"


def new_set_id(formed_at: datetime, files: Iterable[Entry]) -> str:
    """``YYYYMMDDTHHMMSS.ffffffZ-<8 hex>``: the time the set was formed, to the microsecond, and a
    hash of its keys and ETags (so ids sort by time, and the same bytes dropped again get another id).

    The order of ids is the order of the sets: the latest set's row per key wins in the KPIs, and
    its version in ``dim_product``. To the second only (``YYYYMMDDTHHMMSSZ-<8 hex>``, the ids of
    lakes written before), two sets formed within one second sorted by their hashes, whichever was
    formed last: a correction dropped right after a set could lose to it. Ids of that form stay
    readable (``set_formed_at``)."""
    digest = hashlib.sha256("\n".join(sorted(f"{f.key}\t{f.etag}" for f in files)).encode()).hexdigest()
    return f"{formed_at.astimezone(UTC).strftime(SET_ID_TIME_FORMATS[0])}-{digest[:8]}"


# this code's ids, then those of older lakes (dbt_project/models/star/dim_product.sql reads both)
SET_ID_TIME_FORMATS = ("%Y%m%dT%H%M%S.%fZ", "%Y%m%dT%H%M%SZ")


def set_formed_at(set_id: str) -> datetime:
    """When the set ``set_id`` was formed (UTC), from its id (of either form ``new_set_id`` names)."""
    stamp = set_id.split("-", 1)[0]
    for form in SET_ID_TIME_FORMATS:
        try:
            return datetime.strptime(stamp, form).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError(f"{set_id!r} is not a file-drop set id (<YYYYMMDDTHHMMSS.ffffffZ>-<8 hex>)")


@dataclass(frozen=True)
class FormedSet:
    set_id: str
    kind: str  # complete, unreadable (one file validation will reject) or incomplete
    files: tuple[Entry, ...]
    formed_at: datetime
    reason: str
    waiting: tuple[Waiting, ...] = ()

    @property
    def complete(self) -> bool:
        """Whether the set may run: an incomplete one waits for someone to force it."""
        return self.kind != INCOMPLETE

    @property
    def missing(self) -> dict[str, int]:
        totals: dict[str, int] = {r.target: 0 for r in references()}
        for waiting in self.waiting:
            for target, (count, _) in waiting.missing.items():
                totals[target] = totals.get(target, 0) + count
        return totals

    def tables(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for f in self.files:
            counts[f.table or "unknown"] = counts.get(f.table or "unknown", 0) + 1
        return dict(sorted(counts.items()))

    def record(self) -> dict[str, Any]:
        """The set record (``filedrop/sets/<set_id>.json``)."""
        return {
            "set_id": self.set_id,
            "files": [f.record() for f in self.files],
            "complete": self.complete,
            "formed_at": iso(self.formed_at),
            "kind": self.kind,
            "reason": self.reason,
            "missing_ids": self.missing,
            "waiting": [w.record() for w in self.waiting],
        }

    def write(self, lake: Lake) -> str:
        return lake.write_bytes(set_record(self.set_id), json.dumps(self.record(), indent=2).encode())


@dataclass
class Forming:
    """What one tick formed, and what still waits (and why)."""

    sets: list[FormedSet] = field(default_factory=list)
    waiting: list[Waiting] = field(default_factory=list)
    held: str = ""  # why readable files were held back this tick, if they were


def form_sets(
    manifest: Manifest,
    now: datetime,
    wait_seconds: float,
    refs: Mapping[str, Refs | Unreadable],
    known: Known,
    settle_seconds: float = SETTLE_SECONDS,
) -> Forming:
    """Group the manifest's pending files into sets (see the module's docstring). Pure: reads the
    manifest, the references by entry id, and ``known`` (asked only for ids no pending file provides)."""
    forming = Forming()
    pending = manifest.pending()
    for entry in pending:
        found = refs.get(entry.id)
        if isinstance(found, Unreadable):
            forming.sets.append(
                FormedSet(new_set_id(now, [entry]), UNREADABLE, (entry,), now, f"{entry.key}: {found.reason}")
            )
    readable = [e for e in pending if isinstance(refs.get(e.id), Refs)]
    unread = [e for e in pending if e.id not in refs]
    if not readable:
        return forming
    quiet = (now - max(e.landed for e in readable)).total_seconds()
    oldest = (now - min(e.landed for e in readable)).total_seconds()
    if unread:
        forming.held = f"references of {plural(len(unread), 'pending file')} not read yet"
        return forming
    if quiet < settle_seconds and oldest < SETTLE_LIMIT_SECONDS:
        forming.held = (
            f"the last file landed {quiet:.0f} s ago: waiting {settle_seconds:.0f} s for the rest of the drop"
        )
        return forming

    def refs_of(entry: Entry) -> Refs:
        found = refs[entry.id]
        assert isinstance(found, Refs)
        return found

    provided: dict[str, set[str]] = {}
    chosen: list[Entry] = []

    def take(entry: Entry) -> None:
        chosen.append(entry)
        for target, ids in refs_of(entry).provides.items():
            provided.setdefault(target, set()).update(ids)

    known_cache: dict[str, frozenset[str] | set[str]] = {}

    def missing_of(entry: Entry) -> dict[str, set[str]]:
        gaps: dict[str, set[str]] = {}
        for target, ids in refs_of(entry).needs.items():
            gap = set(ids) - provided.get(target, set())
            if gap:  # only then ask for what is loaded already (a read of silver)
                if target not in known_cache:
                    known_cache[target] = known(target)
                gap -= known_cache[target]
            gaps[target] = gap
        return gaps

    rest: list[Entry] = []
    for entry in readable:
        (rest if any(refs_of(entry).needs.values()) else chosen).append(entry)
    for entry in list(chosen):
        chosen.remove(entry)
        take(entry)
    progress = True
    while progress and rest:  # a file providing what another needs may itself need something
        progress = False
        for entry in list(rest):
            if not any(missing_of(entry).values()):
                rest.remove(entry)
                take(entry)
                progress = True
    if chosen:
        ordered = tuple(sorted(chosen, key=lambda e: (e.table or "", e.key)))
        reason = f"{plural(len(ordered), 'file')}, every reference present in the set or loaded already"
        forming.sets.append(FormedSet(new_set_id(now, ordered), COMPLETE, ordered, now, reason))
    expired: list[Waiting] = []
    for entry in rest:
        gaps = missing_of(entry)
        waiting = Waiting(
            entry,
            {t: (len(g), tuple(sorted(g)[:SAMPLE])) for t, g in sorted(gaps.items())},
            entry.landed + timedelta(seconds=wait_seconds),
        )
        (expired if now >= waiting.deadline else forming.waiting).append(waiting)
    if expired:
        files = tuple(w.entry for w in expired)
        reason = f"{len(files)} files still missing referenced ids {wait_seconds:.0f} s after landing: " + "; ".join(
            w.describe() for w in expired
        )
        forming.sets.append(FormedSet(new_set_id(now, files), INCOMPLETE, files, now, reason, tuple(expired)))
    return forming
