/* TLS 1.3 on OpenSSL 3 loaded at run time: see repbroker_tls.h. */
#include "repbroker_tls.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* OpenSSL's types stay opaque here; the constants are OpenSSL 3's (ssl.h, bio.h, x509v3.h). */
typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_method_st SSL_METHOD;
typedef struct ssl_cipher_st SSL_CIPHER;
typedef struct bio_st BIO;
typedef struct bio_method_st BIO_METHOD;
typedef struct x509_st X509;
typedef struct x509_store_ctx_st X509_STORE_CTX;
typedef struct evp_md_st EVP_MD;
typedef struct stack_st OPENSSL_STACK;
typedef struct asn1_string_st ASN1_STRING;
/* GENERAL_NAME: an int type, then a union of pointers (x509v3.h). */
typedef struct { int type; void *value; } GENERAL_NAME;

enum {
    SSL_CTRL_SET_MIN_PROTO_VERSION = 123,
    SSL_CTRL_SET_MAX_PROTO_VERSION = 124,
    TLS1_3_VERSION = 0x0304,
    SSL_FILETYPE_PEM = 1,
    SSL_VERIFY_PEER = 0x01,
    SSL_VERIFY_FAIL_IF_NO_PEER_CERT = 0x02,
    SSL_ERROR_SSL = 1,
    SSL_ERROR_WANT_READ = 2,
    SSL_ERROR_WANT_WRITE = 3,
    SSL_ERROR_SYSCALL = 5,
    SSL_ERROR_ZERO_RETURN = 6,
    BIO_C_SET_BUF_MEM_EOF_RETURN = 130,
    NID_subject_alt_name = 85,
    GEN_URI = 6,
    X509_V_OK = 0,
};

static struct {
    const SSL_METHOD *(*TLS_method)(void);
    SSL_CTX *(*SSL_CTX_new)(const SSL_METHOD *);
    void (*SSL_CTX_free)(SSL_CTX *);
    long (*SSL_CTX_ctrl)(SSL_CTX *, int, long, void *);
    int (*SSL_CTX_use_certificate_chain_file)(SSL_CTX *, const char *);
    int (*SSL_CTX_use_PrivateKey_file)(SSL_CTX *, const char *, int);
    int (*SSL_CTX_check_private_key)(const SSL_CTX *);
    int (*SSL_CTX_load_verify_locations)(SSL_CTX *, const char *, const char *);
    void (*SSL_CTX_set_verify)(SSL_CTX *, int, int (*)(int, X509_STORE_CTX *));
    SSL *(*SSL_new)(SSL_CTX *);
    void (*SSL_free)(SSL *);
    void (*SSL_set_bio)(SSL *, BIO *, BIO *);
    void (*SSL_set_accept_state)(SSL *);
    void (*SSL_set_connect_state)(SSL *);
    int (*SSL_do_handshake)(SSL *);
    int (*SSL_read)(SSL *, void *, int);
    int (*SSL_write)(SSL *, const void *, int);
    int (*SSL_get_error)(const SSL *, int);
    int (*SSL_shutdown)(SSL *);
    int (*SSL_CTX_set_num_tickets)(SSL_CTX *, size_t);
    X509 *(*SSL_get1_peer_certificate)(const SSL *);
    long (*SSL_get_verify_result)(const SSL *);
    const char *(*SSL_get_version)(const SSL *);
    const SSL_CIPHER *(*SSL_get_current_cipher)(const SSL *);
    const char *(*SSL_CIPHER_get_name)(const SSL_CIPHER *);
    const BIO_METHOD *(*BIO_s_mem)(void);
    BIO *(*BIO_new)(const BIO_METHOD *);
    void (*BIO_free_all)(BIO *);
    int (*BIO_write)(BIO *, const void *, int);
    int (*BIO_read)(BIO *, void *, int);
    long (*BIO_ctrl)(BIO *, int, long, void *);
    size_t (*BIO_ctrl_pending)(BIO *);
    void (*X509_free)(X509 *);
    void *(*X509_get_ext_d2i)(const X509 *, int, int *, int *);
    int (*X509_digest)(const X509 *, const EVP_MD *, unsigned char *, unsigned int *);
    const char *(*X509_verify_cert_error_string)(long);
    const EVP_MD *(*EVP_sha256)(void);
    int (*OPENSSL_sk_num)(const OPENSSL_STACK *);
    void *(*OPENSSL_sk_value)(const OPENSSL_STACK *, int);
    void (*GENERAL_NAMES_free)(OPENSSL_STACK *);
    const unsigned char *(*ASN1_STRING_get0_data)(const ASN1_STRING *);
    int (*ASN1_STRING_length)(const ASN1_STRING *);
    unsigned long (*ERR_get_error)(void);
    void (*ERR_error_string_n)(unsigned long, char *, size_t);
    void (*ERR_clear_error)(void);
} ossl;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static char load_error[256];

