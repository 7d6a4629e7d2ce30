"""Chat turns: a reply from admission to its stored end, its event log that readers follow, and
the conversations /v1 keeps."""
