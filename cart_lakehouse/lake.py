"""The lake: one interface over a local folder or ``s3://bucket/prefix`` (pyarrow filesystems).

pyarrow's filesystems are used because the same object then serves bronze's writes, Parquet
reads and listings on both a local disk and S3 (with an endpoint override for the moto server).
Writes of a single file are atomic on both: a local file is written beside its target and
renamed over it; an S3 object appears only when its upload completes.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from urllib.parse import urlparse

import pyarrow.fs as pafs

from cart_aws.settings import AwsSettings


@dataclass(frozen=True)
class Lake:
    root: str  # "/abs/path/lake" or "s3://bucket/prefix"
    fs: pafs.FileSystem
    base: str  # the root as the filesystem names it: "/abs/path/lake" or "bucket/prefix"

    @classmethod
    def open(cls, root: str, aws: AwsSettings | None = None) -> Lake:
        if root.startswith("s3://"):
            aws = aws or AwsSettings()
            parsed = urlparse(root)
            kwargs: dict[str, object] = {"region": aws.aws_region}
            if aws.aws_endpoint_url:
                endpoint = urlparse(aws.aws_endpoint_url)
                kwargs.update(endpoint_override=endpoint.netloc, scheme=endpoint.scheme)
                if not os.environ.get("AWS_ACCESS_KEY_ID"):
                    kwargs.update(access_key="testing", secret_key="testing")
            fs = pafs.S3FileSystem(**kwargs)
            return cls(root.rstrip("/"), fs, f"{parsed.netloc}{parsed.path}".rstrip("/"))
        if "://" in root:
            raise ValueError(f"lake root {root!r}: use a local folder or s3://bucket/prefix")
        local = os.path.abspath(root)
        return cls(local, pafs.LocalFileSystem(), local)

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, relative: str) -> str:
        """The filesystem path of ``relative`` (what ``self.fs`` takes)."""
        return f"{self.base}/{relative.strip('/')}" if relative else self.base

    def uri(self, relative: str = "") -> str:
        """The full location of ``relative``, as Spark, DuckDB and people read it."""
        return f"{self.root}/{relative.strip('/')}" if relative else self.root

    def write_bytes(self, relative: str, data: bytes) -> str:
        """Write one file atomically: readers see the old content or the new, never a part."""
        target = self.path(relative)
        parent = target.rsplit("/", 1)[0]
        if not self.is_local:  # S3 has no folders: creating one would leave marker objects
            with self.fs.open_output_stream(target) as out:
                out.write(data)
            return self.uri(relative)
        self.fs.create_dir(parent, recursive=True)
        staging = f"{parent}/.{target.rsplit('/', 1)[1]}.{uuid.uuid4().hex}.tmp"
        try:
            with self.fs.open_output_stream(staging) as out:
                out.write(data)
            os.replace(staging, target)
        finally:
            if os.path.exists(staging):
                os.unlink(staging)
        return self.uri(relative)

    def read_bytes(self, relative: str) -> bytes:
        with self.fs.open_input_stream(self.path(relative)) as stream:
            return bytes(stream.read())

    def exists(self, relative: str) -> bool:
        return bool(self.fs.get_file_info(self.path(relative)).type != pafs.FileType.NotFound)

    def size(self, relative: str) -> int:
        info = self.fs.get_file_info(self.path(relative))
        return int(info.size or 0)

    def files(self, relative: str) -> list[str]:
        """Every file under ``relative`` (relative paths, sorted); none if it does not exist."""
        selector = pafs.FileSelector(self.path(relative), recursive=True, allow_not_found=True)
        prefix = self.base + "/"
        return sorted(
            info.path.removeprefix(prefix)
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File
        )

    def delete(self, relative: str) -> None:
        """Delete a file or a whole directory; nothing if it does not exist."""
        info = self.fs.get_file_info(self.path(relative))
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(info.path)
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(info.path)
