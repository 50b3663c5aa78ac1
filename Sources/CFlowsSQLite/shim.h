#ifndef CFLOWS_SQLITE_SHIM_H
#define CFLOWS_SQLITE_SHIM_H
#include <sqlite3.h>

/* SQLITE_TRANSIENT is a cast macro Swift cannot import: bind copies the bytes. */
static inline sqlite3_destructor_type cflows_sqlite_transient(void) { return SQLITE_TRANSIENT; }

/* sqlite3_db_config is variadic, which Swift cannot call: turns the connection's lookaside allocator off. */
static inline int cflows_sqlite_disable_lookaside(sqlite3 *db) {
    return sqlite3_db_config(db, SQLITE_DBCONFIG_LOOKASIDE, (void *)0, 0, 0);
}
#endif
