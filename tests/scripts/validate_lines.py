#!/usr/bin/python3
"""Validates JSON lines against ftptrace's JSON Schema (2020-12) with the
`jsonschema` package (Debian's python3-jsonschema), formats checked.

usage: validate_lines.py SCHEMA FILE...   (FILE "-" is standard input)

Prints each invalid line (at most 20) with its file, number and why, and
exits 1 if any; exits 2 if the validator itself is missing."""

import json
import sys

try:
    import jsonschema
except ImportError:
    print("validate_lines: the python3 jsonschema package is not installed", file=sys.stderr)
    sys.exit(2)


def lines(path):
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")
    with stream:
        yield from enumerate(stream, start=1)


def main():
    schema_path, *paths = sys.argv[1:]
    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    checked = bad = 0
    for path in paths:
        for number, text in lines(path):
            if not text.strip():
                continue
            checked += 1
            try:
                line = json.loads(text)
            except json.JSONDecodeError as e:
                errors = [f"not JSON: {e}"]
            else:
                errors = [
                    f"{'/'.join(map(str, e.absolute_path)) or '<line>'}: {e.message}"
                    for e in validator.iter_errors(line)
                ]
                if errors and isinstance(line, dict):
                    # `oneOf` hides the branch that matters: name it.
                    branch = schema["$defs"].get(line.get("type"))
                    if line.get("type") == "event":
                        branch = next(
                            (
                                b
                                for b in branch["oneOf"]
                                if b["properties"]["kind"].get("const") == line.get("kind")
                            ),
                            None,
                        )
                    if branch is not None:
                        sub = jsonschema.Draft202012Validator(
                            {**branch, "$defs": schema["$defs"]},
                            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
                        )
                        errors = [
                            f"{'/'.join(map(str, e.absolute_path)) or '<line>'}: {e.message}"
                            for e in sub.iter_errors(line)
                        ] or errors
            if errors:
                bad += 1
                if bad <= 20:
                    print(f"{path}:{number}: {'; '.join(errors)[:600]}\n  {text.strip()[:400]}")
    print(f"validate_lines: {checked} line(s), {bad} invalid", file=sys.stderr)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
