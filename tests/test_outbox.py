"""The durable queue in-process (no broker): order, acknowledgement, survival across a reopen, the bound
that drops the oldest and counts it, and the fall-back to memory when the directory is unusable. The same
guarantees end to end, through real brokers and kill -9, are in test_service_mqtt.py and test_faults.py."""
import os
import stat

from edge.outbox import Outbox


def test_messages_come_out_in_order_until_acknowledged_and_survive_a_reopen(tmp_path):
    box = Outbox(tmp_path / "q")
    for i in range(5):
        box.put(f"t/{i}", f"m{i}".encode(), retain=i == 4)
    rows = box.peek()
    assert [r[1] for r in rows] == [f"t/{i}" for i in range(5)] and rows[4][4] is True
    box.ack(rows[0][0])
    box.ack(rows[2][0])
    assert [r[2] for r in box.peek()] == [b"m1", b"m3", b"m4"]
    assert [r[2] for r in box.peek(after_id=rows[1][0])] == [b"m3", b"m4"]
    box.close()
    again = Outbox(tmp_path / "q")  # a restart (or a kill -9) keeps what was not acknowledged
    assert again.persistent and len(again) == 3 and [r[2] for r in again.peek()] == [b"m1", b"m3", b"m4"]
    assert stat.S_IMODE(os.stat(tmp_path / "q" / "outbox.sqlite").st_mode) == 0o600
    again.close()


def test_the_bound_drops_the_oldest_and_counts_them(tmp_path):
    box = Outbox(tmp_path, max_messages=10)
    for i in range(25):
        box.put("t", str(i).encode())
    assert len(box) == 10 and box.dropped == 15
    assert [int(r[2]) for r in box.peek()] == list(range(15, 25))


def test_an_unusable_directory_means_memory_and_a_count_not_a_crash(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the queue directory should be")
    box = Outbox(blocker / "q")
    assert not box.persistent and box.write_errors == 1
    box.put("t", b"kept in memory")
    assert [r[2] for r in box.peek()] == [b"kept in memory"]
