#!/usr/bin/env bash
# Checks the Debian package that scripts/package.sh built:
#   1. control fields: name, version (CMake's project(VERSION)), architecture, dependencies
#      from dpkg-shlibdeps, the maintainer scripts and conffiles (dpkg-deb -I)
#   2. contents (dpkg-deb -c): binaries, systemd units, configs, examples, docs; every file
#      under /etc is a conffile; the units and configs point where the package puts things,
#      and docs/operations.md shows the shipped units as they are
#   3. systemd-analyze verify on the units, when systemd-analyze is there
#   4. lintian, failing on errors and warnings; the tags accepted for a locally built
#      package are overridden, each with its reason, in deploy/debian/tunnel.lintian-overrides
#   5. only as root with TUNNEL_CI_INSTALL_TEST=1 (.ci/run sets it when CI=true): installs
#      the package for real (dpkg -i, twice: postinst must be idempotent), checks the user,
#      the data dir and /etc/tunnel, runs the core from /usr/bin as user tunnel with the
#      shipped config, then dpkg -r (data, user and config stay) and dpkg -P (all gone).
#      It refuses to start if a package, user or data dir named tunnel is already there, and
#      purges what it installed if a check fails.
#   scripts/check-package.sh [DEB]     default: build/release/package/tunnel_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."

deb="${1:-}"
if [ -z "$deb" ]; then
  debs=(build/release/package/tunnel_*.deb)
  deb="${debs[0]}"
fi
if [ ! -f "$deb" ]; then
  echo "check-package: no package at '$deb'; build it with scripts/package.sh" >&2
  exit 1
fi

failures=0
fail() { echo "check-package: FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { echo "check-package: ok: $*"; }

version="$(sed -n 's/^project(tunnel VERSION \([0-9][0-9.]*\).*/\1/p' CMakeLists.txt)"
arch="$(dpkg --print-architecture)"
work="$(mktemp -d)"
cleanup_dirs() { rm -rf "$work"; }
trap cleanup_dirs EXIT

# --- 1. control ------------------------------------------------------------------------
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = tunnel ] && ok "Package: tunnel" || fail "Package is '$(field Package)', not tunnel"
[ -n "$version" ] && [ "$(field Version)" = "$version" ] && ok "Version: $version" \
  || fail "Version is '$(field Version)', CMakeLists.txt says '$version'"
[ "$(field Architecture)" = "$arch" ] && ok "Architecture: $arch" \
  || fail "Architecture is '$(field Architecture)', not $arch"
depends="$(field Depends)"
for dep in adduser libc6 libssl3; do
  # libc6 and libssl3 come from dpkg-shlibdeps: their absence means it did not run.
  if grep -Eq "(^|, )$dep( |,|$)" <<<"$depends"; then ok "Depends on $dep"; else fail "Depends lacks $dep: $depends"; fi
done

dpkg-deb -e "$deb" "$work/control"
for script in postinst prerm postrm; do
  if [ -x "$work/control/$script" ] && sh -n "$work/control/$script"; then
    ok "maintainer script $script (executable, parses)"
  else
    fail "maintainer script $script missing, not executable or not valid sh"
  fi
done
sort "$work/control/conffiles" >"$work/conffiles" 2>/dev/null || : >"$work/conffiles"

# --- 2. contents -----------------------------------------------------------------------
dpkg-deb -c "$deb" | awk '{ print $6 }' | sed 's|^\./|/|' >"$work/files"
expected=(
  /usr/bin/tunnel-core /usr/bin/tunnel-agent /usr/bin/tunnelctl
  /usr/lib/systemd/system/tunnel-core.service /usr/lib/systemd/system/tunnel-agent.service
  /etc/tunnel/core.yaml /etc/tunnel/agent.yaml
  /usr/share/doc/tunnel/examples/core.yaml /usr/share/doc/tunnel/examples/agent.yaml
  /usr/share/doc/tunnel/copyright /usr/share/doc/tunnel/changelog.gz
  /usr/share/doc/tunnel/operations.md /usr/share/lintian/overrides/tunnel
)
for path in "${expected[@]}"; do
  grep -qx "$path" "$work/files" && ok "contains $path" || fail "does not contain $path"
done
grep '^/etc/.*[^/]$' "$work/files" | sort >"$work/etc-files"
if cmp -s "$work/etc-files" "$work/conffiles"; then
  ok "the files under /etc are exactly the conffiles ($(wc -l <"$work/conffiles"))"
