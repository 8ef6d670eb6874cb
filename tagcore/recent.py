"""A bounded, expiring set of request ids: what a worker or client must remember for a while, but not forever."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class RecentIds:
    """Thread-safe ids with a time to live; the oldest are forgotten first once `capacity` is reached.

    Why bounded and expiring: workers and clients run for months, and a request id only matters while a copy of
    its request can still arrive (a redelivery, a late cancel), which is minutes to hours, not forever.
    """

    def __init__(self, capacity: int = 100_000, ttl: float = 24 * 3600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._ids: OrderedDict[str, float] = OrderedDict()

    def add(self, request_id: str) -> None:
        with self._lock:
            self._ids.pop(request_id, None)
            self._ids[request_id] = self._clock() + self.ttl
            self._trim()

    def discard(self, request_id: str) -> None:
        with self._lock:
            self._ids.pop(request_id, None)

    def __contains__(self, request_id: object) -> bool:
        with self._lock:
            self._trim()
            return request_id in self._ids

    def __len__(self) -> int:
        with self._lock:
            self._trim()
            return len(self._ids)

    def _trim(self) -> None:
        now = self._clock()
        while self._ids and (len(self._ids) > self.capacity or next(iter(self._ids.values())) <= now):
            self._ids.popitem(last=False)