static void say(char *error, size_t size, const char *format, ...) {
    if (!error || !size) return;
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(error, size, format, arguments);
    va_end(arguments);
}

static void load(void) {
    void *crypto = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL);
    void *ssl = crypto ? dlopen("libssl.so.3", RTLD_NOW | RTLD_LOCAL) : NULL;
    if (!crypto || !ssl) {
        say(load_error, sizeof load_error, "TLS needs OpenSSL 3 (Debian: apt-get install libssl3): %s", dlerror());
        return;
    }
#define RESOLVE(library, name)                                                                       \
    if (!(*(void **)&ossl.name = dlsym(library, #name))) {                                           \
        say(load_error, sizeof load_error, "OpenSSL 3 lacks %s: %s", #name, dlerror());              \
        return;                                                                                      \
    }
    RESOLVE(ssl, TLS_method) RESOLVE(ssl, SSL_CTX_new) RESOLVE(ssl, SSL_CTX_free) RESOLVE(ssl, SSL_CTX_ctrl)
    RESOLVE(ssl, SSL_CTX_use_certificate_chain_file) RESOLVE(ssl, SSL_CTX_use_PrivateKey_file)
    RESOLVE(ssl, SSL_CTX_check_private_key) RESOLVE(ssl, SSL_CTX_load_verify_locations)
    RESOLVE(ssl, SSL_CTX_set_verify) RESOLVE(ssl, SSL_new) RESOLVE(ssl, SSL_free) RESOLVE(ssl, SSL_set_bio)
    RESOLVE(ssl, SSL_set_accept_state) RESOLVE(ssl, SSL_set_connect_state) RESOLVE(ssl, SSL_do_handshake)
    RESOLVE(ssl, SSL_read) RESOLVE(ssl, SSL_write) RESOLVE(ssl, SSL_get_error) RESOLVE(ssl, SSL_shutdown)
    RESOLVE(ssl, SSL_CTX_set_num_tickets)
    RESOLVE(ssl, SSL_get1_peer_certificate) RESOLVE(ssl, SSL_get_verify_result) RESOLVE(ssl, SSL_get_version)
    RESOLVE(ssl, SSL_get_current_cipher) RESOLVE(ssl, SSL_CIPHER_get_name)
    RESOLVE(crypto, BIO_s_mem) RESOLVE(crypto, BIO_new) RESOLVE(crypto, BIO_free_all) RESOLVE(crypto, BIO_write)
    RESOLVE(crypto, BIO_read) RESOLVE(crypto, BIO_ctrl) RESOLVE(crypto, BIO_ctrl_pending) RESOLVE(crypto, X509_free)
    RESOLVE(crypto, X509_get_ext_d2i) RESOLVE(crypto, X509_digest) RESOLVE(crypto, X509_verify_cert_error_string)
    RESOLVE(crypto, EVP_sha256) RESOLVE(crypto, OPENSSL_sk_num) RESOLVE(crypto, OPENSSL_sk_value)
    RESOLVE(crypto, GENERAL_NAMES_free) RESOLVE(crypto, ASN1_STRING_get0_data) RESOLVE(crypto, ASN1_STRING_length)
    RESOLVE(crypto, ERR_get_error) RESOLVE(crypto, ERR_error_string_n) RESOLVE(crypto, ERR_clear_error)
#undef RESOLVE
}

int rb_tls_load(char *error, size_t size) {
    pthread_once(&load_once, load);
    if (load_error[0]) {
        say(error, size, "%s", load_error);
        return -1;
    }
    return 0;
}

/* The reason OpenSSL queued (the last error), after `what`; the queue is emptied. */
static void say_openssl(char *error, size_t size, const char *what) {
    unsigned long code, last = 0;
    while ((code = ossl.ERR_get_error()) != 0) last = code;
    char reason[200] = "no reason given";
    if (last) ossl.ERR_error_string_n(last, reason, sizeof reason);
    say(error, size, "%s: %s", what, reason);
}

struct rb_tls_context {
    SSL_CTX *ctx;
};

static int accept_any_chain(int preverified, X509_STORE_CTX *store) {
    (void)preverified;
    (void)store;
    return 1;  /* pinned: the caller compares the certificate's SHA-256 after the handshake */
}

rb_tls_context *rb_tls_context_new(const char *cert_file, const char *key_file, const char *ca_file,
                                   char *error, size_t size) {
    if (rb_tls_load(error, size)) return NULL;
    ossl.ERR_clear_error();
    SSL_CTX *ctx = ossl.SSL_CTX_new(ossl.TLS_method());
    if (!ctx) {
        say_openssl(error, size, "SSL_CTX_new");
        return NULL;
    }
    const char *failed = NULL;
    char what[PATH_MAX + 64];
    if (ossl.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, TLS1_3_VERSION, NULL) != 1 ||
        ossl.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MAX_PROTO_VERSION, TLS1_3_VERSION, NULL) != 1) {
        failed = "TLS 1.3 only";
    } else if (ossl.SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        snprintf(what, sizeof what, "the certificate %s", cert_file);
        failed = what;
    } else if (ossl.SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        snprintf(what, sizeof what, "the key %s (for the certificate %s)", key_file, cert_file);
        failed = what;
    } else if (ossl.SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(what, sizeof what, "the key %s does not match the certificate %s", key_file, cert_file);
        failed = what;
    } else if (ca_file && ossl.SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        snprintf(what, sizeof what, "the CA %s", ca_file);
        failed = what;
    }
    if (failed) {
        say_openssl(error, size, failed);
        ossl.SSL_CTX_free(ctx);
        return NULL;
    }
    ossl.SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, ca_file ? NULL : accept_any_chain);
    /* Links never resume a session: no tickets after the handshake. */
    ossl.SSL_CTX_set_num_tickets(ctx, 0);
    rb_tls_context *context = calloc(1, sizeof *context);
    if (!context) {
        ossl.SSL_CTX_free(ctx);
        say(error, size, "out of memory");
        return NULL;
    }
    context->ctx = ctx;
    return context;
}

