// See include/relay_reference.h. Rings of 1 MiB; a record is an 8-byte header (its payload length) and the
// payload padded to 8, and never straddles the end of a ring: a WRAP header (length UINT32_MAX) skips the
// rest. Children run C only and leave with _exit.
#define _GNU_SOURCE
#include "relay_reference.h"
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CAPACITY (1u << 20)
#define WRAP UINT32_MAX

struct ring {
    _Alignas(128) _Atomic uint64_t head; /* consumer's position */
    _Alignas(128) _Atomic uint64_t tail; /* producer's position */
    _Alignas(128) uint8_t data[CAPACITY];
};

struct shared {
    struct ring a, b;
    _Alignas(128) _Atomic int stop;
    _Atomic long received;
    _Atomic uint64_t produced_to;
    double elapsed;
};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void idle(int *spins) {
    if (++*spins > 64) {
        sched_yield();
        *spins = 0;
    }
}

/* Bytes a record of `record` bytes takes at `position`: with the WRAP before it when it would straddle the end. */
static uint32_t footprint(uint64_t position, uint32_t record) {
    uint32_t to_end = CAPACITY - (uint32_t)(position % CAPACITY);
    return record <= to_end ? record : record + to_end;
}

/* Writes a WRAP at `*position` when `record` would straddle the end, and moves past it. */
static void wrap_if_needed(struct ring *r, uint64_t *position, uint32_t record) {
    uint32_t to_end = CAPACITY - (uint32_t)(*position % CAPACITY);
    if (record <= to_end) return;
    uint32_t wrap = WRAP;
    memcpy(&r->data[*position % CAPACITY], &wrap, 4);
    *position += to_end;
}

static void relay(struct shared *s) {
    uint64_t head = 0, tail = 0, cached = 0;
    int spins = 0;
    for (;;) {
        uint64_t available = atomic_load_explicit(&s->a.tail, memory_order_acquire);
        if (head == available) {
            if (atomic_load(&s->stop)) _exit(0);
            idle(&spins);
            continue;
        }
        while (head < available) {
            uint32_t length;
            memcpy(&length, &s->a.data[head % CAPACITY], 4);
            if (length == WRAP) {
                head += CAPACITY - head % CAPACITY;
                continue;
            }
            uint32_t record = (length + 8 + 7) & ~7u;
            while (tail + footprint(tail, record) - cached > CAPACITY) {
                // Full: what this batch copied so far goes out first, and its space in ring A back.
                atomic_store_explicit(&s->b.tail, tail, memory_order_release);
                atomic_store_explicit(&s->a.head, head, memory_order_release);
                cached = atomic_load_explicit(&s->b.head, memory_order_acquire);
                idle(&spins);
            }
            wrap_if_needed(&s->b, &tail, record);
            memcpy(&s->b.data[tail % CAPACITY], &s->a.data[head % CAPACITY], record);
            tail += record;
            head += record;
        }
        // Once per batch, as the probe and the broker do.
        atomic_store_explicit(&s->b.tail, tail, memory_order_release);
        atomic_store_explicit(&s->a.head, head, memory_order_release);
    }
}

static void consume(struct shared *s) {
    uint64_t head = 0, sum = 0;
    long got = 0;
    int spins = 0;
    for (;;) {
        uint64_t available = atomic_load_explicit(&s->b.tail, memory_order_acquire);
        if (head == available) {
            if (atomic_load(&s->stop)) break;
            idle(&spins);
            continue;
        }
        while (head < available) {
            uint32_t length;
            memcpy(&length, &s->b.data[head % CAPACITY], 4);
            if (length == WRAP) {
                head += CAPACITY - head % CAPACITY;
                continue;
            }
            for (uint32_t i = 0; i < length; i += 8) sum += s->b.data[(head + 8 + i) % CAPACITY];
            head += (length + 8 + 7) & ~7u;
            got++;
        }
        atomic_store_explicit(&s->b.head, head, memory_order_release);
    }
    atomic_store(&s->received, got);
    _exit(sum == 12345);
}

static void produce(struct shared *s, int size, double seconds) {
    static uint8_t message[1 << 16];
    memset(message, 1, sizeof message);
    uint32_t record = ((uint32_t)size + 8 + 7) & ~7u;
    uint64_t tail = 0, cached = 0;
    long sent = 0;
    int spins = 0;
    double start = now();
    for (;;) {
        if ((sent & 1023) == 0 && now() - start > seconds) break;
        while (tail + footprint(tail, record) - cached > CAPACITY) {
            cached = atomic_load_explicit(&s->a.head, memory_order_acquire);
            idle(&spins);
        }
        wrap_if_needed(&s->a, &tail, record);
        uint32_t length = (uint32_t)size;
        memcpy(&s->a.data[tail % CAPACITY], &length, 4);
        memcpy(&s->a.data[(tail + 8) % CAPACITY], message, (size_t)size);
        tail += record;
        sent++;
        atomic_store_explicit(&s->a.tail, tail, memory_order_release);
    }
    // Until the relay has taken everything and the consumer has caught up with the relay.
    while (atomic_load_explicit(&s->a.head, memory_order_acquire) < tail) sched_yield();
    uint64_t relayed = atomic_load_explicit(&s->b.tail, memory_order_acquire);
    while (atomic_load_explicit(&s->b.head, memory_order_acquire) < relayed) sched_yield();
    s->elapsed = now() - start;
    atomic_store(&s->stop, 1);
    _exit(0);
}

double rb_relay_reference(int size, double seconds) {
    if (size < 1 || size > (1 << 16)) return -1;
    struct shared *s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (s == MAP_FAILED) return -1;
    pid_t children[3];
    int started = 0;
    for (; started < 3; started++) {
        pid_t pid = fork();
        if (pid < 0) break;
        if (pid == 0) {
            if (started == 0) relay(s);
            if (started == 1) consume(s);
            produce(s, size, seconds);
        }
        children[started] = pid;
    }
    if (started < 3) {
        for (int i = 0; i < started; i++) kill(children[i], SIGKILL);
    }
    for (int i = 0; i < started; i++) waitpid(children[i], NULL, 0);
    double result = started < 3 || s->elapsed <= 0 ? -1 : (double)atomic_load(&s->received) / s->elapsed;
    munmap(s, sizeof *s);
    return result;
}
