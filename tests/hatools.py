"""HA test helpers: a ping every 10 ms between two lab VMs, and an API writer that retries as a client would."""
import re
import subprocess
import threading
import time

from controller.client import Client
from tests.labtools import Lab
from topology.errors import WeftError

PINGS = 400                             # 4 s at 10 ms


class Pinger:
    """ping -i 0.01 from v1 to v2 for `count` echoes; .received() once it is done."""

    def __init__(self, lab: Lab, count: int = PINGS):
        self.count = count
        self.proc = subprocess.Popen([lab.weft_path, "lab", "exec", "v1", "--", "ping", "-i", "0.01",
                                      "-c", str(count), "-W", "1", "10.0.0.12"],
                                     env=lab.env, stdout=subprocess.PIPE, text=True)

    def received(self) -> int:
        try:
            out, _ = self.proc.communicate(timeout=30 + self.count / 100)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        found = re.search(r"(\d+) received", out)
        assert found, out[-300:]
        return int(found.group(1))


class Writer(threading.Thread):
    """Creates ports one after the other through every replica's API (the CLI's way: the first
    endpoint that accepts the connection), retrying a failed write. Every error must be a
    retryable one (503); a create that answers 409 after such a failure had been applied."""

    def __init__(self, lab: Lab, prefix: str):
        super().__init__(daemon=True)
        self.client = Client(",".join(f"unix:{lab.dir}/{n}.sock" for n in ("weftd", "weftd2")),
                             timeout=5)
        self.prefix = prefix
        self.acked: list[str] = []
        self.errors: list[str] = []
        self.bad: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            name, retried = f"{self.prefix}{i}", False
            while True:
                try:
                    self.client.post("/v1/ports", {"tenant": "red", "network": "net", "name": name})
                    self.acked.append(name)
                    break
                except WeftError as exc:
                    if exc.status == 409 and retried:
                        self.acked.append(name)         # the unanswered attempt was committed
                        break
                    if exc.status != 503:
                        self.bad.append(f"{name}: {exc.status} {exc}")
                        return
                    self.errors.append(str(exc))
                    retried = True
                    time.sleep(0.02)
            i += 1
            time.sleep(0.02)

    def finish(self) -> list[str]:
        self.stop.set()
        self.join(30)
        assert not self.is_alive()
        assert not self.bad, self.bad
        return self.acked
