"""``make demo`` end to end (CI runs it here): faults in, zero loss out, and an exit code that says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from cart_dev.demo import main

pytestmark = pytest.mark.e2e  # long end to end: `make test-quick` leaves it out


# well above its ~2 minutes: a timeout interrupting a Spark call mid-answer breaks the JVM connection
# for every later test in the same worker process
@pytest.mark.timeout(900)
def test_the_demo_reconciles_to_zero_loss(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--purchases", "60", "--invalid-share", "0.2", "--poison", "2", "--lake-root", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Everything reconciles: zero loss." in out
    assert "MISMATCH" not in out
    assert "run requested: dlq:" in out  # the DLQ sensor asked for the rerun of the hour
    assert "accepted = stored + quarantined" in out
    assert "2 published" in out  # and both quarantined: the line is ok, or MISMATCH would be printed
    assert "rejected" in out  # the invalid share was refused at the API
    assert (tmp_path / "quarantine" / "dlq").is_dir()  # the poison messages, with their reasons
    assert list((tmp_path / "gold" / "sales_hourly").rglob("*.parquet"))
