"""Hostile stores and builds through the CLI: truncated and damaged shards, folders that are no
store, bad records, full disks, concurrent builds and killed builds (issues 9 and 10).

Each case asserts the exit code, a one-line message without "Traceback", and no hang.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from vhrdata.cli import main
from vhrdata.errors import StoreError
from vhrdata.preprocess import PreprocessSettings
from vhrdata.store import build_store, open_store, verify_store
from vhrdata.store import writer as writer_mod
from vhrdata.store.disk_format import HEADER_SIZE, INDEX_FILE, record_key
from vhrdata.store.toy_records import write_toy_records

SETTINGS = PreprocessSettings(height=32, max_width=512)
REPO = Path(__file__).resolve().parents[1]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(res, code: int = 1) -> str:
    out = res.output
    assert res.exit_code == code, out
    assert "Traceback" not in out and res.exception is None or isinstance(res.exception, SystemExit), out
    errors = [line for line in out.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, out
    return errors[0]


@pytest.fixture
def records(tmp_path) -> Path:
    write_toy_records(tmp_path / "records", n=30, seed=1)
    return tmp_path / "records"


@pytest.fixture
def store(records, tmp_path) -> Path:
    out = tmp_path / "store"
    build_store(records, out, SETTINGS, workers=1, shards=2)
    return out


def first_shard(store: Path) -> Path:
    index = json.loads((store / INDEX_FILE).read_text())
    return store / index["splits"]["train"]["shards"][0]["path"]


def run_py(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


# ---------------------------------------------------------------------------- truncated and damaged shards


def test_truncated_shard_is_a_message_not_sigbus(store):
    data = first_shard(store) / "data.mdb"
    size = data.stat().st_size
    os.truncate(data, size // 2)
    # verify and the reader, each in a fresh process (SIGBUS would kill it with -7 / 135)
    res = subprocess.run([sys.executable, "-c", "import sys; from vhrdata.cli import main; main()", "verify",
                          str(store)], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr and "truncated" in res.stderr and "--shard-index 0" in res.stderr
    res = run_py(f"""
        from vhrdata.store import open_store
        from vhrdata.errors import StoreError
        try:
            ds = open_store({str(store)!r}).split("train")
            list(ds.batches(4, shuffle=False))
        except StoreError as ex:
            print("STOREERROR", ex)
    """)
    assert res.returncode == 0, res.stderr
    assert "STOREERROR" in res.stdout and "truncated" in res.stdout and "re-copy" in res.stdout


def test_shard_shorter_than_shard_json_says_is_refused(store):
    data = first_shard(store) / "data.mdb"
    with open(data, "ab") as f:
        f.write(b"\0" * 4096)  # still LMDB-valid, but not the file that was built
    with pytest.raises(StoreError, match="shard.json says"):
        list(open_store(store).split("train"))


def test_damaged_record_header_is_one_store_error_naming_shard_and_key(store):
    shard = first_shard(store)
    data = (shard / "data.mdb").read_bytes()
    sample = open_store(store).split("train")[0]
    pos = data.find(sample.image.tobytes()[:64]) - HEADER_SIZE
    assert pos > 0
    damaged = bytearray(data)
    damaged[pos + 12] ^= 0xFF  # the text length in the header
    (shard / "data.mdb").write_bytes(bytes(damaged))
    ds = open_store(store).split("train")
    with pytest.raises(StoreError, match=r"key 000000000: the record is damaged .*vhrdata verify"):
        ds[0]
    with pytest.raises(StoreError, match="key 000000000"):
        ds.load_batch([0, 1])
    with pytest.raises(StoreError, match="run `vhrdata verify"):
        list(ds)
    res = cli("verify", store)
    assert "FAULT shard train/shard-00000-of-00002.lmdb key 000000000" in res.output
    one_line_error(res)


def test_flipped_image_byte_fails_the_crc_on_read(store):
    shard = first_shard(store)
    data = bytearray((shard / "data.mdb").read_bytes())
    sample = open_store(store).split("train")[1]
    pos = data.find(sample.image.tobytes()[:64])
    data[pos + 5] ^= 0x01
    (shard / "data.mdb").write_bytes(bytes(data))
    ds = open_store(store).split("train")
    ds[0]
    with pytest.raises(StoreError, match="key 000000001.*CRC32 mismatch"):
        ds[1]


# ---------------------------------------------------------------------------- messages


def test_verify_on_a_folder_that_never_was_a_store(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.txt").write_text("x")
    msg = one_line_error(cli("verify", tmp_path / "photos"))
    assert "is not a vhr store" in msg and "has not finished" not in msg
    msg = one_line_error(cli("verify", tmp_path / "nowhere"))
    assert "does not exist" in msg


def test_unfinished_build_still_says_so(store):
    (store / INDEX_FILE).unlink()
    assert "has not finished" in one_line_error(cli("verify", store))


def test_settings_mismatch_prints_the_build_flags(store, records):
    other = PreprocessSettings(height=48, max_width=512, flatten_background=True)
    with pytest.raises(StoreError) as info:
        open_store(store, settings=other)
    msg = str(info.value)
    assert f"vhrdata build-lmdb {records.resolve()} --out {store}" in msg
    assert "--height 48 --max-width 512 --binarize none" in msg and "--flatten-background" in msg
    assert "--downsample 4" in msg
    res = cli("build-lmdb", records, "--out", store, "--height", "48", "--workers", "1", "--shards", "2")
    msg = one_line_error(res)
    assert "--height 32 --max-width 512" in msg  # to resume it
    assert "--height 48 --max-width 2048" in msg and "--overwrite" in msg  # to replace it


def test_stats_names_build_lmdb(tmp_path):
    (tmp_path / "x").mkdir()
    msg = one_line_error(cli("stats", tmp_path / "x", "--out", tmp_path / "r"))
    assert "build-lmdb" in msg and "build-store" not in msg


# ---------------------------------------------------------------------------- bad records never abort a build


def test_one_bad_record_is_quarantined_and_the_rest_stored(records, tmp_path, monkeypatch):
    import cv2

    from vhrdata.records import read_records, write_records

    df = read_records(records)
    ids = sorted(df["id"])
    df.loc[df["id"] == ids[0], "text"] = "Hà Nội " * 12000  # over 64 KiB of UTF-8
    write_records(df, records, meta={"layout": "test"})
    real = writer_mod.preprocess_gray
    calls = {"n": 0}

    def flaky(gray, settings):
        calls["n"] += 1
        if calls["n"] == 3:
            raise cv2.error("OpenCV(4) resize.cpp: error: (-215:Assertion failed) !ssize.empty()")
        if calls["n"] == 5:
            raise RuntimeError("something nobody expected")
        return real(gray, settings)

    monkeypatch.setattr(writer_mod, "preprocess_gray", flaky)
    res = cli("build-lmdb", records, "--out", tmp_path / "s", "--height", "32", "--workers", "1")
    assert res.exit_code == 0, res.output
    index = json.loads((tmp_path / "s" / INDEX_FILE).read_text())
    c = index["counts"]
    assert c["in"] == 30 == c["stored"] + c["quarantined"]
    assert c["by_reason"] == {"label_too_long": 1, "build_failed": 2}
    q = [json.loads(line) for line in (tmp_path / "s" / "quarantine.jsonl").read_text().splitlines()]
    msgs = {d["reason"]: d["message"] for d in q}
    assert "64 KiB" in msgs["label_too_long"] or "65,535" in msgs["label_too_long"]
    assert any("error" in d["message"] and d["reason"] == "build_failed" for d in q)
    assert verify_store(tmp_path / "s").ok


def test_per_split_alphabets_are_in_the_index(store):
    s = open_store(store)
    train = "".join(sorted({c for x in s.split("train") for c in x.text}))
    assert s.split_alphabet("train") == train == s.index["splits"]["train"]["alphabet"]
    assert set(s.split_alphabet("val")) <= set(s.alphabet)
    with pytest.raises(StoreError, match="no 'test' split"):
        s.split_alphabet("test")


# ---------------------------------------------------------------------------- full disks


def test_enospc_is_one_message_and_the_old_store_survives(store, records, monkeypatch):
    before = {p.relative_to(store): p.read_bytes() for p in store.rglob("*") if p.is_file() and "lock" not in p.name}
    real_add = writer_mod.ShardWriter.add
    calls = {"n": 0}

    def full(self, value, **kw):
        calls["n"] += 1
        if calls["n"] > 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_add(self, value, **kw)

    monkeypatch.setattr(writer_mod.ShardWriter, "add", full)
    res = cli("build-lmdb", records, "--out", store, "--height", "40", "--workers", "1", "--overwrite")
    msg = one_line_error(res)
    assert "no space left on device" in msg
    after = {p.relative_to(store): p.read_bytes() for p in store.rglob("*") if p.is_file() and "lock" not in p.name}
    assert after == before  # nothing of the failed rebuild is left, the old store is whole
    assert verify_store(store).ok


def test_lmdb_disk_errors_become_store_errors(records, tmp_path, monkeypatch):
    import lmdb

    def broken(self):
        raise lmdb.Error("mdb_txn_commit: No space left on device")

    monkeypatch.setattr(writer_mod.ShardWriter, "_flush", broken)
    with pytest.raises(StoreError, match="no space left"):
        build_store(records, tmp_path / "s", SETTINGS, workers=1)
    monkeypatch.setattr(writer_mod.ShardWriter, "_flush",
                        lambda self: (_ for _ in ()).throw(OSError(errno.EIO, "Input/output error")))
    with pytest.raises(StoreError, match="I/O error"):
        build_store(records, tmp_path / "s", SETTINGS, workers=1)
    assert not (tmp_path / "s" / INDEX_FILE).exists()


@pytest.mark.parametrize("where", ["shard", "after the swap"])
def test_fsync_errors_are_one_message_that_says_what_is_kept(store, records, monkeypatch, where):
    before = {p.relative_to(store): p.read_bytes() for p in store.rglob("*") if p.is_file() and "lock" not in p.name}
    real = writer_mod.fsync_path
    calls = []

    def fsync(path):
        calls.append(path)
        if where == "shard" or Path(path) == store:
            raise OSError(errno.EIO, "Input/output error")
        return real(path)

    monkeypatch.setattr(writer_mod, "fsync_path", fsync)  # the name the writer calls
    res = cli("build-lmdb", records, "--out", store, "--height", "40", "--workers", "1", "--overwrite")
    msg = one_line_error(res)
    assert calls and "I/O error" in msg
    after = {p.relative_to(store): p.read_bytes() for p in store.rglob("*") if p.is_file() and "lock" not in p.name}
    if where == "shard":
        assert "previous store is kept as it was" in msg
        assert after == before  # the staged rebuild is gone, the old store is whole
    else:
        assert "rebuilt store is in place" in msg
        assert after != before and open_store(store).settings.height == 40
    assert not list(store.glob(".rebuild-*")) and not list(store.glob(".replaced-*"))
    assert verify_store(store).ok


def _files(store: Path) -> dict:
    return {p.relative_to(store): p.read_bytes() for p in store.rglob("*") if p.is_file() and "lock" not in p.name}


def _overwrite(records: Path, store: Path, height: int):
    return cli("build-lmdb", records, "--out", store, "--height", height, "--workers", "1", "--overwrite")


def _fail_moves(monkeypatch, fail_at: set[int]) -> list:
    """Every rename of the --overwrite swap goes through writer._move; the ones numbered in `fail_at` fail."""
    real = writer_mod._move
    calls = []

    def move(src, dst):
        calls.append((Path(src), Path(dst)))
        if len(calls) in fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(writer_mod, "_move", move)
    return calls


def test_a_failed_rename_anywhere_in_the_overwrite_swap_keeps_the_old_store(store, records, monkeypatch):
    with monkeypatch.context() as m:
        swap = _fail_moves(m, set())
        assert _overwrite(records, store, 40).exit_code == 0
    assert {dst.name for _, dst in swap} >= {INDEX_FILE, "train", "val"}  # the old store out, the new one in
    assert verify_store(store).ok and open_store(store).settings.height == 40
    before = _files(store)
    for k in range(1, len(swap) + 1):
        with monkeypatch.context() as m:
            calls = _fail_moves(m, {k})
            msg = one_line_error(_overwrite(records, store, 48))
        moved = calls[k - 1]
        assert "no space left on device" in msg and "previous store is kept as it was" in msg, (moved, msg)
        assert len(calls) == 2 * k - 1  # the k - 1 renames before the failure were undone, in reverse
        assert _files(store) == before, moved  # the old store, byte for byte
        assert verify_store(store).ok and open_store(store).settings.height == 40, moved
        assert not list(store.glob(".rebuild-*")) and not list(store.glob(".replaced-*"))


def test_a_swap_whose_undo_fails_too_says_no_store_is_usable(store, records, monkeypatch):
    with monkeypatch.context() as m:
        swap = _fail_moves(m, set())
        assert _overwrite(records, store, 40).exit_code == 0
    k = next(i for i, (src, _) in enumerate(swap, 1) if src.parent != store)  # the first rename of a new file in
    with monkeypatch.context() as m:
        _fail_moves(m, {k, k + 1})  # the rename in, then the first rename back
        msg = one_line_error(_overwrite(records, store, 48))
    assert "could not be undone" in msg and "holds no usable store" in msg and "kept as it was" not in msg, msg
    replaced, staging = list(store.glob(".replaced-*")), list(store.glob(".rebuild-*"))
    assert len(replaced) == 1 == len(staging)  # named in the message, not deleted
    assert str(replaced[0]) in msg and str(staging[0]) in msg
    assert (replaced[0] / INDEX_FILE).exists() and not (store / INDEX_FILE).exists()
    with pytest.raises(StoreError, match="has not finished"):
        open_store(store)
    # what the message says to do: the same command rebuilds it
    assert _overwrite(records, store, 48).exit_code == 0
    assert verify_store(store).ok and open_store(store).settings.height == 48
    assert not list(store.glob(".rebuild-*")) and not list(store.glob(".replaced-*"))


def _can_mount_tmpfs() -> str | None:
    if os.geteuid() != 0:
        return "needs root to mount a tmpfs"
    if shutil.which("mount") is None:
        return "no mount command"
    return None


def test_full_tmpfs(records, tmp_path):
    why = _can_mount_tmpfs()
    if why:
        pytest.skip(why)
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        res = cli("build-lmdb", records, "--out", mnt / "store", "--height", "64", "--workers", "1")
        msg = one_line_error(res)
        # LMDB reports the full tmpfs as an I/O error; either way the message says to free space
        assert ("disk full" in msg or "I/O error" in msg) and "free space" in msg
        assert not (mnt / "store" / INDEX_FILE).exists()
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


# ---------------------------------------------------------------------------- concurrent and killed builds


def test_second_build_into_a_locked_store_refuses_at_once(records, tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import fcntl, os, sys, time
            fd = os.open({str(out / '.build.lock')!r}, os.O_RDWR | os.O_CREAT)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, f"{{os.getpid()}} somehost\\n".encode())
            print("locked", flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "locked"
        res = cli("build-lmdb", records, "--out", out, "--height", "32", "--workers", "1")
        msg = one_line_error(res)
        assert f"store locked by pid {holder.pid} on somehost" in msg
    finally:
        holder.kill()
        holder.wait()
    res = cli("build-lmdb", records, "--out", out, "--height", "32", "--workers", "1")
    assert res.exit_code == 0, res.output


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_the_build_leaves_no_orphan_workers(tmp_path):
    write_toy_records(tmp_path / "records", n=400, seed=3, widths=(200, 600))
    # The build runs in a child; its workers stall on a slow decode, so the kill lands mid-build.
    script = textwrap.dedent(f"""
        import os, sys, time
        from vhrdata.store import writer
        real = writer._process_row
        def slow(*a):
            time.sleep(0.2)
            return real(*a)
        writer._process_row = slow
        from vhrdata.cli import main
        sys.argv = ["vhrdata", "build-lmdb", {str(tmp_path / 'records')!r}, "--out", {str(tmp_path / 's')!r},
                    "--height", "32", "--workers", "2"]
        main()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    children: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(children) < 2:
        time.sleep(0.2)
        try:
            with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
                children = [int(x) for x in f.read().split()]
        except FileNotFoundError:
            break
    assert len(children) >= 2, "the build did not start its workers"
    time.sleep(1.0)  # let the workers arm their death signal and take work
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(c) for c in children):
        time.sleep(0.1)
    left = [c for c in children if _alive(c)]
    for c in left:
        os.kill(c, signal.SIGKILL)
    assert not left, f"orphan workers still alive after kill -9 of the build: {left}"
    # and the killed build resumes cleanly
    res = cli("build-lmdb", tmp_path / "records", "--out", tmp_path / "s", "--height", "32", "--workers", "1")
    assert res.exit_code == 0, res.output
    assert verify_store(tmp_path / "s").ok


def test_workers_help_says_zero_is_one_per_core():
    res = cli("build-lmdb", "--help")
    assert "0 = one per core" in res.output and "1 = work in this process" in res.output
    assert "--flatten-background" in res.output
