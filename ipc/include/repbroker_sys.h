/*
 * The system calls and macros Swift cannot express directly: epoll with an unpacked event struct, eventfd,
 * SO_PEERCRED, SCM_RIGHTS and C11 atomics on memory Swift does not own. Every symbol is prefixed rb_.
 */
#ifndef REPBROKER_SYS_H
#define REPBROKER_SYS_H

#include <stdint.h>
#include <stdatomic.h>
#include <sys/types.h>

typedef struct rb_epoll_event {
    uint32_t events;
    uint64_t data;
} rb_epoll_event;

enum { RB_EPOLL_CTL_ADD = 1, RB_EPOLL_CTL_DEL = 2, RB_EPOLL_CTL_MOD = 3 };

int rb_epoll_create(void);
int rb_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data);
/* Waits like epoll_wait and copies the (packed) kernel events into `events`. */
int rb_epoll_wait(int epfd, rb_epoll_event *events, int max_events, int timeout_ms);
int rb_eventfd(unsigned int initial);
/* accept4 with SOCK_CLOEXEC | SOCK_NONBLOCK. */
int rb_accept_nonblocking(int listener);

/* Credentials of the process at the other end of a Unix socket. */
int rb_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid);

/* Hands freed heap memory back to the system (glibc's malloc_trim); 1 when some was released. */
int rb_malloc_trim(void);

/* A sealed memfd of `size` bytes (no name in any file system; cannot shrink or grow); -1 with errno. */
int rb_memfd_sealed(const char *name, uint64_t size);
/* Whether `fd` carries the seals rb_memfd_sealed sets. */
int rb_memfd_is_sealed(int fd);

/* sendmsg of `length` bytes with up to 4 descriptors attached (SCM_RIGHTS), MSG_NOSIGNAL. */
ssize_t rb_send_with_fds(int socket_fd, const void *bytes, size_t length, const int *fds, int fd_count);
/* recvmsg into `bytes`; received descriptors (close-on-exec) go to `fds`, their number to `fd_count`. */
ssize_t rb_receive_with_fds(int socket_fd, void *bytes, size_t length, int *fds, int max_fds, int *fd_count);

/* poll on two descriptors for reading; returns a bitmask: 1 first readable, 2 second readable; -1 on error. */
int rb_poll_two(int first, int second, int timeout_ms);

static inline uint64_t rb_atomic_load_acquire_u64(const uint64_t *p) {
    return atomic_load_explicit((_Atomic uint64_t *)p, memory_order_acquire);
}
static inline void rb_atomic_store_release_u64(uint64_t *p, uint64_t v) {
    atomic_store_explicit((_Atomic uint64_t *)p, v, memory_order_release);
}
static inline uint32_t rb_atomic_load_acquire_u32(const uint32_t *p) {
    return atomic_load_explicit((_Atomic uint32_t *)p, memory_order_acquire);
}
static inline void rb_atomic_store_release_u32(uint32_t *p, uint32_t v) {
    atomic_store_explicit((_Atomic uint32_t *)p, v, memory_order_release);
}
static inline uint32_t rb_atomic_load_seq_cst_u32(const uint32_t *p) {
    return atomic_load_explicit((_Atomic uint32_t *)p, memory_order_seq_cst);
}
static inline void rb_atomic_store_seq_cst_u32(uint32_t *p, uint32_t v) {
    atomic_store_explicit((_Atomic uint32_t *)p, v, memory_order_seq_cst);
}
static inline uint64_t rb_atomic_load_relaxed_u64(const uint64_t *p) {
    return atomic_load_explicit((_Atomic uint64_t *)p, memory_order_relaxed);
}
static inline uint32_t rb_atomic_exchange_seq_cst_u32(uint32_t *p, uint32_t v) {
    return atomic_exchange_explicit((_Atomic uint32_t *)p, v, memory_order_seq_cst);
}
static inline void rb_atomic_thread_fence_seq_cst(void) { atomic_thread_fence(memory_order_seq_cst); }
/* Tells the processor this thread spins (x86 PAUSE): it yields the core's resources to its sibling. */
static inline void rb_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

/* Nonzero when the processor has PREFETCHW (x86 CPUID 0x80000001 ECX bit 8); set at load time. */
extern int rb_has_prefetchw;

/* Asks for the cache line at p in a writable state ahead of a store; a hint that never faults. */
static inline void rb_prefetch_write(const void *p) {
#if defined(__x86_64__)
    if (rb_has_prefetchw) {
        __asm__ volatile("prefetchw %0" : : "m"(*(const char *)p));
    } else {
        __builtin_prefetch(p, 1, 3);
    }
#else
    __builtin_prefetch(p, 1, 3);
#endif
}

#endif
