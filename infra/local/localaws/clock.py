"""The calendar clock of the local AWS: the one "now" that its services stamp times with, its Step
Functions waits on (a Wait with a timestamp) and the functions read (AMI_ROLLOUT_CLOCK).

The launcher picks an origin and a rate (LOCALAWS_CLOCK_RATE, default 1) and hands
LOCALAWS_CLOCK=<origin>:<rate> to every process: from the origin (epoch seconds), calendar time
runs `rate` times the wall clock. At rate 20 with SFN_WAIT_SCALE 0.05, a Wait of an hour and a Wait
until an hour from now both take three wall minutes, and a function that runs after either sees
the hour gone. Durations the services simulate (a refresh's progress, a copy's length) keep their
own scale (state.Clock); only timestamps are on this clock.
"""

import datetime
import os
import time

VARIABLE = "LOCALAWS_CLOCK"


def _read(value: str | None) -> tuple[float, float]:
    try:
        origin, rate = (float(part) for part in (value or "").split(":"))
        return (origin, rate) if rate > 0 else (0.0, 1.0)
    except ValueError:
        return 0.0, 1.0


def setting() -> tuple[float, float]:
    """(origin, rate) of this process's clock; (0, 1) is the wall clock."""
    return _read(os.environ.get(VARIABLE))


def make(rate: float, origin: float | None = None) -> str:
    """A LOCALAWS_CLOCK value that starts now."""
    return f"{time.time() if origin is None else origin:.3f}:{rate:g}"


def now() -> float:
    """Calendar seconds since the epoch."""
    origin, rate = setting()
    return origin + (time.time() - origin) * rate


def utcnow() -> datetime.datetime:
    return datetime.datetime.fromtimestamp(now(), datetime.timezone.utc)


def iso() -> str:
    """Now as AWS writes it (2026-12-06T10:00:00.000Z)."""
    return utcnow().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def wall_seconds(calendar_seconds: float) -> float:
    """How long `calendar_seconds` of calendar time take on the wall clock."""
    return calendar_seconds / setting()[1]


def _moto_utcnow():
    import localaws.clock
    return localaws.clock.utcnow().replace(tzinfo=None)


def _ministack_now_iso():
    import localaws.clock
    return localaws.clock.iso()


def patch_moto() -> None:
    """moto stamps times with moto.core.utils.utcnow, imported by name into many modules: its code is
    replaced, so every module's reference to it reads this clock."""
    from moto.core import utils
    utils.utcnow.__code__ = _moto_utcnow.__code__


def patch_ministack() -> None:
    """ministack stamps times (startDate, $$.Execution.StartTime, $$.State.EnteredTime) with
    now_iso, imported by name; its code is replaced likewise."""
    from ministack.core import responses
    responses.now_iso.__code__ = _ministack_now_iso.__code__
