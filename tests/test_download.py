"""``adbench datasets download`` against a loopback HTTP server: full and resumed downloads, checksums,
dropped connections, malicious archives, ``--from FILE``, licences; every failure is one line, exit 2,
and leaves no dataset folder behind."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import tarfile
import zipfile
from pathlib import Path

import pytest

from adbench.registry import Registry, get_registry, set_registry
from adbench.sources import Source

from .fixtures import trees
from .helpers import invoke_main
from .loopback import serve


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ADBENCH_DATA", raising=False)
    monkeypatch.setenv("ADBENCH_CONFIG", str(tmp_path / "no-config.toml"))
    set_registry(None)


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys, *args: str, stdin: str = "") -> tuple[int, str, str]:
    return invoke_main(monkeypatch, capsys, *args, stdin=stdin)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tar_bytes(root: Path, mode: str, prefix: str = "") -> bytes:
    """``root``'s content as a tar archive (``mode`` "w:xz", "w:gz" ...), members under ``prefix``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for p in sorted(root.iterdir()):
            tar.add(p, arcname=f"{prefix}{p.name}")
    return buf.getvalue()


def zip_bytes(root: Path, prefix: str = "") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(root.rglob("*")):
            zf.write(p, f"{prefix}{p.relative_to(root).as_posix()}")
    return buf.getvalue()


@pytest.fixture
def mvtec_tar(tmp_path: Path) -> bytes:
    trees.make_mvtec(tmp_path / "tree-mvtec")
    return tar_bytes(tmp_path / "tree-mvtec", "w:xz")


def assert_clean(to: Path, name: str) -> None:
    """No dataset folder and no scratch folder left behind."""
    assert not (to / name).exists()
    assert not list(to.glob(".adbench-unpack-*")) if to.exists() else True


