"""``cart-drop``: write or upload realistic file-drop sets, valid or broken on purpose.

- ``cart-drop generate --out DIR``: writes a seeded set (orders, order items, products CSVs) under
  ``DIR/landing/<table>/<name>.csv``, the keys it would have in the lake bucket; ``--validate``
  prints what the pipeline's validation will say about it.
- ``cart-drop upload``: puts a set under ``landing/`` in the lake bucket (``CART_LAKE_BUCKET`` on
  ``CART_AWS_ENDPOINT_URL``: the local AWS of ``make run`` by default), where the landing sensor
  picks it up.
- ``cart-drop faults``: the rules a set can be broken for (``--fault RULE``, or ``--fault all``
  for one set per rule).

Sets come from ``cart_lakehouse.filedrop.sample``: the same seed gives the same bytes (a re-drop).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from cart_aws.aws import AwsClients
from cart_lakehouse.filedrop.layout import TABLES, table_of
from cart_lakehouse.filedrop.sample import (
    DEFAULT_START,
    FAULTS,
    SIZE_LIMIT_FAULT_BYTES,
    Files,
    generate_set,
    late_items,
    oversize,
)
from cart_lakehouse.filedrop.validation import validate_set
from cart_lakehouse.settings import LakeSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ALL = "all"
MAX_PADDED_BYTES = 64 * 1024 * 1024  # the size-limit fault pads a file past the limit: not past this


EXAMPLES = """examples:
  cart-drop upload                                  a valid set of 3,000 orders (make run's stack)
  cart-drop upload --seed 8 --name monday           another set of new orders
  cart-drop upload --tables orders,order_items      a set without products (they are known)
  cart-drop upload --late 0                         late returns for the first day of seed 7's orders
  cart-drop upload --fault 'orders.status: enum'    a set the pipeline quarantines for that rule
  cart-drop generate --out /tmp/drop --items 1000000 --validate
  cart-drop faults                                  the rules --fault accepts
"""


class UsageError(Exception):
    """Wrong arguments or settings: the message says what to do."""


def slug(rule: str) -> str:
    """A rule as a file or folder name: ``orders.order_id: required`` -> ``orders-order-id-required``."""
    return re.sub(r"[^a-z0-9]+", "-", rule.lower()).strip("-")


def _faults(choice: str | None) -> list[str | None]:
    if choice is None:
        return [None]
    if choice == ALL:
        return list(FAULTS)
    if choice not in FAULTS:
        raise UsageError(f"unknown fault {choice!r}; `cart-drop faults` lists them (or use 'all')")
    return [choice]


def build(args: argparse.Namespace, fault: str | None, index: int, size_limit: int) -> Files:
    """The set the arguments describe, broken for ``fault``.

    With several faults (``all``) each set gets its own seed, so sets the landing sensor happens to
    group together do not collide on their ids."""
    seed = args.seed if fault is None or args.fault != ALL else args.seed * 1000 + index + 1
    name = args.name if args.fault != ALL or fault is None else f"{args.name}-{slug(fault)}"
    common = {"seed": seed, "orders": args.orders, "start": args.start, "days": args.days, "name": name}
    if args.late is not None:
        files = late_items(**common, day=args.late)
    else:
        files = generate_set(**common, items=args.items, tables=args.tables)
    if fault is None:
        return files
    try:
        return oversize(size_limit)(files) if fault == "size limit" else FAULTS[fault](files)
    except ValueError as exc:  # the fault needs a file this set does not have (--tables, --late)
        raise UsageError(f"cannot break this set for {fault!r}: {exc}") from None


def _describe(files: Files) -> list[str]:
    lines = []
    for key, data in files.items():
        lines.append(f"{key} ({len(data):,} bytes, table {table_of(key) or '(none): not a file of the drop'})")
    return lines


def _sets(args: argparse.Namespace, limit: int, skip: Sequence[str] = ()) -> list[tuple[str | None, Files]]:
    """Each set to write or upload; with ``--fault all``, the faults this set can show."""
    out = []
    for index, fault in enumerate(_faults(args.fault)):
        if fault in skip:
            continue
        try:
            out.append((fault, build(args, fault, index, limit)))
        except UsageError as exc:
            if args.fault != ALL:
                raise
            print(f"skipping: {exc}")
    return out


def generate(args: argparse.Namespace) -> int:
    limit = LakeSettings().filedrop_max_file_bytes
    if limit > MAX_PADDED_BYTES:
        limit = SIZE_LIMIT_FAULT_BYTES  # a 'size limit' file past this, not past the pipeline's limit
    out = Path(args.out)
    for fault, files in _sets(args, limit):
        root = out / slug(fault) if args.fault == ALL and fault else out
        for key, data in files.items():
            path = root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        what = "a valid set" if fault is None else f"a set breaking {fault!r}"
        if fault == "size limit":
            what += f" (a file over {limit:,} bytes)"
        print(f"wrote {what} under {root}:")
        for line in _describe(files):
            print(f"  {line}")
        if args.validate:
            result = validate_set(files, known_order_ids=set(), known_product_ids=set(), max_bytes=limit)
            print(result.markdown())
            print()
    return 0


def _check_bucket(s3: S3Client, bucket: str, where: str) -> None:
    """Fail early, saying what to do, when AWS is not there or the bucket is missing."""
    try:
        s3.head_bucket(Bucket=bucket)
    except EndpointConnectionError:
        raise UsageError(
            f"cannot reach AWS at {where}: is the local AWS running? Start it with `make run` "
            "(or `cart-local-aws` and `cart-provision`), or point CART_AWS_ENDPOINT_URL at it"
        ) from None
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
            raise UsageError(f"no bucket {bucket!r} on {where}: create it with `cart-provision`") from None
        raise


def upload(args: argparse.Namespace) -> int:
    settings = LakeSettings()
    where = settings.aws_endpoint_url or f"AWS {settings.aws_region}"
    limit = settings.filedrop_max_file_bytes
    if args.fault in ("size limit", ALL) and limit > MAX_PADDED_BYTES:
        problem = (
            f"the 'size limit' fault needs a file over CART_FILEDROP_MAX_FILE_BYTES ({limit:,} bytes); set it to "
            f"at most {MAX_PADDED_BYTES:,} (e.g. {SIZE_LIMIT_FAULT_BYTES}) for the pipeline and cart-drop"
        )
        if args.fault != ALL:
            raise UsageError(problem)
        print(f"skipping: {problem}")
    sets = _sets(args, limit, skip=("size limit",) if limit > MAX_PADDED_BYTES else ())
    s3 = AwsClients(settings, attempts=2).s3
    _check_bucket(s3, settings.lake_bucket, where)
    for fault, files in sets:
        print(
            f"{'valid set' if fault is None else f'set breaking {fault!r}'} -> s3://{settings.lake_bucket} on {where}:"
        )
        for (key, data), line in zip(files.items(), _describe(files), strict=True):
            s3.put_object(Bucket=settings.lake_bucket, Key=key, Body=data, ContentType="text/csv")
            print(f"  put {line}")
    print(
        "The landing_files sensor groups landed files into sets (after a few quiet seconds) and launches "
        f"each: see {settings.dagster_ui_url}/jobs (make run)."
    )
    return 0


def faults(_: argparse.Namespace) -> int:
    for rule in FAULTS:
        print(rule)
    return 0


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _tables(value: str) -> tuple[str, ...]:
    chosen = tuple(t.strip() for t in value.split(",") if t.strip())
    unknown = [t for t in chosen if t not in TABLES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"tables are a comma-separated subset of {','.join(TABLES)}")
    return chosen


def _set_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--orders", type=_positive, default=3000, help="orders in the set (default %(default)s)")
    parser.add_argument(
        "--items", type=_positive, default=None, help="exactly this many order items instead (e.g. 1000000)"
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed; the same seed, the same bytes (default 7)")
    parser.add_argument(
        "--start",
        type=date.fromisoformat,
        default=DEFAULT_START,
        help=f"first order date, YYYY-MM-DD (default {DEFAULT_START})",
    )
    parser.add_argument("--days", type=_positive, default=3, help="days the orders spread over (default 3)")
    parser.add_argument("--name", default="drop", help="file name: landing/<table>/<name>.csv (default drop)")
    parser.add_argument(
        "--tables",
        type=_tables,
        default=TABLES,
        help="files to write, e.g. orders,order_items for a set without products (default: all three)",
    )
    parser.add_argument(
        "--late",
        type=int,
        metavar="DAY",
        default=None,
        help="instead: a late order-items file for the same seed's orders of day DAY (0: --start), half of "
        "their delivered items returned; only that date's KPIs change",
    )
    parser.add_argument(
        "--fault",
        metavar="RULE",
        default=None,
        help="break the set for one rule (see `cart-drop faults`), or 'all': one set per rule, each with its own "
        "seed. Sets whose references point nowhere wait in the landing sensor as incomplete sets",
    )


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="cart-drop",
        description=(
            "Realistic file-drop sets (orders, order items, products CSVs), seeded, valid or broken for one "
            "validation rule: written to a folder or uploaded to landing/ in the lake bucket."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES,
    )
    commands = root.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="write a set under DIR/landing/<table>/<name>.csv")
    gen.add_argument("--out", required=True, help="folder to write into")
    gen.add_argument("--validate", action="store_true", help="also validate the set and print the report")
    _set_options(gen)
    gen.set_defaults(run=generate)
    up = commands.add_parser(
        "upload",
        help="put a set under landing/ in the lake bucket (CART_LAKE_BUCKET on CART_AWS_ENDPOINT_URL)",
        description="Put a set under landing/ in the lake bucket: CART_LAKE_BUCKET on CART_AWS_ENDPOINT_URL "
        "(the local AWS of make run by default). The landing_files sensor picks it up.",
    )
    _set_options(up)
    up.set_defaults(run=upload)
    listing = commands.add_parser("faults", help="list the rules --fault accepts")
    listing.set_defaults(run=faults)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except UsageError as exc:
        print(f"cart-drop: {exc}", file=sys.stderr)
        return 2
    except ClientError as exc:
        error = exc.response.get("Error", {})
        print(f"cart-drop: AWS refused: {error.get('Code')}: {error.get('Message')}", file=sys.stderr)
        return 2
    except BotoCoreError as exc:
        print(f"cart-drop: AWS call failed: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
