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
