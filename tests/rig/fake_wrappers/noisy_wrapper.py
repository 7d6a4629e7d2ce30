"""A stand-in wrapper that writes 5 MiB to stderr before it speaks: if the gateway did not
drain stderr, the SSH channel would stall at its window and `hello` would never arrive."""

import json
import sys
from pathlib import Path

# The protocol's version from the repository's own definition (these run on this machine,
# with the test's Python), so a new version needs no edit here.
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "remote"))
from wrapper_protocol import PROTOCOL_VERSION

for _ in range(5 * 1024):
    sys.stderr.write("x" * 1023 + "\n")
sys.stderr.flush()
print(json.dumps({"event": "hello", "protocol": PROTOCOL_VERSION, "wrapper": "noisy",
                  "mode": "script",
                  "python": "3", "pid": 0}), flush=True)
for line in sys.stdin:
    command = json.loads(line)
    if command["op"] == "load":
        print(json.dumps({"event": "ready", "id": command.get("id"), "load_seconds": 0}),
              flush=True)
    elif command["op"] == "chat":
        sys.stderr.write("y" * 3_000_000 + "\n")  # more noise mid-turn
        print(json.dumps({"event": "delta", "id": command["id"], "text": "ok"}), flush=True)
        print(json.dumps({"event": "done", "id": command["id"], "content": "ok",
                          "finish_reason": "stop", "timing": {}}), flush=True)