else
  fail "files under /etc and conffiles differ: $(diff "$work/etc-files" "$work/conffiles" | tr '\n' ' ')"
fi

dpkg-deb -x "$deb" "$work/root"
root="$work/root"
unit_line() { grep -x "$2" "$root/usr/lib/systemd/system/$1" >/dev/null; }
unit_line tunnel-core.service 'ExecStart=/usr/bin/tunnel-core --config /etc/tunnel/core.yaml' \
  && ok "tunnel-core.service runs /usr/bin/tunnel-core with /etc/tunnel/core.yaml" \
  || fail "tunnel-core.service's ExecStart is not /usr/bin/tunnel-core --config /etc/tunnel/core.yaml"
unit_line tunnel-agent.service 'ExecStart=/usr/bin/tunnel-agent start --config /etc/tunnel/agent.yaml' \
  && ok "tunnel-agent.service runs /usr/bin/tunnel-agent with /etc/tunnel/agent.yaml" \
  || fail "tunnel-agent.service's ExecStart is not /usr/bin/tunnel-agent start --config /etc/tunnel/agent.yaml"
for unit in tunnel-core.service tunnel-agent.service; do
  for line in User=tunnel StateDirectory=tunnel ProtectSystem=strict NoNewPrivileges=yes \
    ProtectHome=yes PrivateTmp=yes; do
    unit_line "$unit" "$line" || fail "$unit lacks $line"
  done
done
unit_line tunnel-core.service 'RestartPreventExitStatus=2' \
  && unit_line tunnel-core.service 'CapabilityBoundingSet=CAP_NET_BIND_SERVICE' \
  && ok "tunnel-core.service: no restart on exit 2, CAP_NET_BIND_SERVICE only" \
  || fail "tunnel-core.service lacks RestartPreventExitStatus=2 or CapabilityBoundingSet=CAP_NET_BIND_SERVICE"
for name in core agent; do
  grep -qx 'data_dir: /var/lib/tunnel' "$root/etc/tunnel/$name.yaml" \
    && ok "/etc/tunnel/$name.yaml: data_dir /var/lib/tunnel" \
    || fail "/etc/tunnel/$name.yaml does not set data_dir: /var/lib/tunnel"
