"""ministack (Step Functions + Lambda) with one engine fix the rollout depends on.

AWS: when an iteration of an inline Map fails, the Map state fails and iterations not yet started
never start; with MaxConcurrency 1 (our waves) a failed wave stops the rollout there.
ministack 1.5.33 starts every remaining iteration first and raises the error afterwards, so a
failed canary wave would still roll the later waves out. Here an iteration that would start after
another iteration of the same Map (in the same execution) failed is not run.
Run as `python -m localaws.stepfunctions`, with ministack's own environment variables.
"""

import sys
import threading

from ministack import app
from ministack.services import stepfunctions as engine

_failed = set()
_lock = threading.Lock()
_original = engine._run_sub_machine


class _NotStarted(Exception):
    """An iteration skipped because its Map already failed; the first failure is what surfaces."""


def _run_sub_machine(states, start_at, input_data, execution, ctx):
    key = (id(execution), id(states))
    with _lock:
        if key in _failed:
            raise _NotStarted("Map state already failed")
    try:
        return _original(states, start_at, input_data, execution, ctx)
    except Exception:
        with _lock:
            _failed.add(key)
        raise


engine._run_sub_machine = _run_sub_machine

if __name__ == "__main__":
    sys.exit(app.main())
