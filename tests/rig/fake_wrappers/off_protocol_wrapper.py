"""A stand-in wrapper that answers its first chat with a JSON line that is no event object
(`[1, 2, 3]`), as a custom CHAT_SCRIPT_PATH wrapper once did, then would go on as if fine."""

import json
import sys
from pathlib import Path

# The protocol's version from the repository's own definition (these run on this machine,
# with the test's Python), so a new version needs no edit here.
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "remote"))
from wrapper_protocol import PROTOCOL_VERSION

print(json.dumps({"event": "hello", "protocol": PROTOCOL_VERSION, "wrapper": "off-protocol",
                  "mode": "script",
                  "python": "3", "pid": 0}), flush=True)
for line in sys.stdin:
    command = json.loads(line)
    if command["op"] == "load":
        print(json.dumps({"event": "ready", "id": command.get("id"), "load_seconds": 0}),
              flush=True)
    elif command["op"] == "chat":
        print(json.dumps([1, 2, 3]), flush=True)
        print(json.dumps({"event": "done", "id": command["id"], "content": "late",
                          "finish_reason": "stop", "timing": {}}), flush=True)
