"""Hostile input at ingest (issue 10 §1, §2, §5; issue 12's manifest formats), each case through the CLI.

Every case asserts the exit code, that a failure is one line without a traceback, that the run ends (a
timeout), and that in = kept + quarantined, with the reason code of the refused items.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import REPO, write_line_image
from vhrdata.cli import main
from vhrdata.ingest import verify_output
from vhrdata.quarantine import read_quarantine

TIMEOUT_S = 60
SUMMARY = re.compile(r"^in (\d+) · kept (\d+) · quarantined (\d+)$", re.M)


class Hung(Exception):
    pass


def cli(*args) -> "click.testing.Result":  # noqa: F821
    """Run `vhrdata ARGS`; raises Hung when it does not finish in TIMEOUT_S."""

    def alarm(*_):
        raise Hung(f"vhrdata {' '.join(map(str, args))} did not finish in {TIMEOUT_S} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, TIMEOUT_S)
    try:
        res = CliRunner().invoke(main, [str(a) for a in args])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception  # the real CLI would print this as a traceback
    return res


def cli_subprocess(*args, memory_mb: int = 2048) -> subprocess.CompletedProcess:
    """Run `vhrdata ARGS` in its own process, capped in time and memory (for FIFOs and devices, which
    would hang or exhaust the test process itself)."""
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({memory_mb} << 20, {memory_mb} << 20))
        from vhrdata.cli import main
        sys.argv = ["vhrdata"] + sys.argv[1:]
        main()
    """)
    try:
        return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                              timeout=TIMEOUT_S, cwd=REPO)
    except subprocess.TimeoutExpired:
        pytest.fail(f"vhrdata {' '.join(map(str, args))} hung (no result in {TIMEOUT_S} s)")


def ok_counts(output: str, out: Path) -> tuple[int, int, int, dict]:
    """(in, kept, quarantined, by_reason) as printed, checked against the written files."""
    assert "Traceback" not in output
    m = SUMMARY.search(output)
    assert m, output
    n_in, kept, n_q = map(int, m.groups())
    assert n_in == kept + n_q
    report = json.loads((out / "ingest.json").read_text(encoding="utf-8"))
    assert report["counts"]["in"] == n_in and report["counts"]["kept"] == kept
    q = read_quarantine(out)
    assert len(q) == n_q
    by_reason: dict = {}
    for item in q:
        by_reason[item["reason"]] = by_reason.get(item["reason"], 0) + 1
    assert by_reason == report["counts"]["by_reason"]
    verify_output(out)
    return n_in, kept, n_q, by_reason


def one_line_error(output: str, exit_code: int) -> str:
    assert exit_code == 1, output
    assert "Traceback" not in output
    # The progress bar's label is not part of the message.
    lines = [ln for ln in output.splitlines() if ln.strip() and not ln.startswith("checking images")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), output
    return lines[0]


def ingest_ok(*args):
    src, out = args[0], Path(args[args.index("--out") + 1])
    res = cli("ingest", *args)
    assert res.exit_code == 0, res.output
    return ok_counts(res.output, out)


def images(root: Path, *names: str) -> Path:
    for i, name in enumerate(names):
        write_line_image(root / name, seed=i + 1)
    return root


def kalapa(root: Path, lines: list[str], image_names=("w1/0.jpg", "w1/1.jpg", "w1/2.jpg")) -> Path:
    images(root / "images", *image_names)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "w1.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def messages(out: Path, reason: str) -> list[str]:
    return [q["message"] for q in read_quarantine(out) if q["reason"] == reason]


# ----------------------------------------------------------------------------- §1 text formats


