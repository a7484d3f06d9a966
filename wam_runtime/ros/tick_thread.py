"""A control tick on its own thread, on absolute deadlines (the safety controller's tick).

An executor timer at 100-500 Hz waits behind subscription callbacks and jitters more, so
the tick runs on a thread of its own that sleeps until the next deadline (``start + k *
period``), never a fixed delay after the previous tick.
"""

import threading
import time
from typing import Callable

from rclpy.context import Context
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy_impl

from wam_runtime.core.stats import RollingStats


class TickThread:
    """Call ``tick()`` every ``period_s`` until ``stop()`` or the rclpy context shuts down.

    ``jitter`` keeps |interval between two ticks - period| (s). A tick that falls more than
    a period behind restarts the deadlines from now instead of bursting to catch up. An
    RCLError once the context is shut down (rclpy went away while the tick published) ends
    the thread quietly; any other exception ends it too and is raised on it.
    """

    def __init__(self, tick: Callable[[], None], period_s: float, context: Context,
                 name: str = 'control_tick') -> None:
        """Start the thread (a daemon: it never keeps the process alive)."""
        self._tick = tick
        self.period_s = period_s
        self._context = context
        self.jitter = RollingStats(2000)
        self._running = True
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop ticking; wait for a tick in progress (unless called from the tick itself)."""
        self._running = False
        thread = self._thread
        if thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout=timeout_s)

    def _run(self) -> None:
        next_t = time.monotonic()
        last = None
        while self._running and self._context.ok():
            started = time.monotonic()
            if last is not None:
                self.jitter.add(abs(started - last - self.period_s))
            last = started
            try:
                self._tick()
            except _rclpy_impl.RCLError:
                if self._context.ok():
                    raise
                return            # rclpy shut down while this thread was publishing
            next_t += self.period_s
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -self.period_s:
                next_t = time.monotonic()     # far behind: do not burst to catch up
