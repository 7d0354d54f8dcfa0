"""Leaves two unreaped children: one exited with status 7, one killed by
SIGUSR1. Appends "N" to argv[1] every 100 ms; once argv[1] + ".reap" exists
it reaps both and appends "reaped A B" (their exit codes as
os.waitstatus_to_exitcode gives them: 7 and -10)."""

import os
import signal
import sys
import time

a = os.fork()
if a == 0:
    os._exit(7)
b = os.fork()
if b == 0:
    signal.pause()
    os._exit(0)
os.kill(b, signal.SIGUSR1)
time.sleep(0.2)
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
n = 0
reaped = False
while True:
    n += 1
    os.write(fd, f"{n}\n".encode())
    if not reaped and os.path.exists(sys.argv[1] + ".reap"):
        sa = os.waitpid(a, 0)[1]
        sb = os.waitpid(b, 0)[1]
        os.write(fd, f"reaped {os.waitstatus_to_exitcode(sa)} {os.waitstatus_to_exitcode(sb)}\n".encode())
        reaped = True
    time.sleep(0.1)