def test_csv_row_with_more_fields_than_header_is_quarantined_not_cut(tmp_path):
    images(tmp_path / "m", "0.jpg", "1.jpg")
    (tmp_path / "m" / "list.csv").write_text(
        'path,text\n0.jpg,Số 12, Phường Hàng Bông\n1.jpg,"Số 12, Phường Hàng Bông"\n', encoding="utf-8")
    n_in, kept, _, by = ingest_ok(tmp_path / "m" / "list.csv", "--out", tmp_path / "out")
    assert (n_in, kept, by) == (2, 1, {"malformed_line": 1})
    [msg] = messages(tmp_path / "out", "malformed_line")
    assert "3 comma-separated field(s)" in msg and "header has 2" in msg and "quoted" in msg
    from vhrdata.records import read_records
    assert read_records(tmp_path / "out")["text"].tolist() == ["Số 12, Phường Hàng Bông"]


def test_tsv_quote_is_text_and_never_merges_rows(tmp_path):
    names = [f"{i}.jpg" for i in range(5)]
    images(tmp_path / "m", *names)
    # A quote opening a field is where a CSV parser starts a quoted text and swallows the rows after it.
    texts = ["Số 1", '"Bông Sen', "Số 3", "Số 4", '"5" Số']
    body = "".join(f"{n}\t{t}\n" for n, t in zip(names, texts))
    (tmp_path / "m" / "list.tsv").write_text("path\ttext\n" + body, encoding="utf-8")
    n_in, kept, n_q, _ = ingest_ok(tmp_path / "m" / "list.tsv", "--out", tmp_path / "out")
    assert (n_in, kept, n_q) == (5, 5, 0)
    from vhrdata.records import read_records
    assert read_records(tmp_path / "out").sort_values("id")["text"].tolist() == texts


def test_csv_unbalanced_quote_is_one_malformed_line(tmp_path):
    images(tmp_path / "m", "0.jpg", "1.jpg", "2.jpg")
    (tmp_path / "m" / "list.csv").write_text('path,text\n0.jpg,"Số 12\n1.jpg,Hà Nội\n2.jpg,Huế\n', encoding="utf-8")
    n_in, kept, _, by = ingest_ok(tmp_path / "m" / "list.csv", "--out", tmp_path / "out")
    assert (n_in, kept, by) == (3, 2, {"malformed_line": 1})
    assert "unbalanced quote" in messages(tmp_path / "out", "malformed_line")[0]


@pytest.mark.parametrize("doc,kind", [('["a.png", "Số 1"]', "an array"), ('"Số 1"', "a string"), ("7", "a number")])
def test_labels_json_that_is_not_an_object_is_a_clear_error(tmp_path, doc, kind):
    images(tmp_path / "cin", "a.png")
    (tmp_path / "cin" / "labels.json").write_text(doc, encoding="utf-8")
    res = cli("ingest", tmp_path / "cin", "--out", tmp_path / "out")
    line = one_line_error(res.output, res.exit_code)
    assert "must be a JSON object" in line and kind in line
    assert not (tmp_path / "out" / "ingest.json").exists()


def test_labels_json_nested_object_and_non_strings_make_no_phantom_items(tmp_path):
    images(tmp_path / "cin", "a.png", "b.png", "c.png", "d.png")
    (tmp_path / "cin" / "labels.json").write_text(
        '{"a.png": "Số 1", "b.png": {"c.png": "phantom", "d.png": "phantom"}, "c.png": ["x"], "d.png": null}',
        encoding="utf-8")
    n_in, kept, _, by = ingest_ok(tmp_path / "cin", "--out", tmp_path / "out")
    assert (n_in, kept, by) == (4, 1, {"malformed_line": 3})
    msgs = " ".join(messages(tmp_path / "out", "malformed_line"))
    assert "an object" in msgs and "an array" in msgs and "null" in msgs
    assert "phantom" not in msgs


