#!/usr/bin/env python3
"""clang-tidy with the root .clang-tidy on every translation unit of src/ and apps/ (the
first-party sources, tests included; not bench/ or fuzz/) in a build's compile_commands.json,
each finding an error, two units at a time. Headers are checked as part of the units that
include them (HeaderFilterRegex in .clang-tidy), never as units of their own.

    scripts/clang-tidy.py [--build-dir build/release] [--jobs 2] [--no-cache] [FILE...]

A full run (96 units) takes about 12 minutes of CPU, 6 on two idle cores (34 wall on a
shared, loaded machine), most of it in asio's headers. So a clean result is remembered per
unit in $TUNNEL_TIDY_CACHE (default ~/.cache/tunnel-clang-tidy),
keyed by the SHA-256 of: clang-tidy's version, .clang-tidy, the unit's compile command (with
the checkout's path taken out, so another clone of the same commit hits), and the contents of
the source file and of every header it includes. The headers come from ninja's dependency log
(`ninja -t deps`), so the build directory must have been built; a unit whose dependencies are
unknown or stale is always checked. What the key cannot see: a header included only when
clang preprocesses (the log records GCC's view); this project has none of its own.
Units with findings are never cached. Exit status: 0 clean, 1 findings, 2 usage or setup.
"""
import argparse
import concurrent.futures
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIRS = ("src/", "apps/")


def sha256_file(path, memo):
    digest = memo.get(path)
    if digest is None:
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        memo[path] = digest
    return digest


def ninja_deps(build_dir):
    """Maps each object (relative to build_dir) to its dependency files, or None if stale."""
    out = subprocess.run(["ninja", "-C", build_dir, "-t", "deps"], capture_output=True,
                         text=True, check=False).stdout
    deps, current = {}, None
    for line in out.splitlines():
        if not line.strip():
            current = None
        elif not line.startswith(" "):
            target = line.split(":", 1)[0]
            current = [] if "(VALID)" in line else None
            deps[target] = current
        elif current is not None:
            current.append(os.path.normpath(os.path.join(build_dir, line.strip())))
    return deps


def object_of(entry):
    """The object file a compile command writes (CMake 3.25 records no "output" field)."""
    if entry.get("output"):
        return entry["output"]
    args = entry.get("arguments") or shlex.split(entry.get("command", ""))
    for flag, value in zip(args, args[1:]):
        if flag == "-o":
            return value
    return None


def unit_key(entry, build_dir, deps, base, memo):
    objects = deps.get(object_of(entry) or "")
    if not objects:
        return None
    h = hashlib.sha256(base)
    command = entry.get("command") or " ".join(entry.get("arguments", []))
    h.update(command.replace(ROOT, "@ROOT@").encode())
    h.update(os.path.relpath(entry["file"], ROOT).encode())
    try:
        h.update(sha256_file(entry["file"], memo).encode())
        for path in sorted(set(objects)):
            h.update(path.replace(ROOT, "@ROOT@").encode())
            h.update(sha256_file(path, memo).encode())
    except OSError:
        return None
    return h.hexdigest()


def run_tidy(build_dir, path):
    started = time.monotonic()
    proc = subprocess.run(["clang-tidy", "-p", build_dir, "--quiet", "--warnings-as-errors=*",
                           path], capture_output=True, text=True, check=False)
    # "N warnings generated." counts the suppressed ones in system headers: not findings.
    lines = [l for l in (proc.stdout + proc.stderr).splitlines()
             if not l.endswith(" warnings generated.") and not l.endswith(" warning generated.")]
    return proc.returncode, "\n".join(lines), time.monotonic() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", default=os.path.join(ROOT, "build/release"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("files", nargs="*", help="only these sources (paths in the checkout)")
    args = parser.parse_args()

    build_dir = os.path.abspath(args.build_dir)
    db_path = os.path.join(build_dir, "compile_commands.json")
    if not os.path.exists(db_path):
        print(f"clang-tidy: {db_path} not found; configure the build first "
              "(scripts/build.sh release)", file=sys.stderr)
        return 2
    with open(db_path) as f:
        entries = json.load(f)
    wanted = {os.path.abspath(p) for p in args.files}
    units = [e for e in entries
             if os.path.relpath(e["file"], ROOT).startswith(DIRS)
             and (not wanted or os.path.abspath(e["file"]) in wanted)]
    if not units:
        print("clang-tidy: no translation unit to check", file=sys.stderr)
        return 2

    cache_dir = os.environ.get("TUNNEL_TIDY_CACHE",
                               os.path.expanduser("~/.cache/tunnel-clang-tidy"))
    version = subprocess.run(["clang-tidy", "--version"], capture_output=True, text=True,
                             check=True).stdout
    with open(os.path.join(ROOT, ".clang-tidy"), "rb") as f:
        base = version.encode() + f.read()
    deps = {} if args.no_cache else ninja_deps(build_dir)
    memo = {}
    todo, cached = [], 0
    for entry in units:
        key = None if args.no_cache else unit_key(entry, build_dir, deps, base, memo)
        if key and os.path.exists(os.path.join(cache_dir, key)):
            cached += 1
        else:
            todo.append((entry["file"], key))

    started = time.monotonic()
    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(run_tidy, build_dir, path): (path, key) for path, key in todo}
        for future in concurrent.futures.as_completed(futures):
            path, key = futures[future]
            code, output, seconds = future.result()
            rel = os.path.relpath(path, ROOT)
            if code == 0 and not output.strip():
                print(f"clang-tidy: ok {rel} ({seconds:.0f}s)")
                if key:
                    os.makedirs(cache_dir, exist_ok=True)
                    open(os.path.join(cache_dir, key), "w").close()
            else:
                failed += 1
                print(f"clang-tidy: FINDINGS in {rel}:\n{output}", file=sys.stderr)
    print(f"clang-tidy: {len(units)} units, {cached} clean in the cache, {len(todo)} checked "
          f"in {time.monotonic() - started:.0f}s, {failed} with findings")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
