#!/usr/bin/env bash
# Builds the `downpour:latest` Docker image from this machine alone: no registry, no base image.
#
#   docker/build-image.sh            # cargo build --release, assemble the rootfs, docker build
#
# The binary is linked dynamically against glibc, so the image is `FROM scratch` around a
# root filesystem assembled here: the binary, the shared libraries `ldd` lists, the dynamic
# loader, glibc's NSS modules for host files and DNS (Compose service names resolve through
# Docker's embedded DNS server), and a minimal /etc. Docker mounts /etc/hosts,
# /etc/resolv.conf and /etc/hostname into every container.
#
# Environment:
#   DOWNPOUR_IMAGE     the tag to build [default: downpour:latest]
#   CARGO_TARGET_DIR   cargo's target directory [default: <repo>/target]
#
# The build context is written to $CARGO_TARGET_DIR/docker-image (not committed).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
image=${DOWNPOUR_IMAGE:-downpour:latest}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
context=$target_dir/docker-image
rootfs=$context/rootfs

log() { echo "build-image: $*" >&2; }

build_binary() {
    log "cargo build --release -p downpour"
    (cd "$repo" && cargo build --release --locked -p downpour)
}

# Copies a host file into the rootfs at the same path, following symlinks.
copy_host_file() {
    local path=$1
    mkdir -p "$rootfs$(dirname "$path")"
    cp -L "$path" "$rootfs$path"
}

# The binary, stripped of its debug sections (line tables are for local backtraces).
copy_binary() {
    local binary=$target_dir/release/downpour
    cp "$binary" "$rootfs/downpour"
    if command -v strip >/dev/null; then
        strip --strip-debug "$rootfs/downpour"
    fi
}

# Every shared library `ldd` lists, and the dynamic loader, at their host paths.
copy_shared_libraries() {
    local binary=$1 listing missing
    listing=$(ldd "$binary")
    missing=$(grep 'not found' <<<"$listing" || true)
    if [[ -n $missing ]]; then
        log "ldd cannot resolve some libraries of $binary:"
        echo "$missing" >&2
        exit 1
    fi
    # Lines are `name => /path (addr)`, `/path/loader (addr)` or `linux-vdso.so.1 (addr)`.
    awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$listing" |
        sort -u |
        while read -r library; do
            copy_host_file "$library"
        done
}

# glibc loads name-service modules with dlopen, so ldd does not list them. Since glibc 2.34
# `files` and `dns` live in libc itself and these are stubs, but older glibc needs them.
copy_nss_modules() {
    local binary=$1 libdir module
    libdir=$(dirname "$(ldd "$binary" | awk '$1 == "libc.so.6" { print $3 }')")
    for module in libnss_files.so.2 libnss_dns.so.2; do
        if [[ -e $libdir/$module ]]; then
            copy_host_file "$libdir/$module"
        fi
    done
}

write_etc() {
    mkdir -p "$rootfs/etc"
    printf 'hosts: files dns\npasswd: files\ngroup: files\n' >"$rootfs/etc/nsswitch.conf"
    printf 'root:x:0:0:root:/:/sbin/nologin\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n' >"$rootfs/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
    mkdir -p "$rootfs/tmp"
    chmod 1777 "$rootfs/tmp"
    # Owned by the unprivileged user in the Dockerfile, so a fresh named volume is writable.
    mkdir -p "$context/checkpoints" "$context/output"
}

assemble_rootfs() {
    log "assembling $rootfs"
    rm -rf "$context"
    mkdir -p "$rootfs"
    copy_binary
    copy_shared_libraries "$rootfs/downpour"
    copy_nss_modules "$rootfs/downpour"
    write_etc
}

# Builds and tags the image, then removes the image the tag pointed at before, if it is now
# untagged and unused, so repeated builds do not pile up dangling images.
build_image() {
    local previous current
    previous=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
    log "docker build -t $image"
    docker build -t "$image" -f "$repo/docker/Dockerfile" "$context" >&2
    current=$(docker image inspect --format '{{.Id}}' "$image")
    if [[ -n $previous && $previous != "$current" ]]; then
        docker image rm "$previous" >/dev/null 2>&1 || true
    fi
    log "built $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{ printf "%.1f MB", $1 / 1e6 }'))"
}

build_binary
assemble_rootfs
build_image
