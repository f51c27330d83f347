#!/usr/bin/env bash
# Builds the Kubernetes control plane that the kube tests run against: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kwok (fake nodes and pods), all from the Go module
# proxy, into a versioned directory of the user's cache. Binaries that already exist are kept, so
# a warm run takes seconds; a cold one takes ~20 minutes on 2 cores. It also copies the Gateway API
# CRDs (HTTPRoute, Gateway, GatewayClass) and kwok's stage definitions next to the binaries.
#
#   scripts/k8s-tools.sh          build what is missing, print the bin directory
#   K8S_TOOLS_FORCE=1 ...         rebuild everything
#
# The binaries are built from tools/k8s (its own go.mod, never imported by teal) and
# tools/k8s/etcd, so teal's go.mod never sees k8s.io/kubernetes.
set -euo pipefail

K8S_VERSION=v1.37.2
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
GATEWAY_API_VERSION=v1.6.3

root="$(cd "$(dirname "$0")/.." && pwd)"
GO="${GO:-go}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/teal/k8s-${K8S_VERSION}"
bin="$cache/bin"
mkdir -p "$bin" "$cache/crds" "$cache/stages"

log() { printf 'k8s-tools: %s\n' "$*" >&2; }

# build NAME DIR PKG: go build PKG inside the module at DIR, written atomically so that an
# interrupted build never leaves a binary that looks complete.
build() {
  local name=$1 dir=$2 pkg=$3
  if [ -x "$bin/$name" ] && [ -z "${K8S_TOOLS_FORCE:-}" ]; then
    return 0
  fi
  log "building $name ($pkg) ..."
  local start=$SECONDS
  (cd "$dir" && nice -n 19 "$GO" build -trimpath -o "$bin/.$name.tmp" "$pkg")
  mv -f "$bin/.$name.tmp" "$bin/$name"
  log "built $name in $((SECONDS - start))s"
}

build etcd "$root/tools/k8s/etcd" go.etcd.io/etcd/server/v3
build kube-scheduler "$root/tools/k8s" k8s.io/kubernetes/cmd/kube-scheduler
build kube-controller-manager "$root/tools/k8s" k8s.io/kubernetes/cmd/kube-controller-manager
build kube-apiserver "$root/tools/k8s" k8s.io/kubernetes/cmd/kube-apiserver

# kwok's go.mod has no replace directives, so go install with a version builds it outside any
# module of ours.
if [ ! -x "$bin/kwok" ] || [ -n "${K8S_TOOLS_FORCE:-}" ]; then
  log "building kwok (sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION) ..."
  start=$SECONDS
  tmpbin="$(mktemp -d)"
  (cd "$root/tools/k8s" && GOBIN="$tmpbin" GOFLAGS=-mod=mod nice -n 19 "$GO" install -trimpath \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION")
  mv -f "$tmpbin/kwok" "$bin/kwok"
  rmdir "$tmpbin"
  log "built kwok in $((SECONDS - start))s"
fi

# moddir MOD@VERSION: the module's directory in the module cache (downloaded if missing).
moddir() {
  (cd "$root/tools/k8s" && GOFLAGS=-mod=mod "$GO" mod download -json "$1") |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p'
}

if [ ! -s "$cache/crds/httproutes.yaml" ]; then
  gw="$(moddir "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION")"
  for kind in httproutes gateways gatewayclasses; do
    cp "$gw/config/crd/standard/gateway.networking.k8s.io_$kind.yaml" "$cache/crds/$kind.yaml"
  done
  chmod u+w "$cache"/crds/*.yaml
  log "copied Gateway API $GATEWAY_API_VERSION CRDs"
fi

if [ ! -s "$cache/stages/pod-ready.yaml" ]; then
  kw="$(moddir "sigs.k8s.io/kwok@$KWOK_VERSION")"
  cp "$kw/kustomize/stage/node/fast/node-initialize.yaml" "$cache/stages/"
  for s in pod-ready pod-complete pod-delete; do
    cp "$kw/kustomize/stage/pod/fast/$s.yaml" "$cache/stages/"
  done
  chmod u+w "$cache"/stages/*.yaml
  log "copied kwok $KWOK_VERSION stages"
fi

echo "$bin"
