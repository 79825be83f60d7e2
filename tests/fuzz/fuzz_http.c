/* libFuzzer target: the whole HTTP request path of `pivot serve` — raw
 * bytes -> libuv read -> llhttp -> router -> API parsing/validation ->
 * tokenizing -> the decoder thread -> responses/SSE — in one process.
 *
 * No seam in server/: the harness opens the server as srv_run does
 * (srv_server_open: same files, same callbacks), listens on an ephemeral
 * loopback port and, per input, connects one client socket, writes the input
 * and drives the loop itself until the connection is gone again. The model is the tiny
 * ChatML Llama written by tests/fuzz/make_seeds.py (PIVOT_FUZZ_MODEL), so a
 * completion costs microseconds and requests really reach the engine.
 *
 * Input byte 0 (mode): bit 0 = half-close right after writing (a client
 * that goes away mid-request: its job is cancelled) instead of waiting for
 * every answer; bit 1 = require an API key. The rest is sent verbatim.
 *
 * Invariants checked after every input, besides ASan/UBSan/LSan: the
 * connection is closed and freed, no job is left (n_jobs == 0), and the
 * engine holds no sequence and no KV reservation (its gauges). A server
 * that does not wind down within 20 s is a hang: abort. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "srv_server.h"

#ifndef PIVOT_SOURCE_ROOT
#define PIVOT_SOURCE_ROOT "."
#endif

static srv_config C; /* read live by the server: api_key flips per input */
static srv_server *S;
static uv_loop_t L;
static int port;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    const char *model = getenv("PIVOT_FUZZ_MODEL");
    static char def[512];
    snprintf(def, sizeof def, "%s/build-fuzz/tiny-chat.gguf", PIVOT_SOURCE_ROOT);
    /* small limits so that 413/431/429/context errors are reachable */
    C = (srv_config){.model_path = model && *model ? model : def, .host = "127.0.0.1",
                     .kv_policy = "full", .kv_memory = 64u << 10, .max_seqs = 4,
                     .max_batch_tokens = 64, .prefill_chunk = 16, .max_queue = 2,
                     .threads = 1, .ctx = 96, .drain_timeout = 5, .max_body = 8192,
                     .max_conns = 8, .idle_timeout = 30, .request_timeout = 30};
    uv_loop_init(&L);
    if (srv_server_open(&C, &L, &S)) {
        fprintf(stderr, "fuzz_http: cannot listen or start the engine\n");
        exit(1);
    }
    port = srv_server_port(S);
    double t0 = now();
    while (srv_server_ready(S) == 0 && now() - t0 < 60) uv_run(&L, UV_RUN_ONCE);
    if (srv_server_ready(S) != 1) {
        fprintf(stderr, "fuzz_http: model %s: %s\n", C.model_path, srv_server_error(S));
        exit(1);
    }
    return 0;
}

/* One loop turn without blocking for long: wait (<= 1 ms) for the loop's
 * backend fd or the client socket, then run what is ready. */
static void turn(int fd) {
    struct pollfd p[2] = {{.fd = uv_backend_fd(&L), .events = POLLIN},
                          {.fd = fd, .events = POLLIN}};
    poll(p, fd >= 0 ? 2 : 1, 1);
    uv_run(&L, UV_RUN_NOWAIT);
}

static int engine_idle(const srv_activity *a) {
    return a->running == 0 && a->waiting == 0 && a->kv_reserved == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int half_close = data[0] & 1;
    C.api_key = data[0] & 2 ? "k" : NULL;
    data++, size--;

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) && errno != EINPROGRESS) {
        close(fd);
        return 0;
    }
    double t0 = now();
    size_t sent = 0;
    int shut = 0, peer_closed = 0, quiet = 0;
    char buf[65536];
    while (!peer_closed) {
        turn(fd);
        if (sent < size) {
            ssize_t w = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
            if (w > 0) sent += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EINPROGRESS && errno != ENOTCONN) break;
        }
        int got_bytes = 0;
        for (;;) { /* the answers are read and dropped */
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r > 0) { got_bytes = 1; continue; }
            if (r == 0 || (r < 0 && errno != EAGAIN)) peer_closed = 1;
            break;
        }
        if (sent < size) continue;
        if (half_close && !shut) {
            shutdown(fd, SHUT_WR);
            shut = 1;
        }
        /* Everything is written: once the server has had a few idle turns
         * with nothing running and nothing new on the wire, it has answered
         * all it can (what remains is an incomplete request). */
        srv_activity act;
        srv_server_activity(S, &act);
        quiet = (!got_bytes && act.jobs == 0 && act.busy_conns == 0) ? quiet + 1 : 0;
        if (quiet >= 3 || now() - t0 > 10) break;
    }
    close(fd);
    /* the server notices the close, cancels what is left and frees the conn */
    for (;;) {
        srv_activity act;
        srv_server_activity(S, &act);
        if (act.conns == 0 && act.jobs == 0 && engine_idle(&act)) break;
        turn(-1);
        if (now() - t0 > 20) {
            fprintf(stderr, "fuzz_http: server did not wind down (conns %d, jobs %d)\n", act.conns,
                    act.jobs);
            abort();
        }
    }
    return 0;
}
