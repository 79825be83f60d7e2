/* pvtime: the one monotonic clock every module reads (seconds, arbitrary
 * origin). Thread-safe; no state. */
#ifndef PIVOT_PVTIME_H
#define PIVOT_PVTIME_H

double pv_now(void);

#endif
