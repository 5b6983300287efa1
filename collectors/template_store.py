"""NetFlow v9 / IPFIX templates kept on disk per exporter and observation domain, loaded at start.

After a collector restart an exporter's data sets decode at once: the templates it sent
before are read back from `DIR/PROTOCOL/` (one JSON file per exporter and observation
domain / source id), instead of being held until the exporter resends them (Open vSwitch
resends IPFIX templates only every few minutes; other exporters up to every 30).

`TemplateStore(dir, protocol).attach(cache)` loads the files into a `TemplateCache` and then
follows it (`TemplateCache.on_change`): a domain's file is rewritten when one of its templates
is learned, replaced by a different one or removed (withdrawn, expired, evicted), and when
only refreshed, at most every `refresh_every` seconds (so a restarted collector can tell how
fresh each template is). A file holds

    {"version": 1, "protocol": "ipfix", "exporter": "192.0.2.1", "domain": 5,
     "saved_at": UNIX_SECONDS,
     "templates": [{"id": 256, "options": false, "scope_count": 0,
                    "fields": [[IE_ID, LENGTH, ENTERPRISE], ...]}, ...]}

On load a template is as old as its file: one older than the cache's timeout is skipped,
the others expire when they would have. A file that does not parse is logged and skipped.
One file per exporter domain also means collector processes that each serve their own
exporters never write the same file. Writes go to a temporary name, then rename.
"""
from __future__ import annotations

import json
import logging
import os
import time
from urllib.parse import quote

from .errors import MalformedDatagram
from .templates import FieldSpec, Template, TemplateCache

LOG = logging.getLogger(__name__)
PROTOCOLS = ("netflow9", "ipfix")
VERSION = 1


def build_template(protocol: str, tid: int, fields, scope_count: int, options: bool) -> Template:
    """A template compiled as the protocol's decoder compiles one it receives."""
    specs = [FieldSpec(int(i), int(n), int(pen)) for i, n, pen in fields]
    if protocol == "netflow9":
        return Template(tid, specs, scope_count=scope_count, options=options,
                        v9_scopes=options, allow_variable=False)
    return Template(tid, specs, scope_count=scope_count, options=options)


class TemplateStore:
    """Persistence of one protocol's TemplateCache under `directory/protocol`."""

    def __init__(self, directory: str, protocol: str, clock=time.time,
                 monotonic=time.monotonic, refresh_every: float | None = None,
                 min_interval: float = 0.0) -> None:
        """min_interval: a domain's file is rewritten at most this often; changes in between
        wait for `flush()` (an exporter sends its templates in a burst: Open vSwitch ~90 in 18
        datagrams, each learned one at a time, which rewrote the whole file ~90 times, about
        0.6 s of a collector's CPU at every exporter restart)."""
        if protocol not in PROTOCOLS:
            raise ValueError(f"templates of {protocol!r} are not kept (netflow9 or ipfix)")
        self.protocol = protocol
        self.directory = os.path.join(directory, protocol)
        self.clock = clock
        self.monotonic = monotonic
        self.refresh_every = refresh_every
        self.min_interval = min_interval
        self._dirty: set[tuple] = set()          # (exporter, domain) changed since written
        self.cache: TemplateCache | None = None
        self._saved: dict[tuple, float] = {}    # (exporter, domain) -> wall time of the last write
        self.loaded = 0
        self.skipped = 0
        self.writes = 0
        self.errors = 0
        os.makedirs(self.directory, mode=0o750, exist_ok=True)

    def path(self, exporter, domain: int) -> str:
        return os.path.join(self.directory, f"{quote(str(exporter), safe='')}_{int(domain)}.json")

    # ------------------------------------------------------------------ load

    def attach(self, cache: TemplateCache) -> int:
        """Load the saved templates into `cache`, then keep the files in step with it;
        returns how many templates were loaded."""
        if self.refresh_every is None:
            self.refresh_every = max(1.0, cache.timeout / 4)
        now, mono = self.clock(), self.monotonic()
        found = []                       # (age, key, template)
        for name in sorted(os.listdir(self.directory)):
            if not name.endswith(".json"):
                continue
            try:
                found += self._read(os.path.join(self.directory, name), now, cache.timeout)
            except (OSError, ValueError, TypeError, KeyError, MalformedDatagram) as exc:
                self.skipped += 1
                LOG.warning("templates: skipping %s: %s", name, exc)
        cache.on_change = None
        for age, key, tpl in sorted(found, key=lambda f: -f[0]):   # oldest refresh first
            cache.put(key, tpl, mono - age)
            self._saved[key[:2]] = now - age
        self.loaded = len(found)
        self.cache = cache
        cache.on_change = self.changed
        return self.loaded

    def _read(self, path: str, now: float, timeout: float) -> list:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("version") != VERSION or data.get("protocol") != self.protocol:
            raise ValueError("not a template file of this version and protocol")
        exporter, domain = str(data["exporter"]), int(data["domain"])
        age = max(0.0, now - float(data["saved_at"]))
        if age > timeout:
            self.skipped += len(data["templates"])
            return []
        out = []
        for t in data["templates"]:
            tid = int(t["id"])
            if not 256 <= tid <= 65535:
                raise ValueError(f"template id {tid} out of range")
            tpl = build_template(self.protocol, tid, t["fields"], int(t.get("scope_count", 0)),
                                 bool(t.get("options", False)))
            out.append((age, (exporter, domain, tid), tpl))
        return out

    # ------------------------------------------------------------------ save

    def changed(self, exporter, domain, changed: bool) -> None:
        """TemplateCache.on_change: rewrite the domain's file when needed (never raises)."""
        key = (exporter, domain)
        now = self.clock()
        last = self._saved.get(key, float("-inf"))
        if not changed and now - last < self.refresh_every:
            return
        if now - last < self.min_interval:
            self._dirty.add(key)          # written by the next flush() after min_interval
            return
        self._save(key, now)

    def flush(self, force: bool = False) -> None:
        """Write the domains changed since their last write (all of them with `force`; else
        those written at least `min_interval` ago). Call it from the cache's own thread."""
        if not self._dirty:
            return
        now = self.clock()
        for key in sorted(self._dirty, key=str):
            if force or now - self._saved.get(key, float("-inf")) >= self.min_interval:
                self._save(key, now)

    def _save(self, key: tuple, now: float) -> None:
        self._dirty.discard(key)
        try:
            self._write(key[0], key[1], now)
        except (OSError, TypeError, ValueError) as exc:
            self.errors += 1
            if self.errors % 100 == 1:
                LOG.warning("templates: cannot save %s domain %s: %s", key[0], key[1], exc)

    def _write(self, exporter, domain, now: float) -> None:
        path = self.path(exporter, domain)
        templates = self.cache.domain_templates(exporter, domain)
        if not templates:
            self._saved.pop((exporter, domain), None)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            return
        data = {"version": VERSION, "protocol": self.protocol, "exporter": str(exporter),
                "domain": int(domain), "saved_at": now,
                "templates": [{"id": t.template_id, "options": t.options,
                               "scope_count": t.scope_count,
                               "fields": [[f.ie_id, f.length, f.pen] for f in t.fields]}
                              for t in templates]}
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, separators=(",", ":"))
        os.replace(tmp, path)
        self._saved[(exporter, domain)] = now
        self.writes += 1