@pytest.mark.parametrize("encoding,bom", [("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff")])
def test_utf16_annotation_with_bom_is_read_and_counted(tmp_path, encoding, bom):
    src = kalapa(tmp_path / "src", [])
    text = "w1/0.jpg\tSố 1 Lê Lợi\r\nw1/1.jpg\tPhường Hòa\r\nw1/2.jpg\tThủ Đức\r\n"
    (src / "annotations" / "w1.txt").write_bytes(bom + text.encode(encoding))
    n_in, kept, n_q, _ = ingest_ok(src, "--out", tmp_path / "out")
    assert (n_in, kept, n_q) == (3, 3, 0)


def test_utf16_without_bom_gets_a_utf16_hint(tmp_path):
    src = kalapa(tmp_path / "src", [])
    (src / "annotations" / "w1.txt").write_bytes("w1/0.jpg\tSố 1\nw1/1.jpg\tSố 2\n".encode("utf-16-le"))
    n_in, kept, _, by = ingest_ok(src, "--out", tmp_path / "out")
    assert (n_in, kept, by) == (2, 0, {"bad_encoding": 2})
    assert "--encoding utf-16-le" in messages(tmp_path / "out", "bad_encoding")[0]


def test_label_with_nothing_visible_is_empty_label(tmp_path):
    src = kalapa(tmp_path / "src", ["w1/0.jpg\t\u0301\u0303\u0323", "w1/1.jpg\t\u200b\u200d\ufeff", "w1/2.jpg\tSố 3"])
    n_in, kept, _, by = ingest_ok(src, "--out", tmp_path / "out")
    assert (n_in, kept, by) == (3, 1, {"empty_label": 2})


def test_line_breaks_are_lf_crlf_or_cr_only(tmp_path):
    # str.splitlines would cut these labels at \v, \x1c and U+2028 and report the tails as no_tab lines.
    src = kalapa(tmp_path / "src", ["w1/0.jpg\tSố\x0b12", "w1/1.jpg\tNgõ\x1c3", "w1/2.jpg\tHà\u2028Nội"])
    n_in, kept, n_q, _ = ingest_ok(src, "--out", tmp_path / "out")
    assert (n_in, kept, n_q) == (3, 3, 0)
    from vhrdata.records import read_records
    assert sorted(read_records(tmp_path / "out")["text"]) == ["Hà Nội", "Ngõ3", "Số 12"]


# ----------------------------------------------------------------------------- §2 paths and files


def test_dotdot_path_is_outside_the_dataset_unless_allowed(tmp_path):
    write_line_image(tmp_path / "elsewhere.jpg", seed=9)
    src = kalapa(tmp_path / "src", ["w1/0.jpg\tSố 1", "../../elsewhere.jpg\tSố 2"])
    n_in, kept, _, by = ingest_ok(src, "--out", tmp_path / "out")
    assert (n_in, kept, by) == (2, 1, {"path_outside_dataset": 1})
    assert "--allow-outside" in messages(tmp_path / "out", "path_outside_dataset")[0]
    assert ingest_ok(src, "--out", tmp_path / "out2", "--allow-outside")[:3] == (2, 2, 0)


def test_absolute_manifest_path_is_outside_the_manifest_folder(tmp_path):
    outside = write_line_image(tmp_path / "elsewhere.jpg", seed=9)
    images(tmp_path / "m", "0.jpg")
    (tmp_path / "m" / "list.csv").write_text(f"path,text\n0.jpg,Số 1\n{outside},Số 2\n", encoding="utf-8")
    n_in, kept, _, by = ingest_ok(tmp_path / "m" / "list.csv", "--out", tmp_path / "out")
    assert (n_in, kept, by) == (2, 1, {"path_outside_dataset": 1})


def test_labels_json_key_with_dotdot_is_outside(tmp_path):
    write_line_image(tmp_path / "x.jpg", seed=9)
    images(tmp_path / "cin", "a.png")
    (tmp_path / "cin" / "labels.json").write_text('{"a.png": "Số 1", "../x.jpg": "Số 2"}', encoding="utf-8")
    n_in, kept, _, by = ingest_ok(tmp_path / "cin", "--out", tmp_path / "out")
    assert (n_in, kept, by) == (2, 1, {"path_outside_dataset": 1})


