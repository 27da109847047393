"""Exits 0 when every pinned requirement of the file given (name==version lines, extras
allowed) is installed at exactly that version; else lists what is missing and exits 1.
Reads the distributions' metadata, so the file is the one list of what the tests need."""
import re
import sys
from importlib.metadata import PackageNotFoundError, version

missing = []
with open(sys.argv[1]) as requirements:
    for line in requirements:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        pin = re.fullmatch(r"([A-Za-z0-9._-]+)(\[[^\]]*\])?==([^\s;]+)", line)
        if not pin:
            sys.exit(f"{sys.argv[1]}: {line!r} is not a pin (name==version)")
        name, _, wanted = pin.groups()
        try:
            found = version(name)
        except PackageNotFoundError:
            found = None
        if found != wanted:
            missing.append(f"{name}=={wanted} (installed: {found or 'none'})")
if missing:
    print("missing Python test readers: " + ", ".join(missing), file=sys.stderr)
    sys.exit(1)
