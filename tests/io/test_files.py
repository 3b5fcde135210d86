"""plateseg.io.files: atomic writes, tables, logging."""

def test_an_uncaught_exception_is_written_to_the_log(tmp_path):
    """A rule script that fails leaves its traceback in its own log file, and still exits with the error."""
    import subprocess
    import sys

    log = tmp_path / "logs" / "rule.log"
    script = ("from plateseg.io.files import setup_logging\n"
              f"setup_logging({str(log)!r})\n"
              "raise ValueError('file x.tif: not a TIFF')\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 1 and "ValueError: file x.tif: not a TIFF" in proc.stderr
    text = log.read_text()
    assert "failed: ValueError: file x.tif: not a TIFF" in text and "Traceback (most recent call last)" in text


def test_atomic_path_removes_what_a_killed_job_left(tmp_path, caplog):
    """A killed job leaves ``.<name>.partial-<pid>``; the next write of the same output removes it."""
    import logging

    from plateseg.io.files import atomic_path

    stale = tmp_path / ".image.zarr.partial-999999"
    (stale / "0").mkdir(parents=True)
    (stale / "0" / "chunk").write_bytes(b"half")
    other = tmp_path / ".labels.zarr.partial-999999"  # another output's: not touched
    other.mkdir()
    with caplog.at_level(logging.INFO, logger="plateseg.io.files"):
        with atomic_path(tmp_path / "image.zarr") as tmp:
            tmp.mkdir()
            (tmp / "zarr.json").write_text("{}")
    assert not stale.exists() and other.exists()
    assert (tmp_path / "image.zarr" / "zarr.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".labels.zarr.partial-999999", "image.zarr"]
    assert f"removing {stale}" in caplog.text