def test_symlink_out_of_the_dataset_is_outside_one_inside_is_kept(tmp_path):
    write_line_image(tmp_path / "elsewhere.jpg", seed=9)
    src = kalapa(tmp_path / "src", ["w1/0.jpg\tSố 1", "w1/out.jpg\tSố 2", "w1/in.jpg\tSố 3"])
    (src / "images" / "w1" / "out.jpg").symlink_to(tmp_path / "elsewhere.jpg")
    (src / "images" / "w1" / "in.jpg").symlink_to(src / "images" / "w1" / "1.jpg")
    n_in, kept, _, by = ingest_ok(src, "--out", tmp_path / "out")
    assert (n_in, kept, by) == (3, 2, {"path_outside_dataset": 1})


def test_symlink_to_dev_zero_is_not_read(tmp_path):
    src = kalapa(tmp_path / "src", ["w1/0.jpg\tSố 1", "w1/zero.jpg\tSố 2"])
    (src / "images" / "w1" / "zero.jpg").symlink_to("/dev/zero")
    res = cli_subprocess("ingest", src, "--out", tmp_path / "out", "--allow-outside", memory_mb=1024)
    assert res.returncode == 0, res.stderr
    n_in, kept, _, by = ok_counts(res.stdout, tmp_path / "out")
    assert (n_in, kept, by) == (2, 1, {"not_a_regular_file": 1})
    assert "character device" in messages(tmp_path / "out", "not_a_regular_file")[0]


