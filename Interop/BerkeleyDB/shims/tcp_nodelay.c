/* A patched repmgr for the commit benchmark, by LD_PRELOAD: sets TCP_NODELAY on every TCP socket the process
 * connects or accepts. Berkeley DB 5.3's Replication Manager never sets it (strace shows only SO_KEEPALIVE and
 * SO_REUSEADDR), so a commit's last log record can wait under Nagle's algorithm for the peer's delayed ACK.
 * Stock repmgr is measured without it; the benchmark labels the rows that use it as patched.
 * Built by bdb-scenario: cc -O2 -shared -fPIC -o tcp_nodelay.so tcp_nodelay.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static void set_nodelay(int fd) {
    int saved = errno;
    struct sockaddr_storage address;
    socklen_t length = sizeof address;
    int type = 0;
    socklen_t type_length = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_length) == 0 && type == SOCK_STREAM &&
        getsockname(fd, (struct sockaddr *)&address, &length) == 0 &&
        (address.ss_family == AF_INET || address.ss_family == AF_INET6)) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    errno = saved;
}

int connect(int fd, const struct sockaddr *address, socklen_t length) {
    static int (*real)(int, const struct sockaddr *, socklen_t);
    if (!real) real = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
    int rc = real(fd, address, length);
    if (rc == 0 || errno == EINPROGRESS) set_nodelay(fd);
    return rc;
}

int accept(int fd, struct sockaddr *address, socklen_t *length) {
    static int (*real)(int, struct sockaddr *, socklen_t *);
    if (!real) real = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
    int rc = real(fd, address, length);
    if (rc >= 0) set_nodelay(rc);
    return rc;
}

int accept4(int fd, struct sockaddr *address, socklen_t *length, int flags) {
    static int (*real)(int, struct sockaddr *, socklen_t *, int);
    if (!real) real = (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
    int rc = real(fd, address, length, flags);
    if (rc >= 0) set_nodelay(rc);
    return rc;
}
