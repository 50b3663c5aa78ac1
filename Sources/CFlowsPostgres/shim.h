#ifndef CFLOWS_POSTGRES_SHIM_H
#define CFLOWS_POSTGRES_SHIM_H
/* Debian's libpq-dev puts libpq's headers in /usr/include/postgresql, which no compiler searches by default.
 * Naming the folder here needs no include path (libpq-fe.h finds postgres_ext.h beside itself), so the build does not
 * depend on pkg-config or on libpq.pc being found. */
#include <postgresql/libpq-fe.h>
#include <dlfcn.h>

/* libpq is not linked (the module map has no `link`): it is loaded with dlopen the first time a connection is made.
 * Linked, it and what it needs (libssl, Kerberos, LDAP, GnuTLS: 21 more libraries) would cost every process about
 * 4 MiB and 4 ms at startup, PostgreSQL configured or not. These are the functions used, called through a table. */
#define CFLOWS_PQ_FUNCTIONS(X) \
    X(PQconninfoParse) X(PQconninfoFree) X(PQfreemem) X(PQconnectStartParams) X(PQconnectPoll) X(PQresetStart) \
    X(PQresetPoll) X(PQfinish) X(PQstatus) X(PQsocket) X(PQerrorMessage) X(PQconnectionNeedsPassword) \
    X(PQsetErrorVerbosity) X(PQsetNoticeProcessor) X(PQtransactionStatus) X(PQprepare) X(PQexecPrepared) X(PQexec) \
    X(PQclear) X(PQresultStatus) X(PQresultErrorField) X(PQresultErrorMessage) X(PQntuples) X(PQnfields) \
    X(PQftype) X(PQgetisnull) X(PQgetvalue) X(PQgetlength) X(PQgetCancel) X(PQfreeCancel) X(PQcancel)

#define CFLOWS_PQ_FIELD(name) __typeof__(name) *_Nonnull name;
/* libpq's functions, by their own names. */
struct cflows_pq {
    CFLOWS_PQ_FUNCTIONS(CFLOWS_PQ_FIELD)
};
#undef CFLOWS_PQ_FIELD

/* Loads libpq.so.5 (Debian's libpq5) and fills `table`; returns NULL, or why it failed (dlerror's text, or the
 * missing function's name) without filling the rest. */
static inline const char *_Nullable cflows_pq_load(struct cflows_pq *_Nonnull table) {
    void *handle = dlopen("libpq.so.5", RTLD_NOW | RTLD_LOCAL);
    if (!handle) return dlerror();
#define CFLOWS_PQ_LOOKUP(name) \
    if (!(table->name = (__typeof__(name) *)dlsym(handle, #name))) return "libpq.so.5 has no function " #name;
    CFLOWS_PQ_FUNCTIONS(CFLOWS_PQ_LOOKUP)
#undef CFLOWS_PQ_LOOKUP
    return 0;
}
#endif