def test_fifo_image_does_not_hang(tmp_path):
    src = kalapa(tmp_path / "src", ["w1/0.jpg\tSố 1", "w1/pipe.jpg\tSố 2"])
    os.mkfifo(src / "images" / "w1" / "pipe.jpg")
    res = cli_subprocess("ingest", src, "--out", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    n_in, kept, _, by = ok_counts(res.stdout, tmp_path / "out")
    assert (n_in, kept, by) == (2, 1, {"not_a_regular_file": 1})
    assert "FIFO" in messages(tmp_path / "out", "not_a_regular_file")[0]


def test_fifo_annotation_file_is_quarantined_not_skipped(tmp_path):
    src = kalapa(tmp_path / "src", ["w1/0.jpg\tSố 1"])
    os.mkfifo(src / "annotations" / "w2.txt")
    res = cli_subprocess("ingest", src, "--out", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    n_in, kept, _, by = ok_counts(res.stdout, tmp_path / "out")
    assert (n_in, kept, by) == (2, 1, {"not_a_regular_file": 1})


def test_folder_named_like_an_image_is_not_a_regular_file(tmp_path):
    src = kalapa(tmp_path / "src", ["w1/0.jpg\tSố 1", "w1/dir.jpg\tSố 2"])
    (src / "images" / "w1" / "dir.jpg").mkdir()
    n_in, kept, _, by = ingest_ok(src, "--out", tmp_path / "out")
    assert (n_in, kept, by) == (2, 1, {"not_a_regular_file": 1})


def test_image_over_the_byte_cap_is_file_too_large(tmp_path):
    src = kalapa(tmp_path / "src", ["w1/0.jpg\tSố 1", "w1/big.png\tSố 2"])
    (src / "images" / "w1" / "big.png").write_bytes(b"\x89PNG" + b"\0" * 300_000)
    n_in, kept, _, by = ingest_ok(src, "--out", tmp_path / "out", "--max-file-mb", "0.25")
    assert (n_in, kept, by) == (2, 1, {"file_too_large": 1})
    assert "--max-file-mb" in messages(tmp_path / "out", "file_too_large")[0]


def test_annotation_over_the_byte_cap_is_a_clear_error(tmp_path):
    images(tmp_path / "cin", "a.png")
    (tmp_path / "cin" / "labels.json").write_text('{"a.png": "' + "x" * 300_000 + '"}', encoding="utf-8")
    res = cli("ingest", tmp_path / "cin", "--out", tmp_path / "out", "--max-file-mb", "0.25")
    line = one_line_error(res.output, res.exit_code)
    assert "over the limit" in line and "--max-file-mb" in line


# ----------------------------------------------------------------------------- §5 atomic output


def _snapshot(out: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.mark.parametrize("code,words", [(errno.ENOSPC, "disk full"), (errno.EIO, "I/O error")])
@pytest.mark.parametrize("target", ["vhrdata.ingest.write_records", "vhrdata.ingest.write_quarantine",
                                    "vhrdata.ingest._write_report", "vhrdata.ingest.fsync_path"])
def test_write_error_keeps_the_previous_output(tmp_path, monkeypatch, code, words, target):
    src = kalapa(tmp_path / "src", ["w1/0.jpg\tSố 1", "w1/1.jpg\tSố 2", "w1/missing.jpg\tSố 3"])
    out = tmp_path / "out"
    ingest_ok(src, "--out", out)
    before = _snapshot(out)
    (src / "annotations" / "w1.txt").write_text("w1/2.jpg\tSố 4\n", encoding="utf-8")

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(target, fail)
    res = cli("ingest", src, "--out", out)
    line = one_line_error(res.output, res.exit_code)
    assert words in line and "previous output" in line and "unchanged" in line
    assert _snapshot(out) == before
    verify_output(out)


class Killed(BaseException):
    """Stands for a kill: nothing after it runs, no except-clause of vhr catches it."""


def _three_files(out: Path) -> tuple:
    """What a reader sees: (texts, quarantine reasons, counts), after the reader's own checks."""
    from vhrdata.records import read_records

    texts = tuple(sorted(read_records(out)["text"]))
    reasons = tuple(sorted(q["reason"] for q in read_quarantine(out)))
    counts = json.loads((out / "ingest.json").read_text(encoding="utf-8"))["counts"]
    return texts, reasons, (counts["in"], counts["kept"], counts["quarantined"])


def _two_runs(tmp_path: Path) -> tuple[Path, Path, tuple]:
    src = kalapa(tmp_path / "src", ["w1/0.jpg\tSố 1", "w1/1.jpg\tSố 2", "w1/missing.jpg\tSố 3"])
    out = tmp_path / "out"
    ingest_ok(src, "--out", out)
    assert cli("split", out, "--ratios", "1,0,0").exit_code in (0, 1)  # a split.json the new run makes stale
    old = _three_files(out)
    (src / "annotations" / "w1.txt").write_text("w1/2.jpg\tSố 4\nw1/gone.jpg\tSố 5\nw1/x.jpg\t\u0301\n",
                                                encoding="utf-8")
    return src, out, old


FS_STEPS = ("rename", "replace", "unlink", "rmdir", "fsync")


def _counting(monkeypatch, kill_at: int | None) -> list[str]:
    """Patch the file-system calls a commit makes; raise Killed at call number `kill_at`."""
    calls: list[str] = []
    for name in FS_STEPS:
        real = getattr(os, name)

        def step(*args, _real=real, _name=name, **kwargs):
            if kill_at is not None and len(calls) == kill_at:
                raise Killed(f"killed before os.{_name}{args}")
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(os, name, step)
    return calls


def test_a_kill_at_any_step_leaves_the_old_or_the_new_output_never_a_mix(tmp_path, monkeypatch):
    from vhrdata.ingest import ingest

    src, out, old = _two_runs(tmp_path)
    with monkeypatch.context() as m:
        calls = _counting(m, None)
        ingest(src, tmp_path / "probe")
    new = _three_files(tmp_path / "probe")
    assert new != old and len(calls) > 5
    seen = set()
    for k in range(len(calls)):
        shutil.rmtree(out)
        src, out, _ = _two_runs(tmp_path)
        with monkeypatch.context() as m:
            _counting(m, k)
            with pytest.raises(Killed):
                ingest(src, out)
        # the next reader (a CLI command) sees one whole output: the old one, or the new one finished
        res = cli("split", out, "--ratios", "1,0,0")
        assert "Traceback" not in res.output and "not one ingest's output" not in res.output, (k, res.output)
        seen_now = _three_files(out)
        assert seen_now in (old, new), f"kill before file-system call {k} ({calls[k]}) left a mix"
        seen.add("old" if seen_now == old else "new")
        verify_output(out)
        assert not (out / ".ingest-commit").exists()  # a dead run's staging folder waits for the next ingest
    assert seen == {"old", "new"}  # the kills landed before and after the commit point


def test_kill_9_during_the_commit_is_finished_by_the_next_command(tmp_path):
    src, out, old = _two_runs(tmp_path)
    # A real kill -9 right after the commit point: the staged folder has been renamed, nothing moved yet.
    code = textwrap.dedent(f"""
        import os, signal, sys
        real = os.rename
        def rename(a, b, *args, **kw):
            real(a, b, *args, **kw)
            if str(b).endswith(".ingest-commit"):
                os.kill(os.getpid(), signal.SIGKILL)
        os.rename = rename
        from vhrdata.cli import main
        sys.argv = ["vhrdata", "ingest", {str(src)!r}, "--out", {str(out)!r}, "--workers", "2"]
        main()
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT_S, cwd=REPO)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (out / ".ingest-commit").is_dir()
    res = cli("stats", out, "--out", tmp_path / "report")
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    texts, reasons, counts = _three_files(out)
    assert texts == ("Số 4",) and counts == (3, 1, 2) and sorted(reasons) == ["empty_label", "missing_image"]
    assert not (out / "split.json").exists()  # the old split described the old records
    verify_output(out)


def _other_run(tmp_path: Path, out: Path, name: str) -> None:
    """Put another ingest run's `name` into `out`."""
    src2 = kalapa(tmp_path / "src2", ["w1/0.jpg\tKhác", "w1/none.jpg\tKhác 2"])
    ingest_ok(src2, "--out", tmp_path / "other")
    shutil.copy(tmp_path / "other" / name, out / name)


MIXED = {
    "records from another run": lambda tp, out: _other_run(tp, out, "records.parquet"),
    "ingest.json from another run": lambda tp, out: _other_run(tp, out, "ingest.json"),
    "empty quarantine.jsonl": lambda tp, out: (out / "quarantine.jsonl").write_text(""),
    "no ingest.json": lambda tp, out: (out / "ingest.json").unlink(),
    "truncated ingest.json": lambda tp, out: (out / "ingest.json").write_text('{"counts": {"in": 3,'),
}


@pytest.mark.parametrize("command", ["split", "stats", "build-lmdb"])
@pytest.mark.parametrize("damage", list(MIXED))
def test_readers_refuse_a_mixed_records_folder_in_one_line(tmp_path, command, damage):
    src = kalapa(tmp_path / "src", ["w1/0.jpg\tSố 1", "w1/1.jpg\tSố 2", "w1/missing.jpg\tSố 3"])
    out = tmp_path / "out"
    ingest_ok(src, "--out", out)
    assert cli("split", out, "--ratios", "1,0,0").exit_code in (0, 1)
    MIXED[damage](tmp_path, out)
    args = {"split": [out], "stats": [out, "--out", tmp_path / "report"],
            "build-lmdb": [out, "--out", tmp_path / "store", "--height", "32", "--workers", "1"]}[command]
    res = cli(command, *args)
    line = one_line_error(res.output, res.exit_code)
    assert "not one ingest's output" in line and "re-run `vhrdata ingest " in line and f" --out {out}`" in line
    if damage != "ingest.json from another run":  # then either source may be the one meant
        assert f"`vhrdata ingest {src.resolve()} --out" in line, line


def test_second_ingest_into_a_locked_folder_refuses_at_once(tmp_path):
    src = kalapa(tmp_path / "src", ["w1/0.jpg\tSố 1"])
    out = tmp_path / "out"
    ingest_ok(src, "--out", out)
    before = _snapshot(out)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from vhrdata.records import lock_records_folder
        lock_records_folder({str(out)!r})
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before[".ingest.lock"] = (out / ".ingest.lock").read_bytes()
        for args in (("ingest", src, "--out", out), ("split", out)):
            res = cli(*args)
            line = one_line_error(res.output, res.exit_code)
            assert f"locked by pid {holder.pid}" in line and "wait for it" in line, line
        assert _snapshot(out) == before
    finally:
        holder.kill()
        holder.wait()
    ingest_ok(src, "--out", out)  # the kernel dropped the dead holder's lock


def test_two_concurrent_ingests_never_interleave(tmp_path):
    # Two real processes race for the same --out: each either wins and writes a whole output or is
    # refused with the lock message; the folder ends as one of the two runs.
    a = kalapa(tmp_path / "a", ["w1/0.jpg\tSố 1", "w1/1.jpg\tSố 2"])
    b = kalapa(tmp_path / "b", ["w1/2.jpg\tHuế"])
    out = tmp_path / "out"
    procs = [subprocess.Popen([sys.executable, "-c", "import sys; from vhrdata.cli import main; "
                               "sys.argv = ['vhrdata'] + sys.argv[1:]; main()", "ingest", str(s), "--out", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO) for s in (a, b)]
    results = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=TIMEOUT_S)
        results.append((p.returncode, stdout, stderr))
    assert all("Traceback" not in r[2] for r in results), results
    assert any(r[0] == 0 for r in results), results
    for rc, _, stderr in results:
        assert rc == 0 or "locked by pid" in stderr, stderr
    texts = _three_files(out)[0]
    assert texts in (("Số 1", "Số 2"), ("Huế",))
    verify_output(out)


def test_out_that_holds_a_folder_is_refused(tmp_path):
    src = kalapa(tmp_path / "src", ["w1/0.jpg\tSố 1"])
    (tmp_path / "out" / "sub").mkdir(parents=True)
    res = cli("ingest", src, "--out", tmp_path / "out")
    assert "did not write (sub)" in one_line_error(res.output, res.exit_code)
    assert not (tmp_path / "out" / ".ingest.lock").exists()


def _can_mount_tmpfs(path: Path) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    path.mkdir()
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(path)],
                        capture_output=True).returncode == 0
    return ok


def test_full_tmpfs_keeps_the_previous_output(tmp_path):
    disk = tmp_path / "disk"
    if not _can_mount_tmpfs(disk):
        pytest.skip("needs root and mount to create a small tmpfs")
    try:
        src = kalapa(tmp_path / "src", ["w1/0.jpg\tSố 1", "w1/1.jpg\tSố 2"])
        out = disk / "out"
        ingest_ok(src, "--out", out)
        before = _snapshot(out)
        # 2,000 missing images with long labels: a quarantine.jsonl far larger than the 256 KiB disk.
        lines = [f"w1/m{i}.jpg\t" + "Phường Hàng Bông " * 20 for i in range(2000)]
        (src / "annotations" / "w1.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        res = cli("ingest", src, "--out", out)
        line = one_line_error(res.output, res.exit_code)
        assert "disk full" in line and "unchanged" in line
        assert _snapshot(out) == before
        verify_output(out)
    finally:
        subprocess.run(["umount", str(disk)], check=False)


@pytest.mark.parametrize("setup,words", [
    (lambda out: (out / "index.json").write_text('{"format": "vhr-store"}'), "holds a store"),
    (lambda out: (out / "train" / "shard-00000-of-00001.lmdb").mkdir(parents=True), "holds a store"),
    (lambda out: (out / "notes.txt").write_text("mine"), "did not write (notes.txt)"),
    (lambda out: (out / "records.parquet").write_bytes(b"PAR1 not really"), "not written by vhr"),
])
def test_out_folder_with_a_store_or_foreign_files_is_refused(tmp_path, setup, words):
    src = kalapa(tmp_path / "src", ["w1/0.jpg\tSố 1"])
    out = tmp_path / "out"
    out.mkdir()
    setup(out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    res = cli("ingest", src, "--out", out)
    assert words in one_line_error(res.output, res.exit_code)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_rerun_into_own_output_replaces_it_and_drops_the_stale_split(tmp_path):
    src = kalapa(tmp_path / "src", ["w1/0.jpg\tSố 1", "w1/1.jpg\tSố 2"])
    out = tmp_path / "out"
    ingest_ok(src, "--out", out)
    assert cli("split", out, "--ratios", "1,0,0").exit_code in (0, 1)
    (src / "annotations" / "w1.txt").write_text("w1/2.jpg\tSố 3\n", encoding="utf-8")
    assert ingest_ok(src, "--out", out)[:3] == (1, 1, 0)
    assert sorted(p.name for p in out.iterdir()) == [".ingest.lock", "ingest.json", "quarantine.jsonl",
                                                     "records.parquet"]


# ----------------------------------------------------------------------------- issue 12: formats users have


@pytest.mark.parametrize("name", ["train_annotation.txt", "rec_gt.tsv"])
def test_headerless_path_tab_text_file_is_a_manifest(tmp_path, name):
    images(tmp_path / "d" / "img", "0.jpg", "1.jpg")
    (tmp_path / "d" / name).write_text("img/0.jpg\tSố 1 Lê Lợi\nimg/1.jpg\tPhường \"Hòa\"\n", encoding="utf-8")
    n_in, kept, n_q, _ = ingest_ok(tmp_path / "d" / name, "--out", tmp_path / "out")
    assert (n_in, kept, n_q) == (2, 2, 0)


def test_folder_with_one_manifest_is_accepted(tmp_path):
    images(tmp_path / "d", "0.jpg", "1.jpg")
    (tmp_path / "d" / "list.csv").write_text("path,text\n0.jpg,Số 1\n1.jpg,Số 2\n", encoding="utf-8")
    res = cli("ingest", tmp_path / "d", "--out", tmp_path / "out")
    assert res.exit_code == 0, res.output
    assert ok_counts(res.output, tmp_path / "out")[:3] == (2, 2, 0)
    assert "layout manifest (list.csv)" in res.output


def test_folder_with_several_manifests_names_them(tmp_path):
    images(tmp_path / "d", "0.jpg")
    (tmp_path / "d" / "train.csv").write_text("path,text\n0.jpg,Số 1\n", encoding="utf-8")
    (tmp_path / "d" / "test.tsv").write_text("path\ttext\n0.jpg\tSố 1\n", encoding="utf-8")
    res = cli("ingest", tmp_path / "d", "--out", tmp_path / "out", "--layout", "manifest")
    line = one_line_error(res.output, res.exit_code)
    assert "test.tsv" in line and "train.csv" in line and "give the one" in line


def test_csv_quoted_text_over_two_lines_is_quarantined_line_by_line(tmp_path):
    # Per-line parsing alone would keep '1.jpg,Hà Nội"' as a row; the csv module alone would merge the two.
    images(tmp_path / "m", "0.jpg", "1.jpg", "2.jpg")
    (tmp_path / "m" / "list.csv").write_text('path,text\n0.jpg,"Số 12\n1.jpg,Hà Nội"\n2.jpg,Huế\n', encoding="utf-8")
    n_in, kept, _, by = ingest_ok(tmp_path / "m" / "list.csv", "--out", tmp_path / "out")
    assert (n_in, kept, by) == (3, 1, {"malformed_line": 2})
    assert all("runs over lines 2–3" in m for m in messages(tmp_path / "out", "malformed_line"))
