"""Drives a command through a real pseudo-terminal, as a person at a keyboard would.

    python3 pty_driver.py SCRIPT_JSON -- command args...

SCRIPT_JSON is a list of steps: {"expect": "text"} waits (up to "timeout" s, default 60) until the terminal has shown
the text since the previous expect; {"send": "text"} types it ("\\n" is Enter, "\\x03" Ctrl-C, "\\x04" Ctrl-D);
{"fill": "fifo", "with": "file"} writes the file's bytes into a named pipe if the command is reading it (a test's way
to hold a command at a known point until then).
Prints {"transcript": ..., "exit_code": ...} as JSON; exits 3 if an expected text never appeared."""
import errno
import json
import os
import pty
import select
import sys
import time


def main() -> None:
    steps = json.loads(sys.argv[1])
    command = sys.argv[sys.argv.index("--") + 1:]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(command[0], command)
    transcript = b""
    seen = 0

    def read_some(deadline: float) -> bool:
        nonlocal transcript
        wait = max(0.0, deadline - time.time())
        ready, _, _ = select.select([fd], [], [], min(wait, 0.2))
        if not ready:
            return True
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return False
        if not chunk:
            return False
        transcript += chunk
        return True

    failed = None
    for step in steps:
        if "send" in step:
            os.write(fd, step["send"].encode())
            continue
        if "fill" in step:
            # Without waiting for a reader: a command that stopped before it reached the pipe never opens it.
            try:
                pipe = os.open(step["fill"], os.O_WRONLY | os.O_NONBLOCK)
            except OSError as err:
                if err.errno != errno.ENXIO:
                    raise
                continue
            with open(step["with"], "rb") as source:
                os.write(pipe, source.read())
            os.close(pipe)
            continue
        needle = step["expect"].encode()
        deadline = time.time() + step.get("timeout", 60)
        while needle not in transcript[seen:]:
            if time.time() > deadline or not read_some(deadline):
                failed = step["expect"]
                break
        if failed is not None:
            break
        seen = transcript.index(needle, seen) + len(needle)
    # A missing expectation ends the run at once: the program is stuck or wrong, not slow.
    deadline = time.time() + (0 if failed is not None else 60)
    status = None
    while time.time() < deadline:
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            status = code
            break
        read_some(time.time() + 0.2)
    if status is None:
        os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
    while read_some(time.time() + 0.1):
        if not select.select([fd], [], [], 0)[0]:
            break
    exit_code = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8
    print(json.dumps({"transcript": transcript.decode("utf-8", "replace"), "exit_code": exit_code, "missing": failed}))
    sys.exit(3 if failed is not None else 0)


if __name__ == "__main__":
    main()