def assert_one_line_error(code: int, err: str, pattern: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert re.search(pattern, lines[0]), lines[0]


def test_download_then_check_through_the_cli(monkeypatch, capsys, tmp_path: Path, mvtec_tar: bytes) -> None:
    to = tmp_path / "data"
    with serve({"mvtec.tar.xz": mvtec_tar}) as srv:
        code, out, err = run_cli(
            monkeypatch, capsys, "datasets", "download", "mvtec", "--url", srv.url("mvtec.tar.xz"),
            "--sha256", sha(mvtec_tar), "--to", str(to), "--accept-licence", "--no-progress",
        )  # fmt: skip
    assert code == 0, out + err
    assert "categories: 2" in out or "bottle" in out
    assert sorted(p.name for p in (to / "mvtec").iterdir()) == ["bottle", "carpet", "license.txt"]
    assert sorted(p.name for p in to.iterdir()) == ["mvtec"]  # archive and scratch folders are gone
    code, out, err = run_cli(monkeypatch, capsys, "datasets", "check", "mvtec", "--root", str(to / "mvtec"))
    assert code == 0, out + err


def test_resume_after_the_server_drops_the_connection(
    monkeypatch, capsys, tmp_path: Path, mvtec_tar: bytes
) -> None:
    to = tmp_path / "data"
    half = len(mvtec_tar) // 2
    args = ["--sha256", sha(mvtec_tar), "--to", str(to), "--accept-licence", "--no-progress"]
    with serve({"m.tar.xz": mvtec_tar}) as srv:
        srv.drop_after["m.tar.xz"] = half
        code, _, err = run_cli(
            monkeypatch, capsys, "datasets", "download", "mvtec", "--url", srv.url("m.tar.xz"), *args
        )
        assert_one_line_error(code, err, rf"stopped after {half} of {len(mvtec_tar)} bytes.*rerun")
        assert_clean(to, "mvtec")
        part = to / ".adbench-downloads" / "mvtec_anomaly_detection.tar.xz.part"
        assert part.stat().st_size == half
        code, out, err = run_cli(
            monkeypatch, capsys, "datasets", "download", "mvtec", "--url", srv.url("m.tar.xz"), *args
        )
    assert code == 0, out + err
    assert srv.ranges == [None, f"bytes={half}-"]  # the second request asked only for the rest
    assert (to / "mvtec" / "bottle" / "train" / "good" / "000.png").is_file()


@pytest.mark.parametrize("server", ["no-range-support", "part-already-whole"])
def test_resume_falls_back_when_the_server_cannot(
    monkeypatch, capsys, tmp_path: Path, mvtec_tar: bytes, server: str
) -> None:
    """A server without range support sends the whole file again (the part is overwritten, not appended);
    a part that is already whole gets HTTP 416 and is taken as it is (the checksum decides)."""
    to = tmp_path / "data"
    part = to / ".adbench-downloads" / "mvtec_anomaly_detection.tar.xz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(mvtec_tar if server == "part-already-whole" else mvtec_tar[:100])
    with serve({"m.tar.xz": mvtec_tar}) as srv:
        srv.ignore_range = server == "no-range-support"
        code, out, err = run_cli(
            monkeypatch, capsys, "datasets", "download", "mvtec", "--url", srv.url("m.tar.xz"),
            "--sha256", sha(mvtec_tar), "--to", str(to), "--accept-licence",
        )  # fmt: skip
    assert code == 0, out + err
    assert srv.ranges == [f"bytes={len(mvtec_tar) if server == 'part-already-whole' else 100}-"]
    assert (to / "mvtec" / "bottle").is_dir()


def test_checksum_mismatch_deletes_the_file(monkeypatch, capsys, tmp_path: Path, mvtec_tar: bytes) -> None:
    to = tmp_path / "data"
    with serve({"m.tar.xz": mvtec_tar}) as srv:
        code, _, err = run_cli(
            monkeypatch, capsys, "datasets", "download", "mvtec", "--url", srv.url("m.tar.xz"),
            "--to", str(to), "--accept-licence", "--no-progress",
        )  # fmt: skip
    # the shipped checksum is the real archive's: the fixture does not match it
    assert_one_line_error(code, err, rf"checksum mismatch .*cf4313b1.*got {sha(mvtec_tar)}.*deleted")
    assert_clean(to, "mvtec")
    assert not list((to / ".adbench-downloads").iterdir())


def test_http_error_is_one_line(monkeypatch, capsys, tmp_path: Path) -> None:
    with serve() as srv:
        code, _, err = run_cli(
            monkeypatch, capsys, "datasets", "download", "mvtec", "--url", srv.url("gone.tar.xz"),
            "--to", str(tmp_path), "--accept-licence",
        )  # fmt: skip
    assert_one_line_error(code, err, r"HTTP 404")
    assert_clean(tmp_path, "mvtec")


def test_zip_with_declared_folder_and_tar_gz(monkeypatch, capsys, tmp_path: Path) -> None:
    """BTAD's zip wraps the dataset in BTech_Dataset_transformed/ (declared); VisA comes as a tar."""
    trees.make_btad(tmp_path / "tree-btad")
    trees.make_visa(tmp_path / "tree-visa")
    btad = zip_bytes(tmp_path / "tree-btad", "BTech_Dataset_transformed/")
    visa = tar_bytes(tmp_path / "tree-visa", "w:gz")
    to = tmp_path / "data"
    with serve({"btad.zip": btad, "visa.tar.gz": visa}) as srv:
        for name, path, data in (("btad", "btad.zip", btad), ("visa", "visa.tar.gz", visa)):
            code, out, err = run_cli(
                monkeypatch, capsys, "datasets", "download", name, "--url", srv.url(path),
                "--sha256", sha(data), "--to", str(to), "--accept-licence",
            )  # fmt: skip
            assert code == 0, out + err
    assert sorted(p.name for p in (to / "btad").iterdir()) == ["01", "02", "03"]
    assert (to / "visa" / "split_csv" / "1cls.csv").is_file()


def test_several_datasets_from_their_declared_sources(
    monkeypatch, capsys, tmp_path: Path, mvtec_tar: bytes
) -> None:
    """No --url: each dataset's own declared Source is used (pointed at the loopback server here)."""
    trees.make_btad(tmp_path / "tree-btad")
    btad = zip_bytes(tmp_path / "tree-btad", "BTech_Dataset_transformed/")
    registry = get_registry()
    with serve({"mvtec.tar.xz": mvtec_tar, "btad.zip": btad}) as srv:
        for name, data in (("mvtec", mvtec_tar), ("btad", btad)):
            cls = registry.dataset(name)
            (declared,) = cls.sources
            url = srv.url("mvtec.tar.xz" if name == "mvtec" else "btad.zip")
            monkeypatch.setattr(cls, "sources", (dataclasses.replace(declared, url=url, sha256=sha(data)),))
        code, out, err = run_cli(
            monkeypatch, capsys, "datasets", "download", "mvtec", "btad", "--to", str(tmp_path / "d"),
            stdin="y\ny\n",
        )  # fmt: skip
    assert code == 0, out + err
    assert err.count("non-commercial use only). Accept?") == 2
    assert "mvtec: ready at" in out and "btad: ready at" in out
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["btad", "mvtec"]


def test_no_published_checksum_prints_the_computed_one(monkeypatch, capsys, tmp_path: Path) -> None:
    trees.make_kvasir(tmp_path / "tree")
    data = zip_bytes(tmp_path / "tree", "Kvasir-SEG/")
    with serve({"kvasir-seg.zip": data}) as srv:
        code, out, err = run_cli(
            monkeypatch, capsys, "datasets", "download", "kvasir", "--url", srv.url("kvasir-seg.zip"),
            "--to", str(tmp_path / "data"), "--accept-licence",
        )  # fmt: skip
    assert code == 0, out + err
    assert f"no published SHA-256 for kvasir-seg.zip; computed {sha(data)} (pin it with --sha256" in out
    assert (tmp_path / "data" / "kvasir" / "images").is_dir()


def test_two_archives_unpack_into_one_folder(monkeypatch, capsys, tmp_path: Path) -> None:
    """ISIC ships images and masks as two zips, each with its own top folder: one --url per archive."""
    trees.make_isic(tmp_path / "tree")
    zips = {
        f"{part}.zip": zip_bytes(tmp_path / "tree" / part, f"{part}/")
        for part in ("ISBI2016_ISIC_Part1_Test_Data", "ISBI2016_ISIC_Part1_Test_GroundTruth")
    }
    to = tmp_path / "data"
    with serve(zips) as srv:
        urls = [x for name in zips for x in ("--url", srv.url(name))]
        code, out, err = run_cli(
            monkeypatch, capsys, "datasets", "download", "isic", *urls, "--to", str(to), "--accept-licence"
        )
    assert code == 0, out + err
    assert out.count("no published SHA-256") == 2
    assert sorted(p.name for p in (to / "isic").iterdir()) == sorted(Path(n).stem for n in zips)


def test_from_file_verifies_and_unpacks(monkeypatch, capsys, tmp_path: Path, mvtec_tar: bytes) -> None:
    archive = tmp_path / "by-hand.tar.xz"
    archive.write_bytes(mvtec_tar)
    to = tmp_path / "data"
    args = ["datasets", "download", "mvtec", "--from", str(archive), "--to", str(to)]
    code, _, err = run_cli(monkeypatch, capsys, *args)  # shipped checksum: not this fixture
    assert_one_line_error(code, err, "checksum mismatch .*your file was left in place")
    assert archive.read_bytes() == mvtec_tar  # the user's own file is never deleted
    assert_clean(to, "mvtec")
    code, out, err = run_cli(monkeypatch, capsys, *args, "--sha256", sha(mvtec_tar))
    assert code == 0, out + err  # a file fetched by hand needs no licence prompt
    assert (to / "mvtec" / "carpet" / "test" / "good").is_dir()


def test_manual_dataset_says_where_to_click(monkeypatch, capsys, tmp_path: Path) -> None:
    code, _, err = run_cli(monkeypatch, capsys, "datasets", "download", "headct", "--to", str(tmp_path))
    assert_one_line_error(
        code, err, r"sign in at https://www\.kaggle\.com/.*archive\.zip.*--from archive\.zip"
    )


def test_licence_prompt(monkeypatch, capsys, tmp_path: Path, mvtec_tar: bytes) -> None:
    to = tmp_path / "data"
    with serve({"m.tar.xz": mvtec_tar}) as srv:
        args = ["datasets", "download", "mvtec", "--url", srv.url("m.tar.xz"), "--sha256", sha(mvtec_tar)]
        code, _, err = run_cli(monkeypatch, capsys, *args, "--to", str(to), stdin="n\n")
        assert "CC BY-NC-SA 4.0 (non-commercial use only). Accept?" in err
        assert_one_line_error(code, err.split("Accept? [y/N]: ")[-1], r"not accepted; pass --accept-licence")
        assert srv.ranges == []  # nothing was fetched
        code, out, err = run_cli(monkeypatch, capsys, *args, "--to", str(to), stdin="y\n")
    assert code == 0, out + err


def _evil_tar(tree: Path, kind: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for p in sorted(tree.iterdir()):
            tar.add(p, arcname=p.name)
        info = tarfile.TarInfo(
            {"dotdot": "../evil.txt", "absolute": "/tmp/adbench-evil.txt"}.get(kind, "evil")
        )
        if kind in ("symlink", "hardlink"):
            info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
            info.linkname = "../../outside.txt"
            tar.addfile(info)
        else:
            payload = b"pwned"
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def _evil_zip(tree: Path) -> bytes:
    data = zip_bytes(tree)
    buf = io.BytesIO(data)
    with zipfile.ZipFile(buf, "a") as zf:
        zf.writestr("../evil.txt", b"pwned")
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink", "zip-dotdot"])
def test_malicious_archive_is_refused(monkeypatch, capsys, tmp_path: Path, kind: str) -> None:
    trees.make_mvtec(tmp_path / "tree")
    data = _evil_zip(tmp_path / "tree") if kind == "zip-dotdot" else _evil_tar(tmp_path / "tree", kind)
    archive = tmp_path / "evil.archive"
    archive.write_bytes(data)
    to = tmp_path / "deep" / "data"
    code, _, err = run_cli(
        monkeypatch, capsys, "datasets", "download", "mvtec", "--from", str(archive), "--sha256", sha(data),
        "--to", str(to),
    )  # fmt: skip
    assert_one_line_error(code, err, r"refused evil\.archive: member .* outside the target folder")
    assert_clean(to, "mvtec")
    assert not (tmp_path / "deep" / "evil.txt").exists() and not Path("/tmp/adbench-evil.txt").exists()


def test_archive_of_another_layout_leaves_no_folder(monkeypatch, capsys, tmp_path: Path) -> None:
    trees.make_isic(tmp_path / "tree")
    data = tar_bytes(tmp_path / "tree", "w:gz")
    archive = tmp_path / "wrong.tar.gz"
    archive.write_bytes(data)
    code, _, err = run_cli(
        monkeypatch, capsys, "datasets", "download", "mvtec", "--from", str(archive), "--sha256", sha(data),
        "--to", str(tmp_path / "data"),
    )  # fmt: skip
    assert_one_line_error(code, err, r"do not unpack to what 'mvtec' reads: .*expected <category>/train/good")
    assert_clean(tmp_path / "data", "mvtec")


def test_existing_folder_is_checked_not_replaced(monkeypatch, capsys, tmp_path: Path) -> None:
    trees.make_mvtec(tmp_path / "data" / "mvtec")
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "datasets",
        "download",
        "mvtec",
        "--to",
        str(tmp_path / "data"),
        "--accept-licence",
    )
    assert code == 0, out + err
    assert "already exists: checking it" in out


def test_overrides_are_for_one_dataset_and_one_per_archive(monkeypatch, capsys, tmp_path: Path) -> None:
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "datasets",
        "download",
        "mvtec",
        "visa",
        "--url",
        "http://x/y",
        "--to",
        str(tmp_path),
    )
    assert_one_line_error(code, err, "apply to one dataset")
    code, _, err = run_cli(monkeypatch, capsys, "datasets", "download", "synthetic", "--to", str(tmp_path))
    assert_one_line_error(code, err, r"declares no source .*pass --url URL or --from FILE")
    code, _, err = run_cli(
        monkeypatch, capsys, "datasets", "download", "isic", "--url", "http://x/y.zip", "--to", str(tmp_path)
    )
    assert_one_line_error(
        code, err, r"has 2 archive\(s\) \(ISBI2016_ISIC_Part1_Test_Data\.zip, .*give --url 2 time"
    )


def test_list_sources_prints_licences(monkeypatch, capsys) -> None:
    code, out, _ = run_cli(monkeypatch, capsys, "datasets", "list", "--sources")
    assert code == 0
    block = out.split("mvtec (MVTec AD):")[1].split("\n")[1:4]
    assert "[CC BY-NC-SA 4.0, non-commercial]" in block[0] and "cf4313b13603bec67abb49ca959488f7" in block[2]
    assert "synthetic: no declared source" in out


def test_every_declared_source_is_usable() -> None:
    """Checksums are 64 hex digits; manual sources say what to do; direct ones are plain https URLs."""
    registry: Registry = get_registry()
    declared = {e.name: e.obj.sources for e in registry.entries("dataset") if e.obj.sources}
    assert {"mvtec", "visa", "btad", "ksdd", "isic", "kvasir"} <= {
        n for n, s in declared.items() if all(x.direct for x in s)
    }
    for name, sources in declared.items():
        for s in sources:
            assert isinstance(s, Source) and s.licence, name
            assert s.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", s.sha256), name
            assert (
                ("--from" in s.manual or "--root" in s.manual) if s.manual else s.url.startswith("https://")
            )