void rb_tls_context_free(rb_tls_context *context) {
    if (!context) return;
    ossl.SSL_CTX_free(context->ctx);
    free(context);
}

struct rb_tls_session {
    SSL *ssl;
    BIO *in;   /* ciphertext from the socket, read by OpenSSL */
    BIO *out;  /* ciphertext OpenSSL wrote, for the socket */
};

rb_tls_session *rb_tls_session_new(rb_tls_context *context, int server, char *error, size_t size) {
    rb_tls_session *session = calloc(1, sizeof *session);
    if (!session) {
        say(error, size, "out of memory");
        return NULL;
    }
    ossl.ERR_clear_error();
    session->ssl = ossl.SSL_new(context->ctx);  /* holds a reference to the context */
    session->in = ossl.BIO_new(ossl.BIO_s_mem());
    session->out = ossl.BIO_new(ossl.BIO_s_mem());
    if (!session->ssl || !session->in || !session->out) {
        say_openssl(error, size, "SSL_new");
        if (session->in) ossl.BIO_free_all(session->in);
        if (session->out) ossl.BIO_free_all(session->out);
        if (session->ssl) ossl.SSL_free(session->ssl);
        free(session);
        return NULL;
    }
    /* An empty input BIO asks for more (retry) rather than saying end of file. */
    ossl.BIO_ctrl(session->in, BIO_C_SET_BUF_MEM_EOF_RETURN, -1, NULL);
    ossl.SSL_set_bio(session->ssl, session->in, session->out);  /* the SSL owns both now */
    if (server) ossl.SSL_set_accept_state(session->ssl);
    else ossl.SSL_set_connect_state(session->ssl);
    return session;
}

void rb_tls_session_free(rb_tls_session *session) {
    if (!session) return;
    ossl.SSL_free(session->ssl);
    free(session);
}

int rb_tls_feed(rb_tls_session *session, const void *bytes, size_t length) {
    while (length > 0) {
        int chunk = length > INT_MAX ? INT_MAX : (int)length;
        int written = ossl.BIO_write(session->in, bytes, chunk);
        if (written <= 0) return -1;
        bytes = (const char *)bytes + written;
        length -= (size_t)written;
    }
    return 0;
}

/* Why a call failed: the verification result when the peer's certificate was refused, else OpenSSL's. */
static void say_failure(rb_tls_session *session, int code, const char *what, char *error, size_t size) {
    long verify = ossl.SSL_get_verify_result(session->ssl);
    if (code == SSL_ERROR_ZERO_RETURN) {
        say(error, size, "%s: the peer closed the TLS session", what);
    } else if (verify != X509_V_OK) {
        ossl.ERR_clear_error();
        say(error, size, "%s: the peer's certificate: %s", what, ossl.X509_verify_cert_error_string(verify));
    } else {
        say_openssl(error, size, what);
    }
}

int rb_tls_handshake(rb_tls_session *session, char *error, size_t size) {
    ossl.ERR_clear_error();
    int result = ossl.SSL_do_handshake(session->ssl);
    if (result == 1) return 1;
    int code = ossl.SSL_get_error(session->ssl, result);
    if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) return 0;
    say_failure(session, code, "TLS handshake", error, size);
    return -1;
}

