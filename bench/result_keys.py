#!/usr/bin/python3
"""Compares the key structure of two bench result JSON files (bench/results/*.json): which
key paths one has and the other lacks. Values are ignored; a list counts as one element
whose keys are the union over its elements. Exit status 0 when the structures match, 1 when
they differ, 2 on a usage or read error.

    python3 bench/result_keys.py OLD.json NEW.json      # the differences, one path a line
    python3 bench/result_keys.py --list RUN.json        # every key path of one file
"""
import argparse
import json
import sys


def key_paths(value, prefix=""):
    """Every key path under `value`: "a.b", with "[]" standing for any list element."""
    out = set()
    if isinstance(value, dict):
        for k, v in value.items():
            p = "%s.%s" % (prefix, k) if prefix else str(k)
            out.add(p)
            out |= key_paths(v, p)
    elif isinstance(value, list):
        for v in value:
            out |= key_paths(v, prefix + "[]")
    return out


def load(name):
    try:
        with open(name) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        sys.exit("result_keys: %s: %s" % (name, e))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="print the key paths of one file")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    if args.list:
        for name in args.files:
            print("\n".join(sorted(key_paths(load(name)))))
        return 0
    if len(args.files) != 2:
        ap.error("two files to compare (or --list)")
    a, b = (key_paths(load(n)) for n in args.files)
    for p in sorted(a - b):
        print("- %s" % p)
    for p in sorted(b - a):
        print("+ %s" % p)
    print("%d key paths in %s, %d in %s, %d only in the first, %d only in the second"
          % (len(a), args.files[0], len(b), args.files[1], len(a - b), len(b - a)),
          file=sys.stderr)
    return 0 if a == b else 1


if __name__ == "__main__":
    sys.exit(main())
