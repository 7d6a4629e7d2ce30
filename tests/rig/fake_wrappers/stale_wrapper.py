"""A stand-in for a wrapper deployed by hand from another version: it speaks protocol 999."""

import json
import sys

print(json.dumps({"event": "hello", "protocol": 999, "wrapper": "9.9.9", "mode": "script",
                  "python": "3", "pid": 0}), flush=True)
sys.stdin.read()
