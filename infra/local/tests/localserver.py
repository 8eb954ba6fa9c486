"""A private local AWS (moto + our extensions, no ministack) for one test class: started on a
free loopback port before its tests, stopped after. LOCALAWS_PLAIN=1 starts plain moto instead,
to show which tests the extensions make pass."""

import json
import os
import subprocess
import sys
import unittest
import urllib.request
from pathlib import Path

LOCAL = Path(__file__).resolve().parents[1]


def request(url, body=None, method="POST"):
    """A call to the control endpoint: JSON in, JSON out."""
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method)) as answer:
        return json.load(answer)


class LocalServerTestCase(unittest.TestCase):
    endpoint: str
    control: str

    @classmethod
    def setUpClass(cls):
        command = [sys.executable, "-m", "localaws.server", "--port", "0", "--parent-pid", str(os.getpid())]
        if os.environ.get("LOCALAWS_PLAIN") == "1":
            command.append("--plain")
        cls.server = subprocess.Popen(command, cwd=LOCAL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        first = cls.server.stdout.readline().split()
        if len(first) != 2 or first[0] != "listening":
            cls.server.kill()
            raise RuntimeError("the local AWS did not start")
        cls.endpoint = f"http://127.0.0.1:{first[1]}"
        cls.control = f"{cls.endpoint}/_localaws"

    @classmethod
    def tearDownClass(cls):
        cls.server.kill()
        cls.server.wait()
        cls.server.stdout.close()
