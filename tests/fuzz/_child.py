"""Run ``gpuvalid`` with argv, then record this process's peak resident memory (``ru_maxrss``).

Used by the fuzz runner: ``python _child.py run MAP …`` with ``FUZZ_RSS_FILE`` naming the file that
receives the peak RSS in kB and ``FUZZ_AS_LIMIT`` an optional address-space cap in bytes.
"""

import os
import resource
import sys


def main() -> int:
    limit = int(os.environ.get("FUZZ_AS_LIMIT", "0") or 0)
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    rc = 0
    try:
        from gpuvalid.cli import app

        app(args=sys.argv[1:], prog_name="gpuvalid")
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        out = os.environ.get("FUZZ_RSS_FILE")
        if out:
            with open(out, "w") as fh:
                fh.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
    return rc


if __name__ == "__main__":
    sys.exit(main())
