"""Spool slots: one router per slot, held by a file lock that a dead holder cannot keep."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from pipeline_components.serving.spool import Spool


def test_each_open_takes_a_free_slot_and_close_frees_it(tmp_path: Path) -> None:
    a, b = Spool.open(tmp_path), Spool.open(tmp_path)
    assert (a.slot.name, b.slot.name) == ("0", "1")
    closer = threading.Thread(target=a.close)  # the lifespan may close from another thread
    closer.start()
    closer.join()
    c = Spool.open(tmp_path)
    assert c.slot.name == "0" and c.wal_id == a.wal_id and not c.unclean
    b.close()
    c.close()


def test_a_slot_held_by_a_live_process_is_skipped_and_freed_when_it_dies(tmp_path: Path) -> None:
    code = ("import sys; from pathlib import Path; from pipeline_components.serving.spool "
            "import Spool; s = Spool.open(Path(sys.argv[1])); print('held', flush=True); "
            "sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        other = Spool.open(tmp_path)
        assert other.slot.name == "1"
        other.close()
    finally:
        holder.kill()  # SIGKILL: no close(), the kernel drops the lock
        holder.wait(30)
    again = Spool.open(tmp_path)
    assert again.slot.name == "0" and again.unclean  # picks up what the dead router left
    again.close()
