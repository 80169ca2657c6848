/*
 * The machine's reference for `repbroker-bench ipc`: what two hops over shared memory cost here with no
 * broker. Three processes: a producer writes records into ring A, a relay copies each record from ring A
 * into ring B, a consumer reads ring B and touches every 8th payload byte. Each side publishes every record,
 * spins briefly when it finds nothing, then sched_yield()s (three processes share two cores).
 */
#ifndef RELAY_REFERENCE_H
#define RELAY_REFERENCE_H

/* Runs the relay for `seconds` with `size`-byte payloads; returns the records the consumer got per second,
 * or a negative value when a process could not be started. */
double rb_relay_reference(int size, double seconds);

#endif
