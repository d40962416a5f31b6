/* SPDX-License-Identifier: MIT */
/* metrics.h - the counters behind GET /metrics (Prometheus text format).
 * One set per process; every function is thread-safe. */
#ifndef MH_METRICS_H
#define MH_METRICS_H

#include "server/engine.h"

void metrics_request(const char *path, int status);
void metrics_tokens(int prompt, int generated);
void metrics_ttft(double seconds);
void metrics_token_latency(double seconds);
void metrics_reload(int ok);
/* The whole page, malloc'd; NULL on out of memory. */
char *metrics_render(const engine_stats *st);

#endif
