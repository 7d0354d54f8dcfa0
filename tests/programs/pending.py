"""Blocks SIGUSR1 and SIGUSR2, sends itself both (SIGUSR2 to the main thread
only), then appends "N PENDING" to argv[1] every 100 ms, PENDING being the
sorted signal numbers pending for the main thread."""

import os
import signal
import sys
import threading
import time

signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGUSR2})
os.kill(os.getpid(), signal.SIGUSR1)
signal.pthread_kill(threading.get_ident(), signal.SIGUSR2)
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
n = 0
while True:
    n += 1
    pend = ",".join(str(int(s)) for s in sorted(signal.sigpending()))
    os.write(fd, f"{n} {pend}\n".encode())
    time.sleep(0.1)
