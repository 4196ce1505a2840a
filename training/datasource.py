"""Find the ratings data, so the loaders (`training.loaders`) can read it from a plain folder or file.

`resolve_data_dir` tries, in order:

1. an explicit source (the CLI's ``--data``),
2. the ``RECSYS_DATA_DIR`` environment variable,
3. an already extracted cache, ``<cache>/ml-100k``,
4. a download of the official ML-100K zip into the cache.

A source is a folder in any supported layout (`training.loaders.LAYOUTS`: ML-100K, ML-1M, ML-10M, ML-20M/25M/
32M/latest), a folder holding one such folder (``ml-25m/``), a zip of one, or a single ratings file (CSV, TSV,
Parquet), which is returned as it is. A folder or file is trusted as given.

Zips: the digest of every zip is computed before it is opened. A download must match its known digest
(`KNOWN_ZIPS`); a zip the user gives is "official" when its digest is a known one and otherwise taken as the
user's own (e.g. ml-100k zipped by hand), which is accepted with a note: corruption still fails, since every
member's CRC-32 is checked as it is extracted. Only ML-100K's digest is recorded here: the others could not be
verified on this machine, and a wrong digest would reject the real file. Extraction goes into the cache through
a temporary directory that is renamed into place, so an interrupted run never leaves a half directory that a
later run would mistake for a complete one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

import httpx
from tqdm import tqdm

from training.loaders import describe_unknown, detect_layout

__all__ = [
    "CACHE_ENV",
    "DATA_ENV",
    "KNOWN_ZIPS",
    "ML100K_SHA256",
    "ML100K_URL",
    "DataSourceError",
    "default_cache_dir",
    "resolve_data_dir",
]

logger = logging.getLogger(__name__)

ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ML100K_SHA256 = "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"
# SHA-256 of the official GroupLens zips, by file name. Add one only when it is certain (see the module docstring).
KNOWN_ZIPS = {"ml-100k.zip": ML100K_SHA256}
DATA_ENV = "RECSYS_DATA_DIR"
CACHE_ENV = "RECSYS_CACHE_DIR"

# The file every MovieLens 100K directory has; its presence is what makes a directory "the data".
MARKER = "u.data"
DATASET_DIRNAME = "ml-100k"
# Where a downloaded zip is kept, so a cache whose extracted directory was removed need not download again.
CACHED_ZIP_NAME = "ml-100k.zip"

# The zip is ~5 MB: a generous read timeout for slow links, a short connect timeout so offline fails fast.
_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
_CHUNK = 1 << 16

_HOW_TO_PROVIDE = (
    f"pass --data PATH or set the {DATA_ENV} environment variable to a MovieLens folder (e.g. one containing "
    f"u.data), a MovieLens zip, or your own ratings file"
)


class DataSourceError(Exception):
    """The ratings data could not be found or obtained; the message says what to do about it."""


def default_cache_dir() -> Path:
    """Return ``$RECSYS_CACHE_DIR``, else ``$XDG_CACHE_HOME/recsys``, else ``~/.cache/recsys``.

    Returns
    -------
    Path
        The directory (not created here).
    """
    if explicit := os.environ.get(CACHE_ENV):
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "recsys"


def resolve_data_dir(
    source: str | Path | None = None,
    *,
    cache_dir: Path | None = None,
    url: str = ML100K_URL,
    sha256: str | None = None,
    download: bool = True,
) -> Path:
    """Return a folder in a supported layout, or a single ratings file.

    Parameters
    ----------
    source
        A folder in a supported layout, a folder holding one, a zip of one, or a ratings file (.csv, .tsv,
        .parquet). When ``None``, the ``RECSYS_DATA_DIR`` environment variable is used in its place (same
        forms), then the cache, then a download of ML-100K.
    cache_dir
        Where zips are extracted and downloads are kept; defaults to `default_cache_dir()`.
    url
        Where to download the official zip from.
    sha256
        Hex digest every zip (given or downloaded) must match. ``None``: a download must match its entry in
        `KNOWN_ZIPS`, and a given zip is accepted whatever its digest (official when known, else the user's).
    download
        When ``False``, never touch the network: fail instead of downloading.

    Returns
    -------
    Path
        A folder `training.loaders.detect_layout` recognises, or a ratings file.

    Raises
    ------
    DataSourceError
        If a given path is missing or in no known layout (the message lists what it holds and the layouts
        supported), a zip fails a required checksum or is unsafe, or nothing was found and the download is
        disabled or failed.
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()

    if source is not None:
        return _from_path(Path(source).expanduser(), "--data", cache, sha256)
    if env_value := os.environ.get(DATA_ENV):
        return _from_path(Path(env_value).expanduser(), f"${DATA_ENV}", cache, sha256)

    if (extracted := cache / DATASET_DIRNAME / MARKER).is_file():
        logger.debug("Using cached MovieLens 100K at %s", extracted.parent)
        return extracted.parent

    if not download:
        raise DataSourceError(
            f"No MovieLens 100K data found (nothing given, and no cache in {cache}), and downloading is "
            f"disabled. To fix: {_HOW_TO_PROVIDE}; or allow the download from {url}."
        )

    cached_zip = cache / CACHED_ZIP_NAME
    if cached_zip.is_file():
        # Left by an earlier download whose extraction did not finish; it is ours, so a bad one may go.
        try:
            _verify(cached_zip, sha256 or KNOWN_ZIPS.get(PurePosixPath(url).name))
        except DataSourceError as exc:
            logger.warning("Discarding cached %s: %s", cached_zip, exc)
            cached_zip.unlink(missing_ok=True)
        else:
            return _extract(cached_zip, cache)

    _download(url, cached_zip, sha256 or KNOWN_ZIPS.get(PurePosixPath(url).name))
    return _extract(cached_zip, cache)


def _from_path(path: Path, origin: str, cache: Path, sha256: str | None) -> Path:
    """Resolve a user-given path (from ``origin``, named in errors) to a data folder or ratings file."""
    if not path.exists():
        raise DataSourceError(
            f"Data not found: {path} (from {origin}) does not exist. Expected a MovieLens folder (e.g. one "
            f"containing u.data or ratings.csv), a MovieLens zip, or a ratings file (.csv, .tsv, .parquet)."
        )
    if path.is_dir():
        if (found := _layout_folder(path)) is not None:
            return found
        raise DataSourceError(describe_unknown(path, origin))
    if path.suffix.lower() != ".zip" and detect_layout(path) == "file":
        return path  # a ratings file: read as it is (training.loaders.read_ratings_file)
    # A user's file is never deleted, even if it fails the check.
    _check_zip(path, sha256)
    return _extract(path, cache)


def _layout_folder(path: Path) -> Path | None:
    """`path` if it is in a known layout, else its only subfolder that is (``ml-25m/`` in a parent folder)."""
    if path.is_dir() and detect_layout(path) not in (None, "file"):
        return path
    inner = [p for p in sorted(path.iterdir()) if p.is_dir() and detect_layout(p) not in (None, "file")]
    return inner[0] if len(inner) == 1 else None


def _check_zip(path: Path, sha256: str | None) -> None:
    """An explicit digest must match; otherwise a known digest marks the official zip, any other the user's."""
    if sha256 is not None:
        _verify(path, sha256, hint="If it is not the official zip, extract it and pass the directory instead.")
        return
    with path.open("rb") as f:
        actual = hashlib.file_digest(f, "sha256").hexdigest()
    official = [name for name, digest in KNOWN_ZIPS.items() if digest == actual]
    if official:
        logger.info("%s is the official %s (SHA-256 verified)", path, official[0])
    else:
        logger.info(
            "%s is not an official GroupLens zip whose digest is known (SHA-256 %s); reading it as your own",
            path,
            actual,
        )


def _verify(path: Path, sha256: str | None, *, hint: str = "") -> None:
    """Raise `DataSourceError` if ``path``'s SHA-256 differs from ``sha256`` (no check when ``None``)."""
    if sha256 is None:
        return
    with path.open("rb") as f:
        actual = hashlib.file_digest(f, "sha256").hexdigest()
    if actual != sha256.lower():
        raise DataSourceError(
            f"Checksum mismatch for {path}: expected SHA-256 {sha256.lower()}, got {actual}. {hint}".rstrip()
        )


def _download(url: str, dest: Path, sha256: str | None) -> None:
    """Stream ``url`` to ``dest`` via a temporary file beside it, verifying the digest before the rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    logger.info("Downloading MovieLens 100K from %s to %s", url, dest.parent)
    try:
        digest = hashlib.sha256()
        with (
            os.fdopen(fd, "wb") as out,
            httpx.stream("GET", url, timeout=_TIMEOUT, follow_redirects=True) as response,
        ):
            response.raise_for_status()
            total = int(response.headers.get("Content-Length", 0)) or None
            # disable=None hides the bar when stderr is not a terminal, keeping CI logs readable.
            with tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="ml-100k.zip", disable=None
            ) as bar:
                for chunk in response.iter_bytes(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        actual = digest.hexdigest()
        if sha256 is not None and actual != sha256.lower():
            raise DataSourceError(
                f"Checksum mismatch for {url} (downloaded to {tmp}, now deleted): expected SHA-256 "
                f"{sha256.lower()}, got {actual}. The download may be corrupt or the file changed upstream; "
                f"to use a local copy instead, {_HOW_TO_PROVIDE}."
            )
        os.replace(tmp, dest)
    except httpx.HTTPError as exc:
        # httpx's status-error text is multi-line with a docs link; the status line is what a person needs.
        if isinstance(exc, httpx.HTTPStatusError):
            reason = f"HTTP {exc.response.status_code} {exc.response.reason_phrase}"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        raise DataSourceError(
            f"No MovieLens 100K data found, and downloading it from {url} failed ({reason}). To fix: {_HOW_TO_PROVIDE}."
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)


def _check_member(name: str) -> None:
    """Reject zip members that would land outside the extraction directory (zip-slip)."""
    # Backslashes are separators on Windows and never legitimate in this dataset's names.
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts or (posix.parts and posix.parts[0].endswith(":")):
        raise DataSourceError(f"Refusing to extract unsafe zip member {name!r}: it points outside the archive.")


def _extract(zip_path: Path, cache: Path) -> Path:
    """Extract ``zip_path`` into ``<cache>/<zip name without .zip>`` atomically; return the data folder in it."""
    target = cache / (zip_path.stem or DATASET_DIRNAME)
    cache.mkdir(parents=True, exist_ok=True)
    logger.info("Extracting %s into %s", zip_path, target)
    # Inside the cache so the final os.replace is a same-filesystem rename, hence atomic.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=cache))
    try:
        try:
            with zipfile.ZipFile(zip_path) as zf:
                members = zf.infolist()
                for member in members:
                    _check_member(member.filename)
                zf.extractall(staging, members)  # checks every member's CRC-32: a corrupt zip fails here
        except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
            raise DataSourceError(f"{zip_path} is not a readable zip file ({exc}).") from exc

        root = _layout_folder(staging)
        if root is None:
            raise DataSourceError(describe_unknown(staging, "the zip", shown=zip_path))

        if target.exists():
            # os.replace cannot overwrite a non-empty directory: move the old one aside first.
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=cache))
            os.replace(target, old / target.name)
            os.replace(root, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(root, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
