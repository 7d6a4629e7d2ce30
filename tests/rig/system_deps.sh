#!/usr/bin/env bash
# Install the Debian packages the tests need, only those missing. Needs root (or sudo).
set -euo pipefail
need=()
[[ -x /usr/sbin/sshd ]] || need+=(openssh-server)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
command -v runuser >/dev/null || need+=(util-linux)
command -v unshare >/dev/null || need+=(util-linux)  # a tmpfs in the test sshd's own mounts
command -v mount >/dev/null || need+=(mount)
command -v ip >/dev/null || need+=(iproute2)  # the link-cut test's network namespace
[[ -x /usr/bin/chromium ]] || need+=(chromium)  # the browser tests drive it (Playwright)
((${#need[@]} == 0)) && exit 0
sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"
echo "system_deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
