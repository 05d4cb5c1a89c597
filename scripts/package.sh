#!/usr/bin/env bash
# Builds and checks the operator packages.
#
#   scripts/package.sh          release build, the Debian package (cargo-deb when installed,
#                               else dpkg-deb) and a tarball with the same layout under
#                               target/package/; checks both (`make package`)
#   scripts/package.sh --check  fast check for every test run: the Debian metadata, the systemd
#                               unit (`systemd-analyze verify`, where available), then a real
#                               .deb (dpkg-deb --root-owner-group) and the tarball built from one
#                               staged tree of the debug binary, both checked as dpkg and tar
#                               list them (paths, modes, owner, conffile, maintainer scripts)
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
  if echo "$log" | grep -v "epa.service:.*user" | grep "epa.service" >/dev/null; then
    echo "$log" >&2
    fail "systemd-analyze verify warned about packaging/epa.service"
  fi
  rm -rf "$unit_dir"
  echo "package: systemd-analyze verify: packaging/epa.service ok"
else
  echo "package: systemd-analyze not found; unit file not verified"
fi

# 4. One staged tree, laid out from the `[package.metadata.deb]` assets (the list cargo-deb
#    reads), with the built binary in place of `target/release/epa`: both packages are made
#    from it, so they cannot drift apart.
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
name="epa-$version-$arch-linux"
root="$stage/$name"
python3 - "$root" "$bin" <<'PY' || fail "cannot stage the package tree"
import os, shutil, sys, tomllib
root, binary = sys.argv[1], sys.argv[2]
meta = tomllib.load(open("Cargo.toml", "rb"))["package"]["metadata"]["deb"]
for src, dst, mode in meta["assets"]:
    if src.startswith("target/"):
        src = binary
    if dst.endswith("/"):
        dst += os.path.basename(src)
    path = os.path.join(root, dst)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    shutil.copyfile(src, path)
    os.chmod(path, int(mode, 8))
unit = meta["systemd-units"]
path = os.path.join(root, "lib/systemd/system", unit["unit-name"] + ".service")
os.makedirs(os.path.dirname(path), exist_ok=True)
shutil.copyfile(os.path.join(unit["unit-scripts"], unit["unit-name"] + ".service"), path)
os.chmod(path, 0o644)
PY
"$bin" config check "$root/etc/epa/epa.toml" >/dev/null ||
  fail "the built binary refuses packaging/epa.example.toml"
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$root/usr/share/epa/grafana/epa.json" ||
  fail "packaging/grafana/epa.json is not JSON"

# 5. The tarball: the staged tree under one top directory, owned by root.
tarball="$out/$name.tar.gz"
tar -C "$stage" --owner=0 --group=0 --numeric-owner -czf "$tarball" "$name"
listing=$(tar -tvzf "$tarball")
for p in "${expected[@]}"; do
  echo "$listing" | awk '{print $6}' | grep -x "$name/$p" >/dev/null || fail "$tarball lacks $p"
done
echo "$listing" | awk '$6 ~ /\/usr\/bin\/epa$/ && $1 != "-rwxr-xr-x" {bad=1} END {exit bad}' ||
  fail "$tarball: usr/bin/epa is not mode 0755"
echo "$listing" | awk '$6 ~ /\/etc\/epa\/epa.toml$/ && $1 != "-rw-r-----" {bad=1} END {exit bad}' ||
  fail "$tarball: etc/epa/epa.toml is not mode 0640"
echo "$listing" | awk '$2 != "0/0" {bad=1} END {exit bad}' ||
  fail "$tarball holds files not owned by root"
echo "package: $tarball ok (${#expected[@]} paths)"

