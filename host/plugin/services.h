/* SPDX-License-Identifier: MIT */
/* services.h - the mh_services table the host hands to every plugin. */
#ifndef MH_SERVICES_H
#define MH_SERVICES_H

#include <modelhost/plugin.h>

/* Start the thread pool (n_threads <= 0: one per online CPU) and return
 * the process's service table.  Safe to call again to resize the pool. */
const mh_services *services_init(int n_threads);
void services_shutdown(void);
int services_threads(void);

/* Log level for svc->log (MH_LOG_*); default MH_LOG_WARN. */
void services_set_verbosity(int level);

#endif
