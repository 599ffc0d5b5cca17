#!/usr/bin/env bash
# Installs (when missing) the headless browser of the admin's real-browser test: Debian's chromium, its
# chromedriver and a CJK font (so screenshots show 青碳行, not boxes). Needs root (or sudo) for apt-get; without
# it, says so and carries on: the browser test then skips with that reason.
set -uo pipefail
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk" || missing+=(fonts-wqy-zenhei)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
  echo "browser: ${missing[*]} missing and no root to install them: the real-browser admin test will skip"; exit 0
fi
echo "installing ${missing[*]} from Debian packages"
export DEBIAN_FRONTEND=noninteractive
{ $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
  || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; } \
  || echo "browser: could not install ${missing[*]}: the real-browser admin test will skip"
exit 0
