"""Unpack a zip or tar archive (gz, bz2, xz or plain) into a folder, refusing any member that would land
outside it: ``../`` components, absolute paths, links leading out, device files (no zip-slip or tar-slip).

Each member is checked before it is written, in one streaming pass; tar members are then written with
the stdlib's ``data`` filter as a second guard. A refused archive raises a one-line AdbenchError; the
caller extracts into a scratch folder and deletes it on failure, so nothing half-written survives.
"""

from __future__ import annotations

import lzma
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from .errors import AdbenchError

#: What a damaged or truncated archive raises while being read.
_READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, lzma.LZMAError, zlib.error)


def _escape(name: str) -> str | None:
    """Why ``name`` (a member path, relative to the target) would escape the target, or None."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (path.parts and path.parts[0].endswith(":")):
        return "an absolute path"
    if ".." in path.parts:
        return "a '..' component"
    return None


def _link_escape(member: str, link: str, hard: bool) -> str | None:
    """Why a link ``member -> link`` would point outside the target, or None (hard links are relative
    to the archive root, symbolic links to the member's folder)."""
    if _escape(link) == "an absolute path":
        return f"a link to the absolute path {link!r}"
    base = PurePosixPath() if hard else PurePosixPath(member.replace("\\", "/")).parent
    depth = 0
    for part in (base / link.replace("\\", "/")).parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            return f"a link leading outside ({link!r})"
    return None


def _refuse(archive: Path, member: str, why: str) -> AdbenchError:
    return AdbenchError(
        f"refused {archive.name}: member {member!r} has {why}, which would write outside the target folder "
        "(zip-slip/tar-slip); nothing was kept"
    )


def _checked_tar_members(tar: tarfile.TarFile, archive: Path) -> Iterator[tarfile.TarInfo]:
    for m in tar:
        why = _escape(m.name)
        if why is None and (m.issym() or m.islnk()):
            why = _link_escape(m.name, m.linkname, hard=m.islnk())
        if why is None and (m.ischr() or m.isblk() or m.isfifo()):
            why = "a device or pipe type"
        if why:
            raise _refuse(archive, m.name, why)
        yield m


def _extract_zip(archive: Path, target: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            why = _escape(info.filename)
            if why is None and stat.S_ISLNK(info.external_attr >> 16):
                why = _link_escape(info.filename, zf.read(info).decode("utf-8", "replace"), hard=False)
            if why:
                raise _refuse(archive, info.filename, why)
        # zipfile never creates links: a (checked) link member is written as a small text file.
        zf.extractall(target)


def extract(archive: Path, target: Path) -> None:
    """Unpack ``archive`` (zip or any tar) into the existing folder ``target``; one-line error if refused."""
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, target)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive, "r:*") as tar:
                tar.extractall(target, members=_checked_tar_members(tar, archive), filter="data")
        else:
            raise AdbenchError(f"{archive}: neither a zip nor a tar archive; nothing was extracted")
    except AdbenchError:
        raise
    except tarfile.FilterError as exc:  # the stdlib's own guard, should our check ever miss a case
        raise AdbenchError(f"refused {archive.name}: {exc}; nothing was kept") from None
    except _READ_ERRORS as exc:
        raise AdbenchError(
            f"cannot unpack {archive}: {exc.__class__.__name__}: {exc} (damaged or truncated archive?)"
        ) from None
