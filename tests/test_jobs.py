"""The jobs layer on its own: typed results, the run's totals, the one report schema and its reader, the
terminal lines of a result, owner-scoped removal of a dead writer's temporaries."""

import json

import pytest

from ccstereo.atomic import partial_path, remove_partials_of, writer_id
from ccstereo.runtime.console import result_lines
from ccstereo.runtime.jobs import REPORT_VERSION, FileResult, Summary, read_report, write_report
from ccstereo.runtime.report import RunReport


def _ok(name: str, media_s: float, wall_s: float, attempts: int = 1) -> FileResult:
    run = RunReport(name, name + ".out.wav", "ok", duration_s=media_s, wall_s=wall_s, backend="x-cpu-int8")
    return FileResult(
        name,
        "ok",
        run.output,
        media_s=media_s,
        wall_s=wall_s,
        cpu_s=1.5,
        engine="x-cpu-int8",
        precision="int8",
        attempts=attempts,
        run=run,
    )


def test_summary_counts_by_status_and_media_of_the_files_done():
    results = [
        _ok("a.mp4", 3600.0, 10.0),
        _ok("b.mp4", 1800.0, 5.0, attempts=2),
        FileResult("c.mp4", "failed", error="c.mp4: broken", media_s=900.0),
        FileResult("d.mp4", "skipped", "d.wav", media_s=60.0),
    ]
    s = Summary.of(results, wall_s=1800.0)
    assert (s.ok, s.skipped, s.failed, s.retried) == (2, 1, 1, 1)
    assert s.media_hours == pytest.approx(1.5)  # the failed and the skipped file did no work
    assert s.media_hours_per_wall_hour == pytest.approx(3.0)  # 1.5 h of media in half an hour
    assert s.cpu_s == pytest.approx(3.0)


def test_an_unknown_status_is_refused():
    with pytest.raises(ValueError, match="status"):
        FileResult("a.mp4", "done")


def test_the_report_is_one_versioned_schema_read_by_field(tmp_path):
    results = [_ok("a.mp4", 8.0, 2.0), FileResult("b.mp4", "failed", error="b.mp4: not a media file")]
    path = write_report(tmp_path / "r.json", results, Summary.of(results, 2.5))
    data = json.loads(path.read_text())
    assert data["version"] == REPORT_VERSION and data["summary"]["failed"] == 1
    entries = read_report(path)
    assert entries[0]["engine"] == "x-cpu-int8" and entries[0]["precision"] == "int8"
    assert "backend" not in entries[0]  # one name for the engine
    assert entries[0]["duration_s"] == 8.0 and entries[0]["media_s"] == 8.0  # the run's details are there too
    assert entries[1]["status"] == "failed" and entries[1]["error"] == "b.mp4: not a media file"
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("[]", "not a ccs-run report"),
        (json.dumps({"schema": "ccstereo-run-report", "version": 99, "files": []}), "version 99"),
        (json.dumps({"schema": "ccstereo-run-report", "version": REPORT_VERSION, "files": [1]}), "not a list"),
    ],
)
def test_a_report_of_another_shape_is_refused(tmp_path, content, why):
    (tmp_path / "r.json").write_text(content)
    with pytest.raises(ValueError, match=why):
        read_report(tmp_path / "r.json")


def test_terminal_lines_of_a_result():
    failed = FileResult("a\nb.mp4", "failed", error="a b.mp4: broken")
    assert result_lines(failed, quiet=True) == ["error: a b.mp4: broken"]
    skipped = FileResult("c.mp4", "skipped", "c.binaural.mp4", run=RunReport("c.mp4", "c.binaural.mp4", "skipped"))
    assert result_lines(skipped, quiet=True) == ["skipped c.mp4: c.binaural.mp4 exists (use --overwrite)"]
    ok = _ok("d.mp4", 8.0, 2.0, attempts=2)
    ok.worker, ok.host = "ray", "node1"
    (line,) = result_lines(ok, quiet=False)
    assert line.startswith("d.mp4 -> d.mp4.out.wav (8.0 s in 2.0 s, 4.0x realtime, attempt 2)") and "node1" in line
    assert result_lines(ok, quiet=True) == []


def test_a_dead_writers_temporaries_go_and_no_one_elses(tmp_path):
    final = tmp_path / "clip [1].binaural.wav"  # glob characters in the name are taken literally
    mine = partial_path(final)
    other = tmp_path / f".{final.stem}.partial-{writer_id()[0]}-1-0-abcd.wav"  # pid 1: another process
    other.write_bytes(b"")
    unrelated = partial_path(tmp_path / "clip 1.binaural.wav")
    assert remove_partials_of(final, writer_id()) == [mine]
    assert other.exists() and unrelated.exists() and not mine.exists()


def test_a_list_file_from_a_windows_editor_names_its_files(tmp_path):
    # UTF-8 with a byte-order mark and CRLF line ends; a name in Latin-1 bytes as a file system may hold it
    from ccstereo.runtime.inputs import collect_inputs

    first, second = tmp_path / "clip one.mp4", tmp_path / "caf\udce9.mp4"
    for path in (first, second):
        path.write_bytes(b"")
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"\xef\xbb\xbfclip one.mp4\r\n# a comment\r\ncaf\xe9.mp4\r\n")
    assert collect_inputs([f"@{listing}"]) == [first, second]  # type: ignore[list-item]


def test_temporaries_of_a_long_name_fit_and_are_found_again(tmp_path):
    final = tmp_path / ("x" * 240 + ".binaural.mp4")  # 253 bytes: the final fits, ".<stem>.partial-..." would not
    other = tmp_path / ("x" * 240 + "y.binaural.mp4")  # same first 240 characters: its temporaries are its own
    mine, theirs = partial_path(final), partial_path(other)
    assert len(mine.name.encode()) <= 255 and len(theirs.name.encode()) <= 255
    assert remove_partials_of(final, writer_id()) == [mine]
    assert theirs.exists()


def test_the_same_path_given_twice_is_one_input_and_a_link_keeps_its_own(tmp_path):
    from ccstereo.runtime.inputs import check_run_paths

    clip = tmp_path / "a.mp4"
    clip.write_bytes(b"")
    (tmp_path / "link.mp4").symlink_to(clip)
    listing = tmp_path / "list.txt"
    listing.write_text("a.mp4\n*.mp4\n")
    given = [clip, tmp_path / "." / "a.mp4", f"@{listing}", tmp_path / "link.mp4"]
    assert check_run_paths(given, None, None) == [clip, tmp_path / "link.mp4"]  # type: ignore[arg-type]
