/* memwriter: a container workload that holds memory and keeps dirtying it.
 *
 *   memwriter [--mib N] [--rate-bytes R] [--counter PATH]
 *
 * Maps N MiB (default 64) of private anonymous memory and writes every page
 * once, then rewrites whole 4 KiB pages at R bytes per second (default
 * 5000000), paced against CLOCK_MONOTONIC with clock_nanosleep in 10 ms
 * ticks. Successive writes are a fixed odd stride of pages apart (modulo the
 * page count), so the dirty pages are spread over the whole buffer and every
 * page is rewritten once per pass; each rewrite stores a new sequence number
 * in the page, so a rewritten page always differs from its previous contents.
 * After a stall longer than one second (the process was frozen, checkpointed,
 * migrated) it does not catch up the missed writes: the pace restarts.
 *
 * Every 100 ms, once the memory is filled, it writes the next number of an
 * increasing counter (1, 2, 3, ...) to PATH.tmp and renames that to PATH
 * (default /data/c): a reader never sees a half-written file, and a restored
 * copy goes on from the last number, never from 1.
 *
 * Only plain system calls: one thread, no stdio, no descriptor kept open
 * between counter writes (each write opens, writes, closes, renames). It
 * refuses (exit 2) bad arguments and exits 1 when memory cannot be mapped
 * or the counter file cannot be written.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define TICK_NS (10L * 1000 * 1000)
#define COUNTER_NS (100L * 1000 * 1000)
#define NSEC 1000000000L

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NSEC + ts.tv_nsec;
}

static void sleep_until(int64_t t)
{
	struct timespec ts = { (time_t)(t / NSEC), (long)(t % NSEC) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static int parse(const char *s, unsigned long long *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno == 0 && end != s && *end == '\0' && s[0] != '-';
}

static void fill(unsigned char *page, uint64_t seq, uint64_t index)
{
	uint64_t *w = (uint64_t *)page;
	unsigned long i;

	for (i = 0; i < PAGE / sizeof(uint64_t); i++)
		w[i] = seq ^ (index << 20) ^ i;
}

static int write_counter(const char *path, const char *tmp, unsigned long n)
{
	char line[32];
	int len, fd;

	len = snprintf(line, sizeof(line), "%lu\n", n);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	if (write(fd, line, (size_t)len) != len) {
		close(fd);
		return -1;
	}
	if (close(fd) != 0)
		return -1;
	return rename(tmp, path);
}

int main(int argc, char **argv)
{
	unsigned long long mib = 64, rate = 5000000, v;
	const char *path = "/data/c";
	char tmp[4096];
	unsigned char *buf;
	unsigned long npages, stride, cursor = 0, counter = 0;
	uint64_t seq = 0, done = 0;
	int64_t start, next_tick, next_counter;
	int i;

	for (i = 1; i < argc; i++) {
		if (i + 1 >= argc)
			return 2;
		if (strcmp(argv[i], "--mib") == 0 && parse(argv[i + 1], &v) && v >= 1 && v <= (1ULL << 20))
			mib = v;
		else if (strcmp(argv[i], "--rate-bytes") == 0 && parse(argv[i + 1], &v) && v <= (1ULL << 32))
			rate = v;
		else if (strcmp(argv[i], "--counter") == 0 && strlen(argv[i + 1]) < sizeof(tmp) - 5)
			path = argv[i + 1];
		else
			return 2;
		i++;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);

	npages = (unsigned long)(mib << 20) / PAGE;
	buf = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		return 1;
	for (cursor = 0; cursor < npages; cursor++)
		fill(buf + cursor * PAGE, ++seq, cursor);
	/* an odd stride near a third of the buffer: coprime with the (power of
	 * two) page count, so one pass visits every page, far apart */
	stride = (npages / 3) | 1;
	while (stride > 1 && npages % stride == 0)
		stride -= 2;
	cursor = 0;

	start = now_ns();
	next_tick = start;
	next_counter = start;
	for (;;) {
		int64_t t = now_ns();
		uint64_t due;

		due = (uint64_t)((double)(t - start) / NSEC * (double)rate / PAGE);
		if (due > done + rate / PAGE + 1) {
			/* stalled for more than a second (frozen, checkpointed): restart the pace */
			start = t;
			done = 0;
			next_tick = t;
			if (next_counter < t)
				next_counter = t;
			due = 0;
		}
		for (; done < due; done++) {
			fill(buf + cursor * PAGE, ++seq, cursor);
			cursor = (cursor + stride) % npages;
		}
		if (t >= next_counter) {
			if (write_counter(path, tmp, ++counter) != 0)
				return 1;
			next_counter += COUNTER_NS;
			if (next_counter <= t)
				next_counter = t + COUNTER_NS;
		}
		next_tick += TICK_NS;
		if (next_tick <= t)
			next_tick = t + TICK_NS;
		if (next_tick > next_counter)
			sleep_until(next_counter);
		else
			sleep_until(next_tick);
	}
}
