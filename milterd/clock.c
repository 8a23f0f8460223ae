/* clock.c — the monotonic clock, one definition for the DNS cache, the workers'
 * hold-up watch, the token filter, milterctl follow and the group commit's timings. */
#include <time.h>

#include "clock.h"

long long
clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long
clock_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
