#!/usr/bin/env bash
# Build one real Asterisk release from ../shared/asterisk into the cache, with nothing downloaded.
#
#   scripts/asterisk/build.sh 23.4.1        # prints the install prefix on its last line
#
# The install lives outside the clone, in $MEDIASTREAM_CACHE (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/mediastream)/asterisk/<release>, so later runs reuse it; a
# finished build leaves a stamp file and is never rebuilt. Concurrent builds of one release wait
# for each other (flock). Debian's build dependencies are installed when missing (root or
# password-less sudo). Notes: ../shared/asterisk/README.md.
set -euo pipefail
release="${1:?usage: build.sh RELEASE}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
shared="${MEDIASTREAM_SHARED:-$root/../shared}"
tarball="$shared/asterisk/asterisk-$release.tar.xz"
cache="${MEDIASTREAM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mediastream}"
prefix="$cache/asterisk/$release"
stamp="$prefix/.built"

if [ -f "$stamp" ]; then echo "$prefix"; exit 0; fi
[ -f "$tarball" ] || { echo "build.sh: no $tarball" >&2; exit 3; }

mkdir -p "$cache/asterisk"
exec 9>"$cache/asterisk/.lock-$release"
flock 9
if [ -f "$stamp" ]; then echo "$prefix"; exit 0; fi

deps=(build-essential libjansson-dev libxml2-dev libsqlite3-dev uuid-dev libedit-dev libssl-dev
      libcurl4-openssl-dev pkg-config libncurses-dev xmlstarlet bison flex)
missing=()
for p in "${deps[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=; [ "$(id -u)" = 0 ] || sudo="sudo -n"
  # apt's own lock makes concurrent builds of different releases queue here.
  $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    "${missing[@]}" >&2
fi

work="$(mktemp -d "$cache/asterisk/build-$release.XXXXXX")"
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
tar -xJf "$tarball" -C "$work"
cd "$work/asterisk-$release"
echo "$release" > .version
{
  ./configure --prefix="$prefix" --with-jansson-bundled=no --without-pjproject-bundled \
    --without-pjproject --disable-xmldoc
  make menuselect.makeopts
  menuselect/menuselect --disable-category MENUSELECT_CORE_SOUNDS --disable-category MENUSELECT_MOH \
    --disable-category MENUSELECT_EXTRA_SOUNDS --disable chan_pjsip --disable res_pjsip \
    menuselect.makeopts
  make -j"$(nproc)"
  rm -rf "$prefix"
  make install
} > "$work/build.log" 2>&1 || { tail -50 "$work/build.log" >&2; echo "build.sh: Asterisk $release failed to build" >&2; exit 1; }
echo "built Asterisk $release in $(( $(date +%s) - start )) s" >&2
touch "$stamp"
echo "$prefix"
