/* Every 100 ms appends "N MONO_NS REAL_S" to argv[1], reading the clocks with
 * clock_gettime (served by the vDSO). Exits with status 3 if CLOCK_MONOTONIC
 * ever goes backwards, so a restore that breaks the vDSO shows as a crash or
 * as that exit status. */
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char line[96];
	long long prev = 0;
	long n = 0;
	int fd;

	if (argc < 2)
		return 2;
	fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd < 0)
		return 1;
	for (;;) {
		struct timespec mono, real, ts = { 0, 100 * 1000 * 1000 };
		long long now;
		int len;

		clock_gettime(CLOCK_MONOTONIC, &mono);
		clock_gettime(CLOCK_REALTIME, &real);
		now = (long long)mono.tv_sec * 1000000000LL + mono.tv_nsec;
		if (now < prev)
			return 3;
		prev = now;
		n++;
		len = snprintf(line, sizeof(line), "%ld %lld %lld\n", n, now, (long long)real.tv_sec);
		if (write(fd, line, len) != len)
			return 1;
		nanosleep(&ts, NULL);
	}
}
