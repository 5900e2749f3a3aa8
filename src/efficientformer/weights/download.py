"""Hash-verified downloads of release weights into a cache directory, and offline resolution.

The cache is `$EFFICIENTFORMER_CACHE`, else `$XDG_CACHE_HOME/efficientformer`, else
`~/.cache/efficientformer`; weights go to its `weights/` folder under the entry's `file_name`.
A download streams into a temporary file beside the target, checks the byte count and sha256, and
only then renames it into place, so the cache never holds a partial or unverified file. When a
tag has no published hash, the hash of the first download is stored in `<file>.sha256` and later
uses are checked against it. `EFFICIENTFORMER_OFFLINE=1` forbids network access.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from efficientformer.errors import DownloadError, MissingFileError
from efficientformer.utils.io import atomic_write
from efficientformer.utils.progress import progress_bar
from efficientformer.weights.zoo import WEIGHTS, Weights

CHUNK = 1 << 20
USER_AGENT = "efficientformer-weights-downloader"


def cache_dir() -> Path:
    """Root of the cache (see the module docstring for the order of the environment variables)."""
    if os.environ.get("EFFICIENTFORMER_CACHE"):
        return Path(os.environ["EFFICIENTFORMER_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "efficientformer"
    return Path.home() / ".cache" / "efficientformer"


def offline() -> bool:
    return os.environ.get("EFFICIENTFORMER_OFFLINE", "").lower() not in ("", "0", "false", "no")


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _manual_hint(entry: Weights, target: Path) -> str:
    return (f"Without network access, download {entry.url} on another machine and put it at {target} "
            f"(or pass the file's path instead of the tag {entry.tag!r}).")


def download(url: str, target: str | os.PathLike, sha256: str | None = None, *, timeout: float = 60.0,
             progress: bool | None = None) -> str:
    """Fetch `url` into `target` atomically; returns the file's sha256.

    Raises:
        DownloadError: network failure, HTTP error, an HTML page instead of a file, fewer bytes than
            announced, or a sha256 other than `sha256`. `target` is untouched in every case.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, atomic_write(target) as out:
            if response.headers.get_content_type() == "text/html":
                raise DownloadError(f"{url} returned a web page, not a weights file (a login or confirmation "
                                    f"page?)")
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with progress_bar("bytes", disable=None if progress is None else not progress) as bar:
                task = bar.add_task(f"downloading {target.name}", total=total)
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.advance(task, len(chunk))
            if total is not None and received != total:
                raise DownloadError(f"download of {url} stopped after {received:,} of {total:,} bytes")
            actual = digest.hexdigest()
            if sha256 is not None and actual != sha256.lower():
                raise DownloadError(f"{url} has sha256 {actual}, expected {sha256}: the file is corrupt or was "
                                    f"replaced; nothing was saved")
    except http.client.IncompleteRead as error:
        raise DownloadError(f"download of {url} stopped after {received + len(error.partial):,} bytes "
                            f"(connection closed early)") from None
    except urllib.error.HTTPError as error:
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(f"could not download {url}: {reason}") from None
    return digest.hexdigest()


def _verify_cached(entry: Weights, path: Path) -> None:
    """Check a cached file against the published hash, or the one recorded at its first download."""
    recorded = path.with_name(path.name + ".sha256")
    expected = entry.sha256 or (recorded.read_text().split()[0] if recorded.is_file() else None)
    if expected is None:
        return
    actual = sha256_of(path)
    if actual != expected.lower():
        raise DownloadError(f"cached weights {path} have sha256 {actual}, expected {expected}: the file was "
                            f"modified or corrupted; delete it to download it again")


def weights_path(entry: Weights, cache: str | os.PathLike | None = None) -> Path:
    """Where `entry` lives in the cache (whether or not it is there yet)."""
    return Path(cache if cache is not None else cache_dir()) / "weights" / entry.file_name


def fetch_weights(entry: Weights, cache: str | os.PathLike | None = None, *, progress: bool | None = None) -> Path:
    """The cached file of `entry`, downloading and verifying it first when it is not there."""
    path = weights_path(entry, cache)
    if path.is_file():
        _verify_cached(entry, path)
        return path
    if offline():
        raise DownloadError(f"weights {entry.tag!r} are not in the cache and EFFICIENTFORMER_OFFLINE is set. "
                            + _manual_hint(entry, path))
    try:
        actual = download(entry.url, path, entry.sha256, progress=progress)
    except DownloadError as error:
        raise DownloadError(f"{error}. {_manual_hint(entry, path)}") from None
    if entry.sha256 is None:
        with atomic_write(path.with_name(path.name + ".sha256")) as handle:
            handle.write(f"{actual}  {entry.file_name}\n".encode())
    return path


def resolve_weights(tag_or_path: str | os.PathLike, cache: str | os.PathLike | None = None) -> Path:
    """A local checkpoint path as is, or a weight tag's cached file (downloaded when missing)."""
    text = str(tag_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if text in WEIGHTS:
        return fetch_weights(WEIGHTS[text], cache)
    if path.exists():
        raise MissingFileError(f"weights {path} is not a file")
    raise MissingFileError(f"weights {text!r} are neither an existing file nor a known weight tag "
                           f"(known tags: {', '.join(WEIGHTS)}; see `efficientformer list`)")


__all__ = ["DownloadError", "cache_dir", "download", "fetch_weights", "resolve_weights", "sha256_of", "weights_path"]