# 6. The Debian package. The release path is cargo-deb (full mode, when it is installed);
#    otherwise, and always in --check mode, dpkg-deb builds it from the staged tree with the
#    same metadata, maintainer scripts and systemd integration that cargo-deb writes.
deb_arch=$(dpkg --print-architecture 2>/dev/null || echo "$arch")
deb="$out/epa_${version}_${deb_arch}.deb"
rm -f "$deb"
if [ "$mode" = full ] && command -v cargo-deb >/dev/null; then
  cargo deb --no-build -p epa --output "$deb"
else
  if [ "$mode" = full ]; then
    echo "package: cargo-deb is not installed; building the .deb with dpkg-deb"
  fi
  command -v dpkg-deb >/dev/null || fail "dpkg-deb not found; install dpkg"
  debroot="$stage/deb"
  cp -a "$root" "$debroot"
  mkdir -p "$debroot/DEBIAN"
  # Runtime dependencies: the package owning each shared library the binary links directly.
  depends="adduser"
  for lib in $(objdump -p "$bin" | awk '$1 == "NEEDED" {print $2}'); do
    # awk reads to the end: an early `exit` would SIGPIPE ldconfig and, under pipefail,
    # stop this script without a word.
    path=$(ldconfig -p | awk -v l="$lib" '$1 == l && !found {print $NF; found = 1}')
    [ -n "$path" ] || continue
    owner=$(dpkg -S "$path" 2>/dev/null | head -1 | cut -d: -f1 || true)
    [ -n "$owner" ] || owner=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | head -1 | cut -d: -f1 || true)
    [ -n "$owner" ] && depends="$depends, $owner"
  done
  depends=$(echo "$depends" | tr ',' '\n' | sed 's/^ *//' | awk 'NF && !seen[$0]++' | paste -sd, - | sed 's/,/, /g')
  installed_kib=$(du -sk "$root" | cut -f1)
  python3 - "$debroot/DEBIAN" "$version" "$deb_arch" "$depends" "$installed_kib" <<'PY' ||
import os, sys, tomllib, textwrap
out, version, arch, depends, size = sys.argv[1:]
pkg = tomllib.load(open("Cargo.toml", "rb"))["package"]
meta = pkg["metadata"]["deb"]
desc = pkg.get("description") or "the Ecliptica Prover Appliance"
body = "\n".join(" " + line for line in textwrap.wrap(meta["extended-description"], 78))
with open(os.path.join(out, "control"), "w") as f:
    f.write(f"Package: epa\nVersion: {version}\nArchitecture: {arch}\n"
            f"Maintainer: {meta['maintainer']}\nInstalled-Size: {size}\n"
            f"Depends: {depends}\nSection: {meta['section']}\nPriority: {meta['priority']}\n"
            f"Description: {desc}\n{body}\n")
with open(os.path.join(out, "conffiles"), "w") as f:
    f.write("".join(c + "\n" for c in meta["conf-files"]))
PY
    fail "cannot write DEBIAN/control"
  # The maintainer scripts with the systemd snippets debhelper puts at #DEBHELPER#
  # (`enable = true, start = false` in the metadata: enabled on install, never started).
  snippets="$stage/snippets"
  mkdir -p "$snippets"
  cat >"$snippets/postinst" <<'SH'
if [ "$1" = "configure" ] || [ "$1" = "abort-upgrade" ] || [ "$1" = "abort-deconfigure" ] || [ "$1" = "abort-remove" ]; then
	if [ -x /usr/bin/deb-systemd-helper ]; then
		deb-systemd-helper unmask epa.service >/dev/null || true
		deb-systemd-helper enable epa.service >/dev/null || true
	fi
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
	fi
fi
SH
  cat >"$snippets/postrm" <<'SH'