done
# docs/operations.md quotes each unit whole, between the marker comment and the next fence.
for unit in tunnel-core.service tunnel-agent.service; do
  awk -v marker="<!-- shipped unit: $unit -->" '
    $0 == marker { found = 1; next }
    found == 1 && /^```/ { if (inside) exit; inside = 1; next }
    inside { print }' docs/operations.md >"$work/doc-$unit"
  if [ ! -s "$work/doc-$unit" ]; then
    fail "docs/operations.md has no '<!-- shipped unit: $unit -->' followed by the unit"
  elif diff -u "$work/doc-$unit" "$root/usr/lib/systemd/system/$unit" >"$work/doc-diff"; then
    ok "docs/operations.md shows $unit as shipped"
  else
    fail "docs/operations.md's $unit differs from the shipped one:"
    cat "$work/doc-diff" >&2
  fi
done

# --- 3. systemd-analyze verify -----------------------------------------------------------
# verify wants ExecStart's binary at its path; a copy of the units whose ExecStart points
# into the extracted tree checks everything else before anything is installed.
if command -v systemd-analyze >/dev/null; then
  mkdir -p "$work/units"
  for unit in tunnel-core.service tunnel-agent.service; do
    sed "s|=/usr/bin/|=$root/usr/bin/|" "$root/usr/lib/systemd/system/$unit" >"$work/units/$unit"
  done
  if (cd "$work/units" && SYSTEMD_LOG_LEVEL=notice systemd-analyze verify \
    ./tunnel-core.service ./tunnel-agent.service) >"$work/verify.log" 2>&1 \
    && ! grep -q . "$work/verify.log"; then
    ok "systemd-analyze verify: clean"
  else
    fail "systemd-analyze verify:"
    cat "$work/verify.log" >&2
  fi
else
  echo "check-package: systemd-analyze not found; units not verified"
fi

# --- 4. lintian --------------------------------------------------------------------------
if command -v lintian >/dev/null; then
  # The package carries its overrides (/usr/share/lintian/overrides/tunnel); they show as
  # O: lines. Errors (E:) and warnings (W:) fail; info (I:) tags are printed only.
  lintian --show-overrides --display-info "$deb" >"$work/lintian.log" 2>&1 || true
  grep -v '^running with root privileges' "$work/lintian.log" | grep -v '^N:' >"$work/lintian.tags" || true
  if grep -q '^[EW]: ' "$work/lintian.tags"; then
    fail "lintian:"
    cat "$work/lintian.log" >&2
  elif ! grep -q '^O: ' "$work/lintian.tags" && [ -s deploy/debian/tunnel.lintian-overrides ]; then
    fail "lintian did not run or read no overrides:"
    cat "$work/lintian.log" >&2
  else
    ok "lintian: no errors or warnings beyond the overrides"
    sed 's/^/  lintian: /' "$work/lintian.tags"
  fi
else
  fail "lintian not found; run scripts/install-deps.sh"
fi

# --- 5. install, remove, purge -----------------------------------------------------------
install_test() {
  local status
  status="$(dpkg-query -W -f='${Status}' tunnel 2>/dev/null || true)"
  if [ -n "$status" ] && [ "$status" != "unknown ok not-installed" ]; then
    fail "install test: a package named tunnel is already on this machine ($status); not touching it"
    return
  fi
  if getent passwd tunnel >/dev/null || getent group tunnel >/dev/null || [ -e /var/lib/tunnel ] \
    || [ -e /etc/tunnel ]; then
    fail "install test: a user or group tunnel, /var/lib/tunnel or /etc/tunnel exists already; not touching it"
    return
  fi
  trap 'dpkg -P tunnel >/dev/null 2>&1 || true; cleanup_dirs' EXIT

  for round in first second; do
    if dpkg -i "$deb" >"$work/dpkg-i.log" 2>&1; then
      ok "dpkg -i ($round time)"
    else
      fail "dpkg -i ($round time):"
      cat "$work/dpkg-i.log" >&2
      return
    fi
  done

  local user_line
  user_line="$(getent passwd tunnel || true)"
  IFS=: read -r _ _ uid gid _ home shell <<<"$user_line"
  if [ -n "$user_line" ] && [ "$uid" -lt 1000 ] && [ "$home" = /var/lib/tunnel ] \
    && [ "$shell" = /usr/sbin/nologin ] && [ "$(getent group tunnel | cut -d: -f3)" = "$gid" ]; then
    ok "system user tunnel (uid $uid, group tunnel, home /var/lib/tunnel, no login shell)"
  else
    fail "user tunnel: '$user_line'"
  fi
  [ "$(stat -c '%U:%G %a' /var/lib/tunnel 2>/dev/null)" = "tunnel:tunnel 750" ] \
    && ok "/var/lib/tunnel is tunnel:tunnel 0750" \
    || fail "/var/lib/tunnel is '$(stat -c '%U:%G %a' /var/lib/tunnel 2>&1)', not tunnel:tunnel 750"
  [ "$(stat -c '%U:%G %a' /etc/tunnel 2>/dev/null)" = "root:tunnel 750" ] \
    && ok "/etc/tunnel is root:tunnel 0750" \
    || fail "/etc/tunnel is '$(stat -c '%U:%G %a' /etc/tunnel 2>&1)', not root:tunnel 750"

  local printed
  printed="$(/usr/bin/tunnel-core --version 2>&1 || true)"
  [ "$printed" = "tunnel-core $version" ] && ok "/usr/bin/tunnel-core --version: $printed" \
    || fail "/usr/bin/tunnel-core --version printed '$printed', not 'tunnel-core $version'"
  printed="$(/usr/bin/tunnel-agent version 2>&1 || true)"
  [ "$printed" = "tunnel-agent $version" ] && ok "/usr/bin/tunnel-agent version: $printed" \
    || fail "/usr/bin/tunnel-agent version printed '$printed', not 'tunnel-agent $version'"
  for name in core agent; do
    if setpriv --reuid=tunnel --regid=tunnel --init-groups \
      "/usr/bin/tunnel-$name" check-config "/etc/tunnel/$name.yaml" >"$work/check.log" 2>&1; then
      ok "tunnel-$name check-config /etc/tunnel/$name.yaml as user tunnel"
    else
      fail "tunnel-$name check-config /etc/tunnel/$name.yaml as user tunnel:"
      cat "$work/check.log" >&2
    fi
  done
  if command -v systemd-analyze >/dev/null; then
    if SYSTEMD_LOG_LEVEL=notice systemd-analyze verify /usr/lib/systemd/system/tunnel-core.service \
      /usr/lib/systemd/system/tunnel-agent.service >"$work/verify.log" 2>&1 \
      && ! grep -q . "$work/verify.log"; then
      ok "systemd-analyze verify of the installed units: clean"
    else
      fail "systemd-analyze verify of the installed units:"
      cat "$work/verify.log" >&2
    fi
  fi

  # The shipped config, as the unit runs it (user tunnel, in /var/lib/tunnel), on free
  # loopback ports: the core must be able to create its identity in the data dir.
  (cd /var/lib/tunnel && exec setpriv --reuid=tunnel --regid=tunnel --init-groups \
    /usr/bin/tunnel-core --config /etc/tunnel/core.yaml --agent-addr 127.0.0.1:0 \
    --http-addr 127.0.0.1:0 --admin-addr "") >"$work/core.out" 2>"$work/core.err" &
  local core_pid=$! waited=0
  while ! grep -q '^tunnel-core ready' "$work/core.out" && kill -0 "$core_pid" 2>/dev/null \
    && [ "$waited" -lt 600 ]; do
    sleep 0.1
    waited=$((waited + 1))
  done
  if grep -q '^tunnel-core ready' "$work/core.out"; then
    ok "tunnel-core started as user tunnel with /etc/tunnel/core.yaml"
  else
    fail "tunnel-core did not start with the shipped config:"
    cat "$work/core.out" "$work/core.err" >&2
  fi
  kill -TERM "$core_pid" 2>/dev/null || true
  wait "$core_pid" 2>/dev/null || true
  [ "$(stat -c '%U %a' /var/lib/tunnel/tls.key 2>/dev/null)" = "tunnel 600" ] \
    && ok "the core wrote /var/lib/tunnel/tls.key (tunnel, 0600)" \
    || fail "/var/lib/tunnel/tls.key is '$(stat -c '%U %a' /var/lib/tunnel/tls.key 2>&1)'"
  echo "# edited by check-package" >>/etc/tunnel/core.yaml

  if dpkg -r tunnel >"$work/dpkg-r.log" 2>&1; then ok "dpkg -r"; else fail "dpkg -r:"; cat "$work/dpkg-r.log" >&2; fi
  [ ! -e /usr/bin/tunnel-core ] && [ ! -e /usr/lib/systemd/system/tunnel-core.service ] \
    && ok "after dpkg -r: binaries and units gone" || fail "after dpkg -r: binaries or units left"
  [ -f /var/lib/tunnel/tls.key ] && getent passwd tunnel >/dev/null \
    && grep -q 'edited by check-package' /etc/tunnel/core.yaml \
    && ok "after dpkg -r: data, user and edited config kept" \
    || fail "after dpkg -r: data, user or config gone"

  if dpkg -P tunnel >"$work/dpkg-p.log" 2>&1; then ok "dpkg -P"; else fail "dpkg -P:"; cat "$work/dpkg-p.log" >&2; fi
  [ ! -e /var/lib/tunnel ] && ok "after dpkg -P: /var/lib/tunnel gone" || fail "after dpkg -P: /var/lib/tunnel left"
  ! getent passwd tunnel >/dev/null && ! getent group tunnel >/dev/null \
    && ok "after dpkg -P: user and group tunnel gone" || fail "after dpkg -P: user or group tunnel left"
  [ ! -e /etc/tunnel ] && ! dpkg-statoverride --list /etc/tunnel >/dev/null \
    && ok "after dpkg -P: /etc/tunnel and its stat override gone" \
    || fail "after dpkg -P: /etc/tunnel or its stat override left"
  [ -z "$(dpkg-query -W -f='${Status}' tunnel 2>/dev/null | grep -v not-installed)" ] \
    && ok "after dpkg -P: dpkg knows no tunnel package" || fail "after dpkg -P: dpkg still lists tunnel"
}

if [ "${TUNNEL_CI_INSTALL_TEST:-0}" = 1 ] && [ "$(id -u)" -eq 0 ]; then
  install_test
else
  echo "check-package: install test skipped (it runs as root with TUNNEL_CI_INSTALL_TEST=1;" \
    "it changes the machine: user tunnel, /usr/bin, /etc/tunnel, /var/lib/tunnel)"
fi

if [ "$failures" -gt 0 ]; then
  echo "check-package: $failures check(s) failed for $deb" >&2
  exit 1
fi
echo "check-package: $deb passed"
