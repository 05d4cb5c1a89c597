#!/usr/bin/env bash
# Builds and checks the operator packages.
#
#   scripts/package.sh          release build, the Debian package (cargo-deb) and a tarball with
#                               the same layout under target/package/; checks both (`make package`)
#   scripts/package.sh --check  fast check for every test run: the Debian metadata, the systemd
#                               unit (`systemd-analyze verify`, where available) and the tarball
#                               layout, all from a debug build
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
[ "${1:-}" = "--check" ] && mode=check

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
arch=$(uname -m)
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
out="$target_dir/package"
mkdir -p "$out"

fail() { echo "package: $*" >&2; exit 1; }

# The paths every package holds (relative to /), kept in one list for the deb and the tarball.
expected=(
  usr/bin/epa
  etc/epa/epa.toml
  lib/systemd/system/epa.service
  usr/share/doc/epa/examples/epa.example.toml
  usr/share/doc/epa/operator-guide.md
  usr/share/doc/epa/configuration.md
  usr/share/epa/tuning/sysctl.d/60-epa.conf
  usr/share/epa/tuning/limits.d/60-epa.conf
  usr/share/epa/grafana/epa.json
)

# 1. The Debian metadata names files that exist, the conffile is shipped, scripts are executable.
python3 - <<'PY' || fail "the [package.metadata.deb] table is inconsistent"
import os, sys, tomllib
meta = tomllib.load(open("Cargo.toml", "rb"))["package"]["metadata"]["deb"]
bad = []
for src, dst, mode in meta["assets"]:
    if not src.startswith("target/") and not os.path.isfile(src):
        bad.append(f"asset {src} does not exist")
    int(mode, 8)
dests = {"/" + (d + os.path.basename(s) if d.endswith("/") else d) for s, d, _ in meta["assets"]}
for c in meta["conf-files"]:
    if c not in dests:
        bad.append(f"conffile {c} is not among the assets")
scripts = meta["maintainer-scripts"]
for s in ("postinst", "postrm"):
    p = os.path.join(scripts, s)
    if not os.access(p, os.X_OK):
        bad.append(f"{p} is missing or not executable")
unit = meta["systemd-units"]
if not os.path.isfile(os.path.join(unit["unit-scripts"], unit["unit-name"] + ".service")):
    bad.append("the systemd unit named in systemd-units does not exist")
for b in bad:
    print("package:", b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
sh -n packaging/debian/postinst && sh -n packaging/debian/postrm

# 2. Hardening the unit must keep (a reviewer's list; removing one fails the check).
for directive in "User=epa" "ProtectSystem=strict" "NoNewPrivileges=true" \
  "SystemCallFilter=@system-service" "ReadWritePaths=/var/lib/epa" "PrivateTmp=true" \
  "CapabilityBoundingSet=" "ExecStart=/usr/bin/epa run --config /etc/epa/epa.toml"; do
  grep -qx "$directive" packaging/epa.service || fail "packaging/epa.service lacks \`$directive\`"
done

if [ "$mode" = check ]; then
  cargo build --locked -p epa --bin epa
  bin="$target_dir/debug/epa"
else
  cargo build --locked --release -p epa --bin epa
  bin="$target_dir/release/epa"
fi

# 3. The unit file, verified against the built binary.
if command -v systemd-analyze >/dev/null; then
  unit_dir=$(mktemp -d)
  sed "s#/usr/bin/epa#$bin#g" packaging/epa.service >"$unit_dir/epa.service"
  # `User=epa` need not exist on a build machine; everything else must verify cleanly.
  if ! log=$(systemd-analyze verify --man=no "$unit_dir/epa.service" 2>&1); then
    echo "$log" >&2
    fail "systemd-analyze verify rejected packaging/epa.service"
  fi
  if echo "$log" | grep -v "epa.service:.*user" | grep -q "epa.service"; then
    echo "$log" >&2
    fail "systemd-analyze verify warned about packaging/epa.service"
  fi
  rm -rf "$unit_dir"
  echo "package: systemd-analyze verify: packaging/epa.service ok"
else
  echo "package: systemd-analyze not found; unit file not verified"
fi

# 4. The tarball: same layout as the deb.
stage=$(mktemp -d)
name="epa-$version-$arch-linux"
root="$stage/$name"
install -D -m 0755 "$bin" "$root/usr/bin/epa"
install -D -m 0640 packaging/epa.example.toml "$root/etc/epa/epa.toml"
install -D -m 0644 packaging/epa.service "$root/lib/systemd/system/epa.service"
install -D -m 0644 packaging/epa.example.toml "$root/usr/share/doc/epa/examples/epa.example.toml"
install -D -m 0644 docs/operator-guide.md "$root/usr/share/doc/epa/operator-guide.md"
install -D -m 0644 docs/configuration.md "$root/usr/share/doc/epa/configuration.md"
install -D -m 0644 packaging/sysctl.d/60-epa.conf "$root/usr/share/epa/tuning/sysctl.d/60-epa.conf"
install -D -m 0644 packaging/limits.d/60-epa.conf "$root/usr/share/epa/tuning/limits.d/60-epa.conf"
install -D -m 0644 packaging/grafana/epa.json "$root/usr/share/epa/grafana/epa.json"
tarball="$out/$name.tar.gz"
tar -C "$stage" --owner=0 --group=0 -czf "$tarball" "$name"
rm -rf "$stage"
listing=$(tar -tzf "$tarball")
for p in "${expected[@]}"; do
  echo "$listing" | grep -qx "$name/$p" || fail "$tarball lacks $p"
done
"$bin" config check packaging/epa.example.toml >/dev/null ||
  fail "the built binary refuses packaging/epa.example.toml"
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' packaging/grafana/epa.json ||
  fail "packaging/grafana/epa.json is not JSON"
echo "package: $tarball ok (${#expected[@]} paths)"

[ "$mode" = check ] && exit 0

# 5. The Debian package (release build only).
if ! command -v cargo-deb >/dev/null; then
  cargo install cargo-deb --locked
fi
cargo deb --no-build -p epa --output "$out/"
deb=$(ls -t "$out"/epa_*.deb | head -1)
contents=$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's#^\./##')
for p in "${expected[@]}"; do
  # cargo-deb versions differ on /lib versus /usr/lib for systemd units.
  echo "$contents" | grep -qxE "(usr/)?$p" || fail "$deb lacks $p"
done
rm -rf "$out/control"
dpkg-deb -e "$deb" "$out/control"
grep -qx /etc/epa/epa.toml "$out/control/conffiles" ||
  fail "$deb does not mark /etc/epa/epa.toml as a conffile"
echo "package: $deb ok"
