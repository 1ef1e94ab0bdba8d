"""The scheduler's clock: kiban.clock (where the one Clock of kiban lives), under the name it always had."""

from kiban.clock import Clock, FakeClock, RealClock

__all__ = ["Clock", "FakeClock", "RealClock"]
