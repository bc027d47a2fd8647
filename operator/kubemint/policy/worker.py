"""The process that evaluates CEL conditions for the token server (`kubemint.policy.sandbox`).

One request per line on stdin, `{"source": …, "request": {…}, "claims": {…}, "tenantClaims":
{…}}`, one answer per line on stdout, `{"allows": true|false, "seconds": <CPU time>}`; "ready"
first. The parent kills it when an answer is late, so it needs no deadline of its own; its
address space is capped (argv[1], bytes) so an expression that builds huge lists ends this
process, not the server.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections import OrderedDict

CACHE = 512  # compiled programs kept, by source


def main(argv: list[str]) -> int:
    if len(argv) > 1 and int(argv[1]) > 0:
        resource.setrlimit(resource.RLIMIT_AS, (int(argv[1]), int(argv[1])))
    import cel  # after the limit: everything this process allocates counts

    programs: OrderedDict[str, cel.Program | None] = OrderedDict()
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        message = json.loads(line)
        source = message["source"]
        program = programs.get(source)
        if program is None:
            try:
                program = cel.compile(source)
            except Exception:
                program = None  # the server compiled it already; deny if this one cannot
            programs[source] = program
            if len(programs) > CACHE:
                programs.popitem(last=False)
        else:
            programs.move_to_end(source)
        started = time.thread_time()  # CPU time: a busy machine does not make it slow
        try:
            # The shape of kubemint.policy.expressions.variables, rebuilt here: this process
            # imports nothing of kubemint, so its memory limit covers only CEL.
            variables = {
                "request": message["request"],
                "claims": message["claims"],
                "tenantClaims": message.get("tenantClaims") or {},
            }
            allows = program is not None and program.execute(variables) is True
        except Exception:  # any evaluation failure denies, as in-process
            allows = False
        seconds = time.thread_time() - started
        out.write(json.dumps({"allows": allows, "seconds": seconds}) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (BrokenPipeError, KeyboardInterrupt):
        sys.exit(0)  # the server went away
