/* Deadlines on CLOCK_MONOTONIC for the wait helpers. */
#ifndef OCIRT_CLOCK_H
#define OCIRT_CLOCK_H

#include <time.h>

/* Milliseconds since an arbitrary start, monotonic. */
static inline long long ocirt_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Deadline for a timeout in ms; -1 (wait forever) stays -1. */
static inline long long ocirt_deadline(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : ocirt_now_ms() + timeout_ms;
}

/* Milliseconds left until `deadline`, never below 0; -1 for no deadline. */
static inline int ocirt_ms_left(long long deadline)
{
	if (deadline < 0)
		return -1;
	long long left = deadline - ocirt_now_ms();
	return left < 0 ? 0 : (int)left;
}

/* The smaller of two poll timeouts, where -1 means infinite. */
static inline int ocirt_min_timeout(int a, int b)
{
	if (a < 0)
		return b;
	if (b < 0)
		return a;
	return a < b ? a : b;
}

/* Sleep `us` microseconds, then double it up to `max_us` (adaptive
 * backoff); -1 with EINTR if a signal cut the sleep short. */
static inline int ocirt_backoff(int *us, int max_us)
{
	struct timespec ts = {0, (long)*us * 1000};
	*us = *us * 2 > max_us ? max_us : *us * 2;
	return nanosleep(&ts, NULL);
}

#endif
