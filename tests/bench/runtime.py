"""Runs one Lambda function process for exactly one invocation, as Lambda does on a cold start,
and measures it.

A minimal Lambda Runtime API (the documented `/2018-06-01/runtime/invocation/next`, `/response`
and `/error` routes) hands the process one event. Measured: wall time from process start to the
response being posted (which includes building the AWS clients and making the calls), and the
process's peak resident memory (VmHWM) read at that moment.
"""

import json
import os
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/2018-06-01/runtime/invocation/"


@dataclass
class Invocation:
    seconds: float
    peak_rss_kib: int
    ok: bool
    body: dict


class _RuntimeApi(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, event: dict):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.event = event
        self.request_id = str(uuid.uuid4())
        self.handed_out = False
        self.answered = threading.Event()
        self.answer = None  # (ok, body, monotonic time)
        self.release = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        api = self.server
        if self.path != PREFIX + "next":
            return self._reply(404, {})
        if api.handed_out:  # a second `next` parks the process, as Lambda freezes it
            api.release.wait(60)
            return self._reply(410, {})
        api.handed_out = True
        deadline = int((time.time() + 60) * 1000)
        self._reply(200, api.event, {
            "Lambda-Runtime-Aws-Request-Id": api.request_id,
            "Lambda-Runtime-Deadline-Ms": str(deadline),
            "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:bench",
            "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000",
        })

    def do_POST(self):
        api = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path in (f"{PREFIX}{api.request_id}/response", f"{PREFIX}{api.request_id}/error"):
            api.answer = (self.path.endswith("/response"), json.loads(body or b"{}"), time.monotonic())
            api.answered.set()
            return self._reply(202, {})
        self._reply(202, {})  # /runtime/init/error and the like

    def _reply(self, status, payload, headers=None):
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the measured process was stopped while parked on `next`


def _peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def invoke_cold(command: list[str], event: dict, env: dict, timeout: float = 60) -> Invocation:
    """Starts `command` as a fresh Lambda process, gives it `event`, and measures it."""
    api = _RuntimeApi(event)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    environment = {
        "PATH": os.environ["PATH"],
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{api.server_address[1]}",
        "AWS_LAMBDA_FUNCTION_NAME": "bench",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/bench",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "RUST_LOG": "warn",
        **env,
    }
    started = time.monotonic()
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if not api.answered.wait(timeout):
            raise TimeoutError(f"{command[0]} did not answer in {timeout} s: {process.stderr.read1(4000)!r}"
                               if process.poll() is not None else f"{command[0]} did not answer in {timeout} s")
        peak = _peak_rss_kib(process.pid)
        ok, body, answered_at = api.answer
        return Invocation(round(answered_at - started, 4), peak, ok, body)
    finally:
        api.release.set()
        process.kill()
        process.wait()
        api.shutdown()
        api.server_close()
