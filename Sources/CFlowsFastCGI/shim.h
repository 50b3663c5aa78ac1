#ifndef CFLOWS_FASTCGI_SHIM_H
#define CFLOWS_FASTCGI_SHIM_H
/* Only the re-entrant libfcgi API (fcgiapp.h); never fcgi_stdio.h, which redefines stdio. */
#include <fcgiapp.h>
#include <malloc.h>
#include <sys/prctl.h>

/* glibc's arena limit (M_ARENA_MAX is a macro Swift does not import); returns mallopt's result (1 on success). */
static inline int cflows_set_malloc_arena_max(int arenas) {
    return mallopt(M_ARENA_MAX, arenas);
}

/* A fixed mmap threshold (setting it turns off glibc's dynamic one, which rises to the size of the largest block
 * freed, up to 32 MiB, after which big blocks come from the heap and keep it large); returns 1 on success. */
static inline int cflows_set_malloc_mmap_threshold(int bytes) {
    return mallopt(M_MMAP_THRESHOLD, bytes);
}

/* Asks the kernel to send `sig` to the calling process when its parent dies (prctl is variadic: Swift cannot call
 * it); returns 0 on success. */
static inline int cflows_set_parent_death_signal(int sig) {
    return prctl(PR_SET_PDEATHSIG, (unsigned long)sig, 0UL, 0UL, 0UL);
}
#endif
