#ifndef CFLOWS_ATOMICS_SHIM_H
#define CFLOWS_ATOMICS_SHIM_H
#include <stdint.h>

/* Atomic operations on raw (memory-mapped) memory, which Swift's Atomic cannot be placed on. Inline: no call,
   no system call; relaxed adds are one locked instruction on x86-64 and an LSE add or LL/SC loop on arm64. */

/* Adds `value` to a counter other threads or processes may read at any time. */
static inline void cflows_add_relaxed(int64_t *counter, int64_t value) {
    __atomic_fetch_add(counter, value, __ATOMIC_RELAXED);
}

/* Reads a counter another thread or process may be adding to. */
static inline int64_t cflows_load_relaxed(const int64_t *counter) {
    return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

/* Raises `counter` to `value` unless it already is at least that. */
static inline void cflows_raise_relaxed(int64_t *counter, int64_t value) {
    int64_t seen = __atomic_load_n(counter, __ATOMIC_RELAXED);
    while (seen < value
           && !__atomic_compare_exchange_n(counter, &seen, value, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

/* Publishes a slot: every write before this one is visible to a reader that sees `value` with the acquire load. */
static inline void cflows_store_release(uint32_t *flag, uint32_t value) {
    __atomic_store_n(flag, value, __ATOMIC_RELEASE);
}

/* Reads a slot's publication flag; the slot's earlier writes are visible once it is nonzero. */
static inline uint32_t cflows_load_acquire(const uint32_t *flag) {
    return __atomic_load_n(flag, __ATOMIC_ACQUIRE);
}
#endif
