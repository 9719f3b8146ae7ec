"""Background work (an eval run's items) yields tiny-chat's batch to a live request: at most
``background_rows_with_live`` background rows decode beside it, and the rest are admitted once it ends."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from openft.models.catalog import TINY_CHAT, find_base_model
from openft.serving.backend import SamplingParams, ServedModel
from openft.serving.hf import HFBackend

HI = [{"role": "user", "content": "Say hi."}]
LONG = SamplingParams(max_tokens=950, temperature=1.0, seed=3)  # runs to max_tokens on tiny-chat


def test_background_rows_make_room_for_a_live_request(models_dir: Path) -> None:
    base = find_base_model(TINY_CHAT)
    assert base is not None
    model = ServedModel(id=TINY_CHAT, base=base)
    backend = HFBackend(models_dir, device="cpu", background_rows_with_live=2)
    backend.chat(model, HI, SamplingParams(max_tokens=1))  # loads the model

    def rows() -> int:
        return backend.batch_stats()[TINY_CHAT]["active_rows"]

    live = backend.stream_chat(model, HI, LONG)
    next(live)  # admitted and decoding
    stop = threading.Event()
    background = [
        threading.Thread(target=backend.chat, args=(model, HI, LONG), kwargs={"cancel": stop, "background": True})
        for _ in range(6)
    ]
    for thread in background:
        thread.start()
    seen: list[int] = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        seen.append(rows())
        time.sleep(0.005)
    live.close()  # the live request ends: the waiting background requests may fill the batch
    after = time.monotonic()
    while rows() < 5 and time.monotonic() - after < 10:
        time.sleep(0.005)
    filled = rows()
    stop.set()
    for thread in background:
        thread.join(timeout=60)
    assert max(seen) == 3, seen  # one live row and two background rows, never more
    assert filled >= 5, filled  # then the rest joined (two of the first may have finished meanwhile)
