"""Shared simulation state. All of it is guarded by `LOCK`: the server serialises requests, because
moto's backends are not thread-safe and every request first advances the simulation."""

import os
import threading
import time
from dataclasses import dataclass, field

LOCK = threading.RLock()

# One real second is this many simulated seconds, so a refresh with a 300 s warmup and a
# one-hour stall timeout plays out in seconds. Durations are scaled; timestamps are wall clock.
DEFAULT_TIME_SCALE = 300.0


class Clock:
    def __init__(self, scale: float):
        self.scale = scale
        self.origin = time.monotonic()
        self.offset = 0.0

    def now(self) -> float:
        """Simulated seconds since the server started."""
        return (time.monotonic() - self.origin) * self.scale + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Fault:
    """Fail `count` calls of `operation` with an AWS error `code` and HTTP `status`, after letting
    the first `after` calls through (to hit a later step that makes the same call)."""

    operation: str
    code: str
    status: int
    count: int
    after: int = 0
    message: str = "Injected by the local AWS control endpoint"


@dataclass
class Simulation:
    clock: Clock
    # AMI id -> "boot" (instances never pass health checks), "ecs" (boots, ECS tasks fail) or
    # "root" (a root volume replacement with it fails: rootvolumes.py).
    bad_amis: dict[str, str] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    # (account, region, group) -> list of refresh records, newest last.
    refreshes: dict[tuple, list] = field(default_factory=dict)
    # instance id -> (launch template id, version number, simulated launch time).
    launched: dict[str, tuple] = field(default_factory=dict)
    # (account, region, template id) -> {client token: version number}.
    client_tokens: dict[tuple, dict] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    # (cluster, service) -> simulated time its failing tasks last stopped.
    last_failed_task: dict[tuple, float] = field(default_factory=dict)
    # (account, region, image id) -> deregistration protection (images.py).
    image_protection: dict[tuple, dict] = field(default_factory=dict)
    # (account, region, group) -> Auto Scaling activities we record (failed launches, launches a
    # lifecycle hook abandoned), newest first.
    activities: dict[tuple, list] = field(default_factory=dict)
    # (account, region, image id) -> a CopyImage still pending: its key and when it ends (copies.py).
    copies: dict[tuple, dict] = field(default_factory=dict)
    # (account, region, client token) -> (image id, the request's arguments) (copies.py).
    copy_tokens: dict[tuple, tuple] = field(default_factory=dict)
    # Simulated seconds a CopyImage takes; None: copies.COPY_SECONDS (POST /_localaws/copy-time).
    copy_seconds: float | None = None
    # Root volume replacements (rootvolumes.py): (account, region) -> task records, oldest first;
    # (account, region, client token) -> task id; instance id -> volume ids that were its root.
    root_tasks: dict[tuple, list] = field(default_factory=dict)
    root_tokens: dict[tuple, str] = field(default_factory=dict)
    root_lineage: dict[str, set] = field(default_factory=dict)
    # Volume content: volume id -> {path: content}; snapshot id -> its volume's files when taken.
    volume_files: dict[str, dict] = field(default_factory=dict)
    # Root volume id -> the AMI it was made from (what boots when it is the root).
    volume_images: dict[str, str] = field(default_factory=dict)
    snapshot_files: dict[str, dict] = field(default_factory=dict)
    # Standalone ECS agents (agents.py): (account, region, instance id) -> the cluster it joins;
    # (account, region, container instance ARN) -> simulated time it was set DRAINING.
    agent_clusters: dict[tuple, str] = field(default_factory=dict)
    drains: dict[tuple, float] = field(default_factory=dict)
    # Image Builder images (imagebuilder.py): build version ARN -> GetImage's image.
    builder_images: dict[str, dict] = field(default_factory=dict)
    # Accounts that made an Auto Scaling group: AWS made their Auto Scaling service-linked role,
    # which stays when the groups go (keys.role_exists).
    autoscaling_accounts: set = field(default_factory=set)
    # Lifecycle hooks (lifecycle.py): the open lifecycle actions; instance id -> (account, region,
    # group, simulated time) of an instance whose actions all ended CONTINUE; instance ids a refresh
    # launched and puts in service itself after their warmup (refresh.py).
    lifecycle_actions: list = field(default_factory=list)
    proceeded: dict[str, tuple] = field(default_factory=dict)
    warming: set = field(default_factory=set)


def _scale() -> float:
    return float(os.environ.get("LOCALAWS_TIME_SCALE", DEFAULT_TIME_SCALE))


SIM = Simulation(clock=Clock(_scale()))


def reset() -> None:
    """Forget everything the extensions hold (moto's own reset clears moto's backends)."""
    global SIM
    SIM = Simulation(clock=Clock(_scale()))


def sim() -> Simulation:
    return SIM
