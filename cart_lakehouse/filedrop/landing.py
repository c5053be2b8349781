"""The landed files of a set in the lake bucket: fetching them (size checked before reading),
moving them to the archive or the quarantine (nothing leaves landing before its copy is
verified), recording where they went, and telling people on the file-drop topic.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from cart_lakehouse.filedrop.layout import TABLES, set_outcome, set_record, set_redrop
from cart_lakehouse.filedrop.store import set_files
from cart_lakehouse.lake import Lake

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient


@dataclass(frozen=True)
class SetFile:
    key: str  # where producers dropped it: landing/<table>/<name>
    table: str | None
    size: int
    etag: str


@dataclass(frozen=True)
class FileSet:
    """A set as the landing sensor formed it (``filedrop/sets/<set_id>.json``)."""

    set_id: str
    files: tuple[SetFile, ...]
    complete: bool
    formed_at: str
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, lake: Lake, set_id: str) -> FileSet:
        path = set_record(set_id)
        if not lake.exists(path):
            raise FileNotFoundError(
                f"set {set_id!r} has no record at {lake.uri(path)}: sets are formed by the landing_files sensor"
            )
        data = json.loads(lake.read_bytes(path))
        files = tuple(
            SetFile(f["key"], f.get("table"), int(f.get("size") or 0), str(f.get("etag") or "")) for f in data["files"]
        )
        known = {"set_id", "files", "complete", "formed_at"}
        return cls(
            set_id=data["set_id"],
            files=files,
            complete=bool(data.get("complete", True)),
            formed_at=str(data.get("formed_at", "")),
            details={k: v for k, v in data.items() if k not in known},
        )


@dataclass
class Outcome:
    """What became of a set: ``loaded`` (archived) or ``rejected`` (quarantined), and where each
    file now is, so a rerun of the set reads them from there. ``archiving`` / ``quarantining``: the
    files' destinations, saved before they move, so an attempt cut off halfway leaves them findable."""

    set_id: str
    status: str
    moved: dict[str, str]  # landing key -> archive or quarantine key
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    summary: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, lake: Lake, set_id: str) -> Outcome | None:
        path = set_outcome(set_id)
        return cls(**json.loads(lake.read_bytes(path))) if lake.exists(path) else None

    def save(self, lake: Lake) -> str:
        return lake.write_bytes(set_outcome(self.set_id), json.dumps(asdict(self), indent=2, default=str).encode())


def _signature(file_set: FileSet) -> list[tuple[str, str, int]]:
    return sorted((f.table or "", f.etag.strip('"'), f.size) for f in file_set.files)


def redrop_of(lake: Lake, file_set: FileSet) -> str | None:
    """The loaded set this one repeats byte for byte, if that set is the latest one in silver.

    Then loading it again cannot change anything: silver's latest row per key would come from the
    same bytes, so every KPI stays as it is. The latest set *in silver* (not the latest loaded):
    a later set that wrote silver but did not finish (a failed check, a run still going) has
    rows that a repeat of an earlier set must win over again. A repeat of an older set, or of a
    set whose run did not finish, is loaded like any set."""
    in_silver = {s for table in TABLES for s in set_files(lake, "silver", table)}
    latest = max((s for s in in_silver if s < file_set.set_id), default=None)
    if latest is None:
        return None
    outcome = Outcome.load(lake, latest)
    if outcome is None or outcome.status != "loaded":
        return None
    return latest if _signature(FileSet.load(lake, latest)) == _signature(file_set) else None


def mark_redrop(lake: Lake, set_id: str, of: str) -> str:
    return lake.write_bytes(set_redrop(set_id), json.dumps({"set_id": set_id, "redrop_of": of}).encode())


def redrop_mark(lake: Lake, set_id: str) -> str | None:
    """The set this one re-drops, as its bronze step found (None: a set loaded in full)."""
    path = set_redrop(set_id)
    return str(json.loads(lake.read_bytes(path))["redrop_of"]) if lake.exists(path) else None


def _etag(value: object) -> str:
    return str(value or "").strip('"')


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


_GONE = ("404", "NoSuchKey", "NotFound")
_CHANGED = ("412", "PreconditionFailed")


def is_gone(exc: ClientError) -> bool:
    """S3 says the object is not there (HeadObject answers 404, GetObject NoSuchKey)."""
    return _code(exc) in _GONE


def is_replaced(exc: ClientError) -> bool:
    """S3 refused an If-Match: the key holds other bytes now."""
    return _code(exc) in _CHANGED


class Replaced(Exception):
    """A landed key no longer holds the bytes its set was formed with: a newer upload replaced
    them (that upload is a file of its own, for another set)."""

    def __init__(self, key: str, etag: str, current: str) -> None:
        super().__init__(f"{key} was replaced by a newer upload (ETag {current or '?'}, the set has {etag})")
        self.key, self.etag, self.current = key, etag, current


