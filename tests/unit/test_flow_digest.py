"""A flow's content digest (its cookie's low bits) is the same in every process: a restarted
weftd finds its flows on the switches by cookie."""
import json
import os
import subprocess
import sys

from flows.flow import content_hash

FLOWS = [
    (40, 150, (("ct_state", (1, 3)), ("eth_type", 2048), ("ipv4_src", "10.0.0.5")),
     (("conjunction", 12345, 1, 2),)),
    (20, 100, (("arp_tpa", "10.0.0.9"), ("eth_type", 2054), ("reg6", 1000)),
     (("move", "eth_src", "eth_dst", 48), ("set_field", "eth_src", "fa:16:3e:00:00:01"),
      ("output", 0xFFFFFFF8))),
    (0, 100, (("in_port", 7),), (("goto", 10),)),
    (10, 90, (), ()),
    (30, 1, (("metadata", (1 << 63, 1 << 63)),), (("ct", True, 7, None, 3), ("output", 7))),
]
SCRIPT = """
import json, sys
from flows.flow import content_hash
def tup(x):
    return tuple(tup(v) for v in x) if isinstance(x, list) else x
# strings rebuilt at run time: not interned, unlike the literals of this process
flows = [tup(f) for f in json.loads(sys.stdin.read())]
print(json.dumps([content_hash(*f) for f in flows]))
"""


def test_the_digest_does_not_depend_on_the_process_or_string_interning():
    here = [content_hash(*f) for f in FLOWS]
    assert len(set(here)) == len(FLOWS) and all(0 <= h < 1 << 24 for h in here)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", SCRIPT], input=json.dumps(FLOWS), text=True,
                             capture_output=True, check=True, cwd=root,
                             env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": root})
        assert json.loads(out.stdout) == here


def test_what_a_flow_does_changes_its_digest():
    table, prio, match, actions = FLOWS[0]
    base = content_hash(table, prio, match, actions)
    assert content_hash(table + 1, prio, match, actions) != base
    assert content_hash(table, prio + 1, match, actions) != base
    assert content_hash(table, prio, match[:2], actions) != base
    assert content_hash(table, prio, match, (("conjunction", 12346, 1, 2),)) != base
    assert content_hash(table, prio, match, (("ct", True, 7, None, 3),)) != \
        content_hash(table, prio, match, (("ct", 1, 7, None, 3),))      # True is not 1
