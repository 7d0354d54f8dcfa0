/* Appends 1, 2, 3, ... (one per line) to argv[1] every 100 ms through one
 * O_APPEND descriptor kept open for the whole run. A restored copy must go on
 * from the last number it wrote, never start again at 1. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char line[32];
	long n = 0;
	int fd;

	if (argc < 2)
		return 2;
	fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd < 0)
		return 1;
	for (;;) {
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		int len;

		n++;
		len = snprintf(line, sizeof(line), "%ld\n", n);
		if (write(fd, line, len) != len)
			return 1;
		nanosleep(&ts, NULL);
	}
}