class Landing:
    """The lake bucket's landed files, through boto3."""

    def __init__(self, s3: S3Client, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def head(self, key: str) -> tuple[int, str] | None:
        """The object's size and ETag (without quotes), None when it is gone."""
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if is_gone(exc):
                return None
            raise
        return int(head["ContentLength"]), _etag(head.get("ETag"))

    def size(self, key: str) -> int | None:
        """The object's size, None when it is gone."""
        found = self.head(key)
        return None if found is None else found[0]

    def read(self, key: str, etag: str = "") -> bytes:
        """The object's bytes; with ``etag``, exactly that version (``Replaced`` otherwise)."""
        try:
            if etag:
                return self.s3.get_object(Bucket=self.bucket, Key=key, IfMatch=f'"{_etag(etag)}"')["Body"].read()
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if etag and _code(exc) in _CHANGED:
                raise Replaced(key, _etag(etag), "") from None
            raise

    def locate(self, key: str, outcome: Outcome | None, etag: str = "", elsewhere: Sequence[str] = ()) -> str | None:
        """Where a set's file is now: still in landing, or where an earlier run moved it (its
        outcome says, or, for a run cut off before it said, one of ``elsewhere``). With the set's
        ``etag``, a landed key holding another upload is not the set's file: ``Replaced`` when its
        own bytes are nowhere else."""
        found = self.head(key)
        if found is not None and (not etag or found[1] == _etag(etag)):
            return key
        moved = outcome.moved.get(key) if outcome else None
        for candidate in [moved, *elsewhere]:
            if candidate and self.size(candidate) is not None:
                return candidate
        if found is not None:
            raise Replaced(key, _etag(etag), found[1])
        return None

    def move(self, source: str, target: str, etag: str = "") -> bool:
        """Copy, verify the copy (size, and the ETag when both are single-part), then delete the
        landed file if it still is the version copied. With ``etag``, only that version is moved:
        False (nothing done) when the key holds another upload, which belongs to another set."""
        head = self.s3.head_object(Bucket=self.bucket, Key=source)
        if etag and _etag(head.get("ETag")) != _etag(etag):
            return False
        # managed copy: multipart above 8 MB, so files past the 5 GB CopyObject limit move too
        self.s3.copy({"Bucket": self.bucket, "Key": source}, self.bucket, target)
        copy = self.s3.head_object(Bucket=self.bucket, Key=target)
        same_size = copy["ContentLength"] == head["ContentLength"]
        etags = (str(head.get("ETag", "")), str(copy.get("ETag", "")))
        single_part = all("-" not in e for e in etags)
        if not same_size or (single_part and etags[0] != etags[1]):
            # the key was replaced between the head and the copy: the copy is not the set's file
            self.s3.delete_object(Bucket=self.bucket, Key=target)
            raise RuntimeError(
                f"copy of s3://{self.bucket}/{source} to {target} does not match "
                f"(size {head['ContentLength']} vs {copy['ContentLength']}, ETag {etags[0]} vs {etags[1]}); "
                "the landed file is kept"
            )
        try:  # only the version copied: a newer upload landing meanwhile stays for its own set
            self.s3.delete_object(Bucket=self.bucket, Key=source, IfMatch=etags[0])
        except ClientError as exc:
            if _code(exc) not in _CHANGED + _GONE:
                raise
        return True

    def move_all(self, moves: Mapping[str, str], etags: Mapping[str, str] | None = None) -> list[str]:
        """Move each file that is still in landing (in parallel), only the version of ``etags``
        (landing key -> ETag) when given. Returns the keys whose file could not be moved because
        a newer upload replaced it before its copy was made (its bytes are gone; the newer upload
        stays in landing)."""
        pending = [(s, t) for s, t in moves.items() if s != t and self.size(s) is not None]

        def one(move: tuple[str, str]) -> str | None:
            source, target = move
            if self.move(source, target, (etags or {}).get(source, "")):
                return None
            return None if self.size(target) is not None else source  # moved by an earlier run

        with ThreadPoolExecutor(max_workers=max(1, min(len(pending), 8))) as pool:
            return [k for k in pool.map(one, pending) if k]  # list: raises the first error

    def put_json(self, key: str, document: Any) -> str:
        self.s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=json.dumps(document, indent=2, default=str).encode(),
            ContentType="application/json",
        )
        return f"s3://{self.bucket}/{key}"


@dataclass(frozen=True)
class Notice:
    """A message on the file-drop topic: a set was loaded or rejected, and what it touched."""

    set_id: str
    status: str  # loaded | rejected
    files: Sequence[str]
    rows: Mapping[str, int]
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        return f"[cart-filedrop] set {self.set_id} {self.status}"[:100]

    def body(self) -> str:
        return json.dumps(asdict(self), default=str, sort_keys=True)


def notify(sns: SNSClient, topic_arn: str, notice: Notice) -> str:
    answer = sns.publish(
        TopicArn=topic_arn,
        Subject=notice.subject,
        Message=notice.body(),
        MessageAttributes={"status": {"DataType": "String", "StringValue": notice.status}},
    )
    return answer["MessageId"]
