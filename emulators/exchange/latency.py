"""Read latency for the emulated backup API, as a wrapper (the engine itself is instantaneous).

``with_read_latency(api, bytes_per_second)`` returns an ``ExchangeBackupApi`` whose backup contexts
charge every ``read_file`` to the server's clock at that rate, on one shared disk timeline (two
storage groups backed up in parallel share the disk, as on a real server). On a VirtualClock this
costs no wall time; on a RealClock it really paces the reads. The default rate, 75 MB/s, is the
"600 Mbps" streaming-backup figure quoted for Exchange 2003 (spec §4, windowsitpro).
"""

from __future__ import annotations

from emulators.clock import Timeline

DEFAULT_RATE = 75e6


class _TimedContext:
    def __init__(self, inner, timeline: Timeline, rate: float, clock):
        self._inner = inner
        self._timeline = timeline
        self._rate = rate
        self._clock = clock

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def read_file(self, handle: int, buffer) -> int:
        n = self._inner.read_file(handle, buffer)
        if n:
            self._clock.sleep_until(self._timeline.reserve(n / self._rate))
        return n


class TimedBackupApi:
    def __init__(self, api, bytes_per_second: float = DEFAULT_RATE):
        if bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive")
        self._api = api
        self.server_name = api.server_name
        self._clock = api.server.clock
        self._timeline = Timeline(self._clock)
        self._rate = float(bytes_per_second)

    def __getattr__(self, name):
        return getattr(self._api, name)

    def backup_prepare(self, annotation: str = "Microsoft Information Store"):
        return _TimedContext(self._api.backup_prepare(annotation), self._timeline, self._rate, self._clock)


def with_read_latency(api, bytes_per_second: float = DEFAULT_RATE) -> TimedBackupApi:
    return TimedBackupApi(api, bytes_per_second)
