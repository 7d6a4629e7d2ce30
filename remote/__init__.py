"""Programs that run on the box. Stand-alone: the gateway uploads these files, and each runs
with the box's Python (stdlib + pexpect or llamafactory). Nothing here imports the gateway."""
