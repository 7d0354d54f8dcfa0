/* Keeps a 256-bit pattern in ymm15 for its whole life (no libc calls after
 * start: raw syscalls only, so nothing clobbers the register) and appends
 * 1, 2, 3 ... to argv[1] every 100 ms. If ymm15 ever differs from the
 * pattern it exits with status 4: a restore that loses the xsave area (SSE
 * or AVX upper halves) kills it. */
static long sys3(long n, long a, long b, long c)
{
	long r;

	__asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
	return r;
}

static const unsigned char pattern[32] __attribute__((aligned(32))) = {
	0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10,
	0xa5, 0x5a, 0xc3, 0x3c, 0x0f, 0xf0, 0x96, 0x69, 0x11, 0x22, 0x44, 0x88, 0x12, 0x34, 0x56, 0x78,
};

int main(int argc, char **argv)
{
	long n, fd;

	if (argc < 2)
		return 2;
	fd = sys3(2, (long)argv[1], 01 | 0100 | 02000, 0644); /* open O_WRONLY|O_CREAT|O_APPEND */
	if (fd < 0)
		return 1;
	__asm__ volatile("vmovdqu %0, %%ymm15" : : "m"(pattern) : "xmm15");
	for (n = 1;; n++) {
		unsigned char out[32];
		char buf[24];
		long ts[2] = { 0, 100 * 1000 * 1000 };
		int i = sizeof(buf), k;
		long v = n;

		buf[--i] = '\n';
		do {
			buf[--i] = (char)('0' + v % 10);
			v /= 10;
		} while (v);
		sys3(1, fd, (long)(buf + i), sizeof(buf) - i);
		sys3(35, (long)ts, 0, 0); /* nanosleep */
		__asm__ volatile("vmovdqu %%ymm15, %0" : "=m"(out));
		for (k = 0; k < 32; k++)
			if (out[k] != pattern[k])
				sys3(60, 4, 0, 0); /* exit(4) */
	}
}