ssize_t rb_tls_write(rb_tls_session *session, const void *plain, size_t length, char *error, size_t size) {
    size_t done = 0;
    ossl.ERR_clear_error();
    while (done < length) {
        size_t left = length - done;
        int chunk = left > INT_MAX ? INT_MAX : (int)left;
        int written = ossl.SSL_write(session->ssl, (const char *)plain + done, chunk);
        if (written <= 0) {
            say_failure(session, ossl.SSL_get_error(session->ssl, written), "TLS write", error, size);
            return -1;
        }
        done += (size_t)written;
    }
    return (ssize_t)done;
}

ssize_t rb_tls_read(rb_tls_session *session, void *plain, size_t capacity, char *error, size_t size) {
    ossl.ERR_clear_error();
    int chunk = capacity > INT_MAX ? INT_MAX : (int)capacity;
    int got = ossl.SSL_read(session->ssl, plain, chunk);
    if (got > 0) return got;
    int code = ossl.SSL_get_error(session->ssl, got);
    if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) return 0;
    if (code == SSL_ERROR_ZERO_RETURN) return -2;
    say_failure(session, code, "TLS read", error, size);
    return -1;
}

void rb_tls_close_notify(rb_tls_session *session) {
    ossl.ERR_clear_error();
    (void)ossl.SSL_shutdown(session->ssl);
    ossl.ERR_clear_error();
}

size_t rb_tls_output_pending(rb_tls_session *session) { return ossl.BIO_ctrl_pending(session->out); }

size_t rb_tls_take_output(rb_tls_session *session, void *bytes, size_t capacity) {
    int chunk = capacity > INT_MAX ? INT_MAX : (int)capacity;
    int got = chunk > 0 ? ossl.BIO_read(session->out, bytes, chunk) : 0;
    return got > 0 ? (size_t)got : 0;
}

int rb_tls_peer_site(rb_tls_session *session, int32_t *site, char *error, size_t size) {
    X509 *certificate = ossl.SSL_get1_peer_certificate(session->ssl);
    if (!certificate) {
        say(error, size, "the peer presented no certificate");
        return -1;
    }
    static const char prefix[] = "repbroker://site/";
    OPENSSL_STACK *names = ossl.X509_get_ext_d2i(certificate, NID_subject_alt_name, NULL, NULL);
    int found = 0;
    long value = 0;
    for (int i = 0; names && i < ossl.OPENSSL_sk_num(names); i++) {
        const GENERAL_NAME *name = ossl.OPENSSL_sk_value(names, i);
        if (!name || name->type != GEN_URI) continue;
        const ASN1_STRING *uri = name->value;
        int length = ossl.ASN1_STRING_length(uri);
        const char *text = (const char *)ossl.ASN1_STRING_get0_data(uri);
        size_t prefix_length = sizeof prefix - 1;
        if (length <= (int)prefix_length || length > (int)prefix_length + 10 || memcmp(text, prefix, prefix_length)) continue;
        long parsed = 0;
        int digits = 1;
        for (int j = (int)prefix_length; j < length; j++) {
            if (text[j] < '0' || text[j] > '9') digits = 0;
            else parsed = parsed * 10 + (text[j] - '0');
        }
        if (!digits || parsed <= 0 || parsed > INT32_MAX) continue;
        found++;
        value = parsed;
    }
    if (names) ossl.GENERAL_NAMES_free(names);
    ossl.X509_free(certificate);
    if (found != 1) {
        say(error, size, found ? "the peer's certificate names %d sites (repbroker://site/ID)"
                               : "the peer's certificate names no site (a SAN URI repbroker://site/ID)", found);
        return -1;
    }
    *site = (int32_t)value;
    return 0;
}

int rb_tls_peer_sha256(rb_tls_session *session, uint8_t digest[32]) {
    X509 *certificate = ossl.SSL_get1_peer_certificate(session->ssl);
    if (!certificate) return -1;
    unsigned int length = 0;
    int ok = ossl.X509_digest(certificate, ossl.EVP_sha256(), digest, &length) == 1 && length == 32;
    ossl.X509_free(certificate);
    return ok ? 0 : -1;
}

void rb_tls_describe(rb_tls_session *session, char *out, size_t size) {
    const SSL_CIPHER *cipher = ossl.SSL_get_current_cipher(session->ssl);
    say(out, size, "%s %s", ossl.SSL_get_version(session->ssl), cipher ? ossl.SSL_CIPHER_get_name(cipher) : "(none)");
}