if [ "$1" = "remove" ] && [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null || true
fi
if [ "$1" = "purge" ] && [ -x /usr/bin/deb-systemd-helper ]; then
	deb-systemd-helper purge epa.service >/dev/null || true
fi
SH
  for s in postinst postrm; do
    awk -v snip="$snippets/$s" '$0 == "#DEBHELPER#" {while ((getline l < snip) > 0) print l; next} {print}' \
      "packaging/debian/$s" >"$debroot/DEBIAN/$s"
    chmod 0755 "$debroot/DEBIAN/$s"
  done
  cat >"$debroot/DEBIAN/prerm" <<'SH'
#!/bin/sh
# Stops the service before its files go away.
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
	deb-systemd-invoke stop epa.service >/dev/null || true
fi
exit 0
SH
  chmod 0755 "$debroot/DEBIAN/prerm"
  # --check packs a debug binary of about 100 MB: fast gzip keeps the step to seconds.
  level=9
  [ "$mode" = check ] && level=1
  dpkg-deb --root-owner-group -Zgzip -z"$level" --build "$debroot" "$deb" >/dev/null
fi

# 7. The .deb as dpkg sees it: every path, root ownership, the conffile, the control fields
#    and the maintainer scripts (user creation, /var/lib/epa owned by epa with mode 0700).
contents=$(dpkg-deb -c "$deb")
paths=$(echo "$contents" | awk '{print $6}' | sed 's#^\./##')
for p in "${expected[@]}"; do
  # cargo-deb versions differ on /lib versus /usr/lib for systemd units.
  echo "$paths" | grep -xE "(usr/)?$p" >/dev/null || fail "$deb lacks $p"
done
echo "$contents" | awk '$2 != "root/root" {bad=1} END {exit bad}' ||
  fail "$deb holds files not owned by root/root"
echo "$contents" | awk '$6 == "./usr/bin/epa" && $1 != "-rwxr-xr-x" {bad=1} END {exit bad}' ||
  fail "$deb: /usr/bin/epa is not mode 0755"
echo "$contents" | awk '$6 == "./etc/epa/epa.toml" && $1 != "-rw-r-----" {bad=1} END {exit bad}' ||
  fail "$deb: /etc/epa/epa.toml is not mode 0640"
ctl="$stage/control"
dpkg-deb -e "$deb" "$ctl"
grep -qx /etc/epa/epa.toml "$ctl/conffiles" ||
  fail "$deb does not mark /etc/epa/epa.toml as a conffile"
info=$(dpkg-deb -I "$deb")
for field in "Package: epa" "Version: $version" "Architecture: $deb_arch" "Depends: .*adduser"; do
  echo "$info" | grep -E "^ $field" >/dev/null || fail "$deb control lacks \`$field\`"
done
for s in postinst postrm; do
  [ -x "$ctl/$s" ] || fail "$deb has no executable $s"
  sh -n "$ctl/$s" || fail "$deb: $s is not valid sh"
  if grep -q "#DEBHELPER#" "$ctl/$s"; then fail "$deb: $s still holds #DEBHELPER#"; fi
done
grep -q "epa.service" "$ctl/postinst" || fail "$deb postinst does not enable epa.service"
# Run the postinst against stub commands that only record their arguments: it must create the
# group and the user, then /var/lib/epa owned by epa with mode 0700. The host is not touched.
stubs="$stage/stubs"
calls="$stage/calls"
mkdir -p "$stubs"
: >"$calls"
for c in getent addgroup adduser install chown chmod deb-systemd-helper systemctl; do
  # getent finds nobody, so the script creates the group and the user.
  printf '#!/bin/sh\necho "%s $*" >>"%s"\n[ "%s" != getent ]\n' "$c" "$calls" "$c" >"$stubs/$c"
  chmod 0755 "$stubs/$c"
done
PATH="$stubs:$PATH" sh "$ctl/postinst" configure || fail "$deb postinst failed against stubs"
for call in "addgroup --system epa" "adduser --system --ingroup epa" \
  "install -d -o epa -g epa -m 0700 /var/lib/epa"; do
  grep -q "^$call" "$calls" ||
    fail "$deb postinst did not run \`$call\` (it ran: $(tr '\n' ';' <"$calls"))"
done
echo "package: $deb ok ($(echo "$paths" | grep -c .) entries, conffile, maintainer scripts)"
