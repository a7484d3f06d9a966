#!/usr/bin/env bash
# System packages the project needs: EGL/Mesa for headless MuJoCo rendering.
# Idempotent: installs only what dpkg does not already report as installed.
set -euo pipefail
pkgs=(libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1 libgl1)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
