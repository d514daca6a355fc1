#!/usr/bin/env bash
# scripts/k8s-bins.sh [--force] — real kube-apiserver and
# kube-controller-manager (Kubernetes 1.20.2) for integration tests that
# need a real control plane on 127.0.0.1.
#
# Debian 12 ships the `kubernetes` *source* package (1.20.2, repackaged as
# 1.20.5+really1.20.2) but no binary package with the server components, and
# the only registry this project may reach for such things is Debian's. So
# we build them from that source once, the way Debian's own debian/rules
# does, and cache the two binaries:
#
#   ${BRICKFS_CACHE:-$HOME/.cache/brickfs}/k8s-1.20.2/bin/
#
# A cached pair that still runs and reports v1.20.2 is reused at once (no
# apt, no network), so tests can call this unconditionally. The bin directory
# is the last line on stdout; all progress goes to stderr.
#
# Needs root (or sudo) and Debian's archive only when it actually builds:
# it adds deb-src entries, runs apt-get update/source and installs
# golang-go, rsync and jq. The build takes ~6 minutes on 2 cores and runs
# under `nice -n 19` so it does not starve other compiles.
set -euo pipefail

K8S_VERSION=1.20.2
CACHE="${BRICKFS_CACHE:-$HOME/.cache/brickfs}/k8s-${K8S_VERSION}"
BIN="$CACHE/bin"
BUILD="$CACHE/build"
BINARIES=(kube-apiserver kube-controller-manager)
# Our own file names, so we never touch the machine's own apt sources and
# can tell our entries from pre-existing ones.
SRC_DEB822=/etc/apt/sources.list.d/brickfs-src.sources
SRC_ONELINE=/etc/apt/sources.list.d/brickfs-src.list

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'k8s-bins: %s\n' "$*" >&2; exit 1; }

usage() {
  cat <<EOF
usage: $0 [--force] [--help]

Builds Kubernetes ${K8S_VERSION} kube-apiserver and kube-controller-manager
from Debian's 'kubernetes' source package and caches them in
  $BIN
Prints that directory as the last line of stdout. If both binaries are
already there and report v${K8S_VERSION}, prints it at once without building.

  --force   rebuild even if the cached binaries work
  --help    this text

Environment: BRICKFS_CACHE (default \$HOME/.cache/brickfs).
EOF
}

force=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

# Running the binary, not just finding the file, catches a truncated copy
# or one built for another version.
works() {
  local out
  out=$("$1" --version 2>/dev/null) || return 1
  [[ "$out" == *"v${K8S_VERSION}"* ]]
}

cached_ok() {
  local b
  for b in "${BINARIES[@]}"; do
    [ -x "$BIN/$b" ] && works "$BIN/$b" || return 1
  done
}

if [ "$force" -eq 0 ] && cached_ok; then
  echo "$BIN"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "building needs root (apt-get); run as root or install sudo"
  SUDO="sudo"
fi
command -v apt-get >/dev/null 2>&1 || die "building needs Debian's apt-get"

# --- deb-src entries ---------------------------------------------------------
# apt-get source needs Sources indices. We mirror whatever archive, suites
# and keyring the machine already trusts for binaries (a snapshot or local
# mirror stays in use), limited to the Debian release's own suites
# (codename, codename-updates, codename-security): third-party repositories
# rarely publish sources and a missing index would fail apt-get update.
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[ -n "$codename" ] || die "no VERSION_CODENAME in /etc/os-release"

active_sources() {
  # apt reads only these names; *.disabled and the like are ignored by apt,
  # so they must be ignored here too.
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    case "$f" in "$SRC_DEB822"|"$SRC_ONELINE") continue ;; esac
    echo "$f"
  done
}

