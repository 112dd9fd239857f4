/*
 * ref-c-server: the hand-written C reference for the benchmark suite. Plain epoll, one thread,
 * non-blocking sockets, reads of up to 64 KiB into a read buffer per connection. Echo only.
 *
 * Built twice from this file (see build.rs):
 * - with COALESCE defined (ref-c, the suite's reference): every complete request found in one
 *   read is answered into the connection's write buffer, which is then sent with as few send()
 *   calls as the socket allows: the replies of pipelined requests leave together;
 * - without it (ref-c-naive): each reply is sent as soon as its request is complete, one send()
 *   per request.
 *
 * Usage: ref-c-server SOCKET line|length
 *
 * line:   a message is the bytes up to '\n'; the reply is the same line.
 * length: a 4-byte big-endian length, then the payload; the reply is the same frame.
 * A reply the socket does not take at once is kept and written when the socket is writable
 * (reading that connection pauses meanwhile).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_FRAME (4u << 20)
#define READ_CHUNK 65536

struct conn {
    int fd;
    char *in;            /* bytes read, not yet consumed */
    size_t in_len, in_cap;
    char *out;           /* reply bytes the socket did not take yet */
    size_t out_len, out_off, out_cap;
};

static int length_framing;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void reserve(char **buf, size_t *cap, size_t need) {
    if (*cap >= need) return;
    size_t cap2 = *cap ? *cap : 4096;
    while (cap2 < need) cap2 *= 2;
    *buf = realloc(*buf, cap2);
    if (!*buf) die("realloc");
    *cap = cap2;
}

static void close_conn(int ep, struct conn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

/* Writes `len` bytes now (naive), or only queues them to go with the others (COALESCE),
 * keeping what the socket does not take. Returns -1 on error. */
static int send_reply(struct conn *c, const char *data, size_t len) {
#ifdef COALESCE
    int now = 0;
#else
    int now = c->out_len == c->out_off;
#endif
    if (now) {
        while (len > 0) {
            ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN) break;
                return -1;
            }
            data += n;
            len -= (size_t)n;
        }
    }
    if (len > 0) {
        reserve(&c->out, &c->out_cap, c->out_len + len);
        memcpy(c->out + c->out_len, data, len);
        c->out_len += len;
    }
    return 0;
}

/* Flushes kept reply bytes. Returns 1 when all are written, 0 if some remain, -1 on error. */
static int flush_out(struct conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return 0;
            return -1;
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    return 1;
}

/* Answers every complete request in the read buffer. Returns -1 to close the connection. */
static int answer(struct conn *c) {
    size_t pos = 0;
    for (;;) {
        size_t frame;
        if (length_framing) {
            if (c->in_len - pos < 4) break;
            const unsigned char *h = (const unsigned char *)c->in + pos;
            uint32_t n = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
            if (n > MAX_FRAME) return -1;
            if (c->in_len - pos < 4 + (size_t)n) break;
            frame = 4 + n;
        } else {
            char *nl = memchr(c->in + pos, '\n', c->in_len - pos);
            if (!nl) {
                if (c->in_len - pos > MAX_FRAME) return -1;
                break;
            }
            frame = (size_t)(nl - (c->in + pos)) + 1;
        }
        if (send_reply(c, c->in + pos, frame) < 0) return -1;
        pos += frame;
    }
    memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
#ifdef COALESCE
    /* Everything this read answered, in as few sends as the socket takes. */
    if (flush_out(c) < 0) return -1;
#endif
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s SOCKET line|length\n", argv[0]);
        return 64;
    }
    length_framing = strcmp(argv[2], "length") == 0;
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) die("socket");
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(argv[1]) >= sizeof addr.sun_path) {
        fprintf(stderr, "socket path too long\n");
        return 64;
    }
    strcpy(addr.sun_path, argv[1]);
    unlink(argv[1]);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(lfd, 4096) < 0) die("listen");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) die("epoll_ctl");
    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (!c) {
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) break;
                    struct conn *nc = calloc(1, sizeof *nc);
                    if (!nc) die("calloc");
                    nc->fd = fd;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = nc};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) < 0) die("epoll_ctl");
                }
                continue;
            }
            if (events[i].events & EPOLLOUT) {
                int r = flush_out(c);
                if (r < 0) { close_conn(ep, c); continue; }
                if (r == 0) continue;
                struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &cev);
                if (answer(c) < 0) { close_conn(ep, c); continue; }
            }
            if (!(events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            int closed = 0;
            while (c->out_len == c->out_off) {
                reserve(&c->in, &c->in_cap, c->in_len + READ_CHUNK);
                ssize_t got = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
                if (got == 0) { closed = 1; break; }
                if (got < 0) {
                    if (errno == EINTR) continue;
                    if (errno != EAGAIN) closed = 1;
                    break;
                }
                c->in_len += (size_t)got;
                if (answer(c) < 0) { closed = 1; break; }
                if ((size_t)got < READ_CHUNK) break;
            }
            if (closed) { close_conn(ep, c); continue; }
            if (c->out_len != c->out_off) {
                struct epoll_event cev = {.events = EPOLLOUT, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &cev);
            }
        }
    }
}
