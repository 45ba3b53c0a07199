#!/usr/bin/env bash
# Build the Debian 12 test-host image (systemd as PID 1) with debootstrap and import it
# into podman. The tag is a hash of this recipe and of the CA certificates it trusts, so
# the image is built once and rebuilt only when one of them changes. Callers use that exact
# tag (`build.sh --name` prints it without building), so checkouts with different recipes
# can share a machine; `:latest` follows the last one built.
set -euo pipefail

image_repo=localhost/galatek-debian12
extra_cas=(/usr/local/share/ca-certificates/*.crt)
[ -e "${extra_cas[0]}" ] || extra_cas=()
packages=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,ca-certificates,iproute2,procps,openssh-server

tag=$(cat "$0" "${extra_cas[@]}" | sha256sum | cut -c1-12)
image="$image_repo:$tag"

if [ "${1:-}" = --name ]; then
  echo "$image"
  exit 0
fi

if podman image exists "$image"; then
  podman tag "$image" "$image_repo:latest"
  echo "$image"
  exit 0
fi

# The mirror comes from this machine's apt configuration, never from this script.
sources=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' \
  'Created-By: Packages' | sort -u)
mirror=$(awk '$2 == "bookworm" { print $1; exit }' <<<"$sources")
if [ -z "$mirror" ]; then
  echo "error: no Debian bookworm mirror in this machine's apt sources (apt-get indextargets)" >&2
  exit 1
fi

work=$(mktemp -d /var/tmp/galatek-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"

echo "building $image from $mirror (about 90 s)" >&2
if ! debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" \
  >"$work/debootstrap.log" 2>&1; then
  tail -n 20 "$work/debootstrap.log" >&2
  echo "error: debootstrap from $mirror failed (is the mirror reachable?)" >&2
  exit 1
fi

awk '{ printf "deb %s %s %s\n", $1, $2, $3 }' <<<"$sources" >"$root/etc/apt/sources.list"
if [ "${#extra_cas[@]}" -gt 0 ]; then
  cp "${extra_cas[@]}" "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null 2>&1
fi
chroot "$root" apt-get clean
# Old list files make the first `apt: cache_valid_time` refresh them instead of trusting them.
find "$root/var/lib/apt/lists" -maxdepth 1 -type f -exec touch -d '2000-01-01' {} +
echo 'root:*' | chroot "$root" chpasswd -e
# sshd: keys only (root by key, as Debian allows), and host keys made on each host's first
# boot instead of being shared by every host made from this image.
rm -f "$root"/etc/ssh/ssh_host_*
printf 'PasswordAuthentication no\nKbdInteractiveAuthentication no\n' \
  >"$root/etc/ssh/sshd_config.d/galatek-test-host.conf"
mkdir -p "$root/etc/systemd/system/ssh.service.d"
printf '[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n' \
  >"$root/etc/systemd/system/ssh.service.d/host-keys.conf"
: >"$root/etc/machine-id"

tar -C "$root" -c . | podman import \
  --change 'CMD ["/lib/systemd/systemd"]' \
  --change 'ENV container=podman' \
  --change 'STOPSIGNAL SIGRTMIN+3' \
  - "$image" >/dev/null
podman tag "$image" "$image_repo:latest"
echo "$image"