# deb822 stanzas: print each enabled stanza of Types "deb" whose Suites are
# all the release's, with Types rewritten to deb-src. Other fields, including
# multi-line ones such as an inline Signed-By key, are copied as they are.
# With want=src it instead reports whether a deb-src stanza already exists.
# shellcheck disable=SC2016  # awk program: its $ fields are awk's, not ours
deb822_awk='
  function flush() {
    if (n > 0 && enabled && rel) {
      if (want == "src" && has_src) found = 1
      if (want == "deb" && has_deb) { printf "%s", (printed++ ? "\n" : ""); for (i = 1; i <= n; i++) print lines[i] }
    }
    n = 0; enabled = 1; rel = 0; has_deb = 0; has_src = 0; field = ""
  }
  BEGIN { n = 0; enabled = 1; found = 0; printed = 0 }
  FNR == 1 { flush() }
  /^[ \t]*#/ { next }
  /^[ \t]*$/ { flush(); next }
  /^[ \t]/ { if (field != "types") lines[++n] = $0; next }
  {
    split($0, kv, ":"); field = tolower(kv[1]); val = substr($0, length(kv[1]) + 2)
    if (field == "types") {
      if (val ~ /(^|[ \t])deb([ \t]|$)/) has_deb = 1
      if (val ~ /(^|[ \t])deb-src([ \t]|$)/) has_src = 1
      lines[++n] = "Types: deb-src"; next
    }
    if (field == "enabled" && tolower(val) ~ /no|false/) enabled = 0
    if (field == "suites") {
      rel = 1; c = split(val, s, /[ \t]+/)
      for (i = 1; i <= c; i++) if (s[i] != "" && s[i] !~ ("^" code "(-[a-z]+)?$")) rel = 0
    }
    lines[++n] = $0
  }
  END { flush(); if (want == "src") exit(found ? 0 : 1) }
'
# One-line format: "deb [options] URI suite components..." -> deb-src.
# shellcheck disable=SC2016
oneline_awk='
  $1 == want {
    i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
    suite = $(i + 1)
    if (suite ~ ("^" code "(-[a-z]+)?$")) { found = 1; if (want == "deb") { sub(/^deb/, "deb-src"); print } }
  }
  END { if (want == "deb-src") exit(found ? 0 : 1) }
'

