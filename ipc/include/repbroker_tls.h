/*
 * TLS 1.3 for peer links on the system's OpenSSL 3, loaded at run time (dlopen of libssl.so.3 and
 * libcrypto.so.3) and only when TLS is configured: building repbroker needs no OpenSSL headers or libraries,
 * and a broker without TLS never loads them. The shim declares the few OpenSSL 3 functions it calls itself
 * (their ABI is stable across 3.x) and writes no cryptography.
 *
 * A session is driven through memory: the I/O shell feeds the bytes it read from the socket (rb_tls_feed),
 * and takes the bytes to write (rb_tls_take_output), so the broker's core sees the same plain frames with TLS
 * or without, and the shell keeps its one write per connection per pass.
 *
 * Every function that can fail writes a reason into `error` (NUL-terminated, at most `size` bytes).
 */
#ifndef REPBROKER_TLS_H
#define REPBROKER_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct rb_tls_context rb_tls_context;
typedef struct rb_tls_session rb_tls_session;

/* Loads libssl.so.3 and libcrypto.so.3 once; 0, or -1 with the reason (not installed: Debian's libssl3). */
int rb_tls_load(char *error, size_t size);

/* A TLS 1.3-only context (no older version) whose sessions present `cert_file` (PEM, chain) with `key_file`
   and require the peer's certificate. With `ca_file`, the peer's chain must verify against it; without
   (NULL), any certificate passes the handshake and the caller checks its SHA-256 pin (rb_tls_peer_sha256). */
rb_tls_context *rb_tls_context_new(const char *cert_file, const char *key_file, const char *ca_file,
                                   char *error, size_t size);
void rb_tls_context_free(rb_tls_context *context);

/* A session: `server` 1 accepts, 0 connects. The context may be freed after (the session holds it). */
rb_tls_session *rb_tls_session_new(rb_tls_context *context, int server, char *error, size_t size);
void rb_tls_session_free(rb_tls_session *session);

/* Hands the session `length` bytes read from the socket; 0, or -1 when out of memory. */
int rb_tls_feed(rb_tls_session *session, const void *bytes, size_t length);
/* Advances the handshake: 1 done, 0 more bytes needed (take the output first), -1 failed (reason). */
int rb_tls_handshake(rb_tls_session *session, char *error, size_t size);
/* Encrypts `length` plain bytes into the output; `length`, or -1 (reason). After the handshake only. */
ssize_t rb_tls_write(rb_tls_session *session, const void *plain, size_t length, char *error, size_t size);
/* Decrypts into `plain`: the bytes read (> 0), 0 when a whole record has not arrived yet, -2 when the peer
   closed the session (close_notify), -1 when the stream is corrupt or cut (reason). */
ssize_t rb_tls_read(rb_tls_session *session, void *plain, size_t capacity, char *error, size_t size);
/* Queues a close_notify alert in the output (after the handshake; otherwise nothing). */
void rb_tls_close_notify(rb_tls_session *session);
/* Bytes waiting to go to the socket. */
size_t rb_tls_output_pending(rb_tls_session *session);
/* Moves up to `capacity` of them into `bytes`; the number moved. */
size_t rb_tls_take_output(rb_tls_session *session, void *bytes, size_t capacity);

/* The site id the peer's certificate names: a SAN URI repbroker://site/<ID>. 0 and *site set, or -1 (reason:
   no such name, or more than one). */
int rb_tls_peer_site(rb_tls_session *session, int32_t *site, char *error, size_t size);
/* The SHA-256 of the peer's certificate (DER); 0, or -1. */
int rb_tls_peer_sha256(rb_tls_session *session, uint8_t digest[32]);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" into `out`. */
void rb_tls_describe(rb_tls_session *session, char *out, size_t size);

#endif
