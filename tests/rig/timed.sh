#!/usr/bin/env bash
# timed.sh LABEL COMMAND...: run a set-up step quietly and print one line, "LABEL  12.3 s",
# to stderr (the label first, so a long step says what it waits for). The command's stdout
# passes through (box_env.sh prints a path); its stderr is kept aside and shown only if the
# step fails, so a good run prints no warnings.
set -uo pipefail
label=$1
shift
log="$(mktemp)"
printf '%-34s' "$label" >&2
started=${EPOCHREALTIME/./}
"$@" 2>"$log"
status=$?
took=$(( (${EPOCHREALTIME/./} - started) / 100000 ))
if ((status != 0)); then
  printf ' failed (exit %d) after %d.%d s:\n' "$status" $((took / 10)) $((took % 10)) >&2
  tail -n 40 "$log" >&2
  rm -f "$log"
  exit "$status"
fi
printf ' %4d.%d s\n' $((took / 10)) $((took % 10)) >&2
rm -f "$log"
