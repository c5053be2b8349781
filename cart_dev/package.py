"""The two Lambda packages (``make package``): ``dist/lambda/api.zip`` and ``dist/lambda/worker.zip``.

Each zip holds the ingest service's code (``cart_api``, ``cart_aws``, ``contracts`` with its
contract files) and its locked runtime dependencies (``[project] dependencies`` of the lock file
only: no Spark, Dagster, dbt or moto, which are extras), installed for Lambda's platform (Linux
x86_64, manylinux2014 wheels, the functions' Python), compiled to bytecode. Which zips, their handlers and their Python
come from the resource description (``cart_aws.resources``), as in the template. A package over
Lambda's limits (50 MB zipped for a direct upload, 250 MB unzipped) fails the build.

Run: ``make package`` or ``uv run python -m cart_dev.package [--out DIR]``.
"""

from __future__ import annotations

import argparse
import compileall
import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cart_aws.resources import Function, cart_stack
from cart_aws.settings import AwsSettings

ROOT = Path(__file__).resolve().parents[1]
CODE_PACKAGES = ("cart_api", "cart_aws", "contracts")
LAMBDA_PLATFORM = "x86_64-manylinux2014"
MAX_ZIPPED_BYTES = 50 * 1024 * 1024  # a zip uploaded directly (the template's code is in S3, but keep to it)
MAX_UNZIPPED_BYTES = 250 * 1024 * 1024  # function code and layers, unzipped
_SKIPPED_SUFFIXES = (".pyi",)  # type stubs: a function never reads them


class PackageError(RuntimeError):
    """A package could not be built, or is over Lambda's limits."""


@dataclass(frozen=True)
class Package:
    """One built zip file and what Lambda counts of it."""

    function: str
    handler: str
    path: Path
    zipped_bytes: int
    unzipped_bytes: int

    @property
    def problems(self) -> list[str]:
        out = []
        if self.zipped_bytes > MAX_ZIPPED_BYTES:
            out.append(f"{self.path.name}: {_mb(self.zipped_bytes)} zipped, over Lambda's {_mb(MAX_ZIPPED_BYTES)}")
        if self.unzipped_bytes > MAX_UNZIPPED_BYTES:
            out.append(
                f"{self.path.name}: {_mb(self.unzipped_bytes)} unzipped, over Lambda's {_mb(MAX_UNZIPPED_BYTES)}"
            )
        return out


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def zip_name(function: Function) -> str:
    """``ApiCodeKey`` -> ``api.zip``: the zip the template parameter points at."""
    return function.code_key_parameter.removesuffix("CodeKey").lower() + ".zip"


def _uv() -> str:
    uv = os.environ.get("UV") or shutil.which("uv")
    if not uv:
        raise PackageError("uv is not on PATH: run `make setup` first (it installs uv)")
    return uv


def _run(command: list[str]) -> None:
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PackageError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr.strip()}")


def install_dependencies(target: Path, python_version: str, python_platform: str | None) -> None:
    """The locked runtime dependencies into ``target``, for ``python_platform`` (``None``: this
    machine's, which the tests use to stay offline-friendly)."""
    requirements = target.parent / "requirements.txt"
    # --frozen: exactly the lock file's versions (and hashes), without re-resolving
    _run(
        [
            _uv(),
            "export",
            "--frozen",
            "--no-dev",
            "--no-emit-project",
            "--format",
            "requirements.txt",
            "--output-file",
            str(requirements),
            "--quiet",
        ]
    )
    command = [
        _uv(),
        "pip",
        "install",
        "--quiet",
        "--no-deps",  # the export is the whole locked closure
        "--only-binary",
        ":all:",  # wheels only: nothing compiled here for another platform
        "--target",
        str(target),
        "--python-version",
        python_version,
        "--requirements",
        str(requirements),
    ]
    if python_platform is not None:
        command += ["--python-platform", python_platform]
    else:
        command += ["--python", sys.executable]
    _run(command)


def _copy_code(target: Path) -> None:
    for name in CODE_PACKAGES:
        # this checkout's bytecode caches stay out: compile() writes the package's own
        shutil.copytree(ROOT / name, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def compile_bytecode(target: Path, python_version: str) -> None:
    """Compile every module ahead of time: Lambda's code folder is read-only, so without ``.pyc``
    files every cold start compiles botocore, pydantic and FastAPI again (several seconds).
    Unchecked-hash ``.pyc`` files are used as they are, whatever the file times after unzipping."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if here != python_version:
        raise PackageError(f"bytecode for Python {python_version} needs that Python; this is {here} (use `uv run`)")
    if not compileall.compile_dir(
        target, quiet=1, workers=0, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
    ):
        raise PackageError(f"some modules in {target} do not compile (see above)")


def _zip(source: Path, destination: Path) -> int:
    """Zip ``source``'s tree (sorted, so the same input gives the same listing); returns the
    unzipped size."""
    unzipped = 0
    destination.unlink(missing_ok=True)
    with zipfile.ZipFile(destination, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in sorted(source.rglob("*")):
            relative = path.relative_to(source)
            if not path.is_file() or path.name.endswith(_SKIPPED_SUFFIXES):
                continue
            archive.write(path, relative.as_posix())
            unzipped += path.stat().st_size
    return unzipped


def build(out_dir: Path, *, python_platform: str | None = LAMBDA_PLATFORM) -> list[Package]:
    """Build one zip per Lambda function of the resource description into ``out_dir``."""
    functions = cart_stack(AwsSettings.model_construct()).functions
    versions = {f.runtime.removeprefix("python") for f in functions}
    if len(versions) != 1:
        raise PackageError(f"the functions use different runtimes ({sorted(versions)}); one package set per runtime")
    (python_version,) = versions
    out_dir.mkdir(parents=True, exist_ok=True)
    packages = []
    with tempfile.TemporaryDirectory(prefix="cart-package-") as tmp:
        # both functions run the same code (cart_api.lambda_handler): installed once, zipped per function
        staging = Path(tmp) / "package"
        install_dependencies(staging, python_version, python_platform)
        _copy_code(staging)
        compile_bytecode(staging, python_version)
        for function in functions:
            path = out_dir / zip_name(function)
            unzipped = _zip(staging, path)
            packages.append(Package(function.name, function.handler, path, path.stat().st_size, unzipped))
    return packages


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=(
            "Build the Lambda packages (one zip per function of the resource description: the ingest "
            "service's code and its locked runtime dependencies for Lambda's platform) and check them "
            "against Lambda's size limits."
        )
    )
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "lambda", help="output folder (dist/lambda)")
    parser.add_argument(
        "--python-platform",
        default=LAMBDA_PLATFORM,
        help=f"target platform of the wheels, as uv names it (default {LAMBDA_PLATFORM}, Lambda's x86_64)",
    )
    args = parser.parse_args(argv)
    try:
        packages = build(args.out, python_platform=args.python_platform)
    except PackageError as error:
        sys.exit(f"make package: {error}")
    print(f"{'zip':<40} {'handler':<42} {'zipped':>10} {'unzipped':>10}")
    for package in packages:
        print(
            f"{_shown(package.path):<40} {package.handler:<42} "
            f"{_mb(package.zipped_bytes):>10} {_mb(package.unzipped_bytes):>10}"
        )
    print(f"Lambda's limits: {_mb(MAX_ZIPPED_BYTES)} zipped (direct upload), {_mb(MAX_UNZIPPED_BYTES)} unzipped")
    problems = [problem for package in packages for problem in package.problems]
    if problems:
        sys.exit("make package: over Lambda's limits:\n  " + "\n  ".join(problems))


if __name__ == "__main__":
    main()
