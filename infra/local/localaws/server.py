"""moto's server with the ami-rollout extensions loaded (or plain, with --plain, to show what the
extensions are for). Requests are served one at a time, and each first advances the simulation."""

import argparse
import os
import sys
import threading
import time

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from . import (accounts, agents, alarms, clock, control, copies, events, fleet, grants, images, lifecycle, refresh,
               rootvolumes, services, state, templates, wire)


def tick() -> None:
    copies.tick()
    lifecycle.tick()  # before the refresh, which reads what the hooks decided
    refresh.tick()
    rootvolumes.tick()
    for account, region in list(fleet.regions()):
        fleet.reconcile_container_instances(account, region)
    agents.tick()
    for account, region in list(fleet.regions()):
        services.tick(account, region)


class Serialised:
    def __init__(self, app, simulate: bool):
        self.app, self.simulate = app, simulate

    def __call__(self, environ, start_response):
        with state.LOCK:
            if self.simulate:
                tick()
            return list(self.app(environ, start_response))


def build_app(plain: bool = False):
    app = DomainDispatcherApplication(create_backend_app)
    if plain:
        return Serialised(app, simulate=False)
    # lifecycle after fleet: it wraps fleet's launches.
    for extension in (wire, accounts, templates, images, copies, grants, fleet, lifecycle, refresh, rootvolumes, agents,
                      services, alarms, events):
        extension.install()
    return Serialised(control.Control(wire.CborShim(app)), simulate=True)


def _exit_with_parent(pid: int) -> None:
    """Tests start the server; if the test process dies, the server must not outlive it."""
    while True:
        time.sleep(1)
        try:
            os.kill(pid, 0)
        except OSError:
            os._exit(0)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="localaws.server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--plain", action="store_true", help="moto without the extensions")
    parser.add_argument("--parent-pid", type=int, help="exit when this process exits")
    args = parser.parse_args(argv)
    clock.patch_moto()
    server = make_server(args.host, args.port, build_app(args.plain), threaded=True,
                         request_handler=MotoRequestHandler)
    if args.parent_pid:
        threading.Thread(target=_exit_with_parent, args=(args.parent_pid,), daemon=True).start()
    # The first line is the contract with launchers and tests: the port actually bound.
    print(f"listening {server.server_port}", flush=True)
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
