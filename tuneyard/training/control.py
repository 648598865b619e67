"""Signals turned into requests the training loop checks at step boundaries.

SIGTERM: stop gracefully (finish the optimizer step, checkpoint, exit 75); a second one
aborts. SIGINT aborts at once. SIGUSR1: checkpoint at the next step boundary and go on.
"""

from __future__ import annotations

import signal
from types import FrameType

from tuneyard.training import contract


class AbortRequested(BaseException):
    """Raised inside the loop by a second SIGTERM or a SIGINT: leave now, write nothing more.

    A BaseException so that no `except Exception` on the way up swallows it.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"aborted by {signal.Signals(signum).name}")


class RunControl:
    """What the outside world has asked of this run; installed once in the runner process."""

    def __init__(self) -> None:
        self.stop_requested = False
        self.checkpoint_requested = False

    def install(self) -> None:
        signal.signal(contract.SIGNAL_STOP, self._on_stop)
        signal.signal(contract.SIGNAL_ABORT, self._on_abort)
        signal.signal(contract.SIGNAL_CHECKPOINT, self._on_checkpoint)

    def take_checkpoint_request(self) -> bool:
        requested, self.checkpoint_requested = self.checkpoint_requested, False
        return requested

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_requested:
            raise AbortRequested(signum)
        self.stop_requested = True

    def _on_abort(self, signum: int, frame: FrameType | None) -> None:
        raise AbortRequested(signum)

    def _on_checkpoint(self, signum: int, frame: FrameType | None) -> None:
        self.checkpoint_requested = True