ensure_deb_src() {
  local files=() deb822=() oneline=() f
  mapfile -t files < <(active_sources)
  for f in "${files[@]}"; do
    case "$f" in *.sources) deb822+=("$f") ;; *) oneline+=("$f") ;; esac
  done
  if [ -f "$SRC_DEB822" ] || [ -f "$SRC_ONELINE" ]; then
    log "deb-src entries already added by an earlier run"
    return
  fi
  if { [ ${#deb822[@]} -gt 0 ] && awk -v want=src -v code="$codename" "$deb822_awk" "${deb822[@]}"; } ||
     { [ ${#oneline[@]} -gt 0 ] && awk -v want=deb-src -v code="$codename" "$oneline_awk" "${oneline[@]}"; }; then
    log "the machine's apt sources already have deb-src for $codename"
    return
  fi
  local s822="" s1=""
  [ ${#deb822[@]} -gt 0 ] && s822=$(awk -v want=deb -v code="$codename" "$deb822_awk" "${deb822[@]}")
  [ ${#oneline[@]} -gt 0 ] && s1=$(awk -v want=deb -v code="$codename" "$oneline_awk" "${oneline[@]}")
  [ -n "$s822$s1" ] || die "no active 'deb' source for $codename found to mirror as deb-src"
  if [ -n "$s822" ]; then
    log "adding $SRC_DEB822"
    printf '# Added by brickfs scripts/k8s-bins.sh: sources for apt-get source kubernetes.\n%s\n' "$s822" | $SUDO tee "$SRC_DEB822" >/dev/null
  fi
  if [ -n "$s1" ]; then
    log "adding $SRC_ONELINE"
    printf '# Added by brickfs scripts/k8s-bins.sh: sources for apt-get source kubernetes.\n%s\n' "$s1" | $SUDO tee "$SRC_ONELINE" >/dev/null
  fi
}

ensure_deb_src
log "apt-get update"
$SUDO apt-get update -qq >&2
apt-cache showsrc kubernetes 2>/dev/null | grep -q "really${K8S_VERSION}" ||
  die "apt-cache showsrc kubernetes has no ${K8S_VERSION} source (is this Debian 12?)"

# golang-go is 1.19 on bookworm, the Go Debian itself builds this source
# with; rsync and jq are used by Kubernetes' hack/ build scripts; dpkg-dev
# provides dpkg-source, which apt-get source needs to unpack and patch.
missing=()
command -v go >/dev/null 2>&1 || [ -x /usr/lib/go/bin/go ] || missing+=(golang-go)
command -v rsync >/dev/null 2>&1 || missing+=(rsync)
command -v jq >/dev/null 2>&1 || missing+=(jq)
command -v dpkg-source >/dev/null 2>&1 || missing+=(dpkg-dev)
command -v make >/dev/null 2>&1 || missing+=(make)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# --- source ------------------------------------------------------------------
# The tree is unpacked next to a marker written only once dpkg-source has
# applied every patch: a run interrupted while unpacking starts over, one
# interrupted while compiling reuses the tree and Go's build cache in it.
mkdir -p "$BUILD"
src=$(find "$BUILD" -maxdepth 1 -type d -name "kubernetes-*really${K8S_VERSION}" | head -n1)
if [ -z "$src" ] || [ ! -f "$src/.brickfs-unpacked" ]; then
  log "apt-get source kubernetes into $BUILD"
  rm -rf "$BUILD"
  mkdir -p "$BUILD"
  # apt warns that it downloads "unsandboxed as root" because its _apt user
  # cannot write into a private cache dir; that is expected and harmless.
  (cd "$BUILD" && apt-get source -qq kubernetes >&2)
  src=$(find "$BUILD" -maxdepth 1 -type d -name "kubernetes-*really${K8S_VERSION}" | head -n1)
  [ -n "$src" ] || die "apt-get source unpacked no kubernetes-*really${K8S_VERSION} tree"
  touch "$src/.brickfs-unpacked"
else
  log "reusing unpacked source $src"
fi

# --- build -------------------------------------------------------------------
# The environment debian/rules sets for override_dh_auto_build: a GOPATH
# inside the tree with k8s.io/kubernetes pointing back at it (Kubernetes
# 1.20 builds in GOPATH mode; hack/lib/init.sh forces GO111MODULE=off and
# resolves imports through vendor/ that way), Debian's Go first in PATH, and
# static binaries (CGO_ENABLED=0), which also means no C toolchain is needed.
# debian/rules points HOME at a non-existent /home/user so nothing leaks into
# the builder's home; we point it into the build dir instead, which keeps the
# same isolation without creating /home/user as root.
log "building ${BINARIES[*]} in $src (several minutes)"
start=$(date +%s)
mkdir -p "$src/.go/src/k8s.io" "$BUILD/home"
[ -L "$src/.go/src/k8s.io/kubernetes" ] || ln -s ../../.. "$src/.go/src/k8s.io/kubernetes"
what=""
for b in "${BINARIES[@]}"; do what+="cmd/$b "; done
(
  cd "$src"
  export GOPATH="$src/.go" PATH="/usr/lib/go/bin:$PATH" CGO_ENABLED=0 HOME="$BUILD/home"
  nice -n 19 make WHAT="${what% }" >&2
)
log "build took $(( $(date +%s) - start ))s"

# --- cache -------------------------------------------------------------------
# Copy to a temporary name and rename, so a concurrent or interrupted run
# never sees a half-written binary under the final name.
mkdir -p "$BIN"
for b in "${BINARIES[@]}"; do
  out="$src/_output/bin/$b"
  [ -x "$out" ] || die "build produced no $out"
  works "$out" || die "$out does not report v${K8S_VERSION}: $("$out" --version 2>&1 || true)"
  cp "$out" "$BIN/.$b.tmp"
  mv -f "$BIN/.$b.tmp" "$BIN/$b"
done
cached_ok || die "cached binaries in $BIN do not run"
# The tree plus Go's cache is a few GB and only needed to build again;
# the binaries are what is cached.
log "removing $BUILD"
rm -rf "$BUILD"
for b in "${BINARIES[@]}"; do log "$("$BIN/$b" --version) ($b)"; done
echo "$BIN"
