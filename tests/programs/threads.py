"""Three worker threads count; the main thread appends "N c0 c1 c2" to argv[1]
every 100 ms. After a restore every counter must keep growing from where it
was (each thread was restored with its registers, stack and TLS)."""

import os
import sys
import threading
import time

counts = [0, 0, 0]


def work(i: int) -> None:
    while True:
        counts[i] += 1
        time.sleep(0.01)


def main() -> None:
    for i in range(3):
        threading.Thread(target=work, args=(i,), daemon=True).start()
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    n = 0
    while True:
        n += 1
        os.write(fd, f"{n} {counts[0]} {counts[1]} {counts[2]}\n".encode())
        time.sleep(0.1)


if __name__ == "__main__":
    main()
