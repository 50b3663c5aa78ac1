#ifndef CFLOWS_POSTGRES_SHIM_H
#define CFLOWS_POSTGRES_SHIM_H
/* Debian's libpq-dev puts libpq's headers in /usr/include/postgresql, which no compiler searches by default.
 * Naming the folder here needs no include path (libpq-fe.h finds postgres_ext.h beside itself), so the build does not
 * depend on pkg-config or on libpq.pc being found. */
#include <postgresql/libpq-fe.h>
#endif
