/* clock.h — the monotonic clock in milliseconds, for timers and deadlines, and in
 * microseconds, for the group commit's timings. */
#ifndef MILTERD_CLOCK_H
#define MILTERD_CLOCK_H

/* Milliseconds on CLOCK_MONOTONIC: not wall time, never goes back. */
long long	clock_ms(void);
/* Microseconds on the same clock. */
long long	clock_us(void);

#endif
