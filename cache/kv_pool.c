/* kv_pool: a byte-limited page allocator with per-size free lists. */
#include "kv_pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "pverr.h"

/* Distinct page sizes with a free list. A cache uses one or two (FP16: one;
 * mixed: high and low tier), and a server holds a few caches at once (one per
 * live per-request policy), so 16 covers it; pages of other sizes go straight
 * back to the system. */
#define POOL_CLASSES 16

typedef struct free_page {
    struct free_page *next;
} free_page;

typedef struct {
    size_t bytes; /* 0: unused class */
    free_page *head;
    size_t n;
} size_class;

struct kv_pool {
    pthread_mutex_t mu;
    size_t limit, used, peak, cached;
    uint64_t n_malloc, n_reused, n_refused;
    size_class cls[POOL_CLASSES];
};

int kv_pool_create(size_t limit, kv_pool **out) {
    *out = NULL;
    kv_pool *p = calloc(1, sizeof *p);
    if (!p) return PV_ENOMEM;
    if (pthread_mutex_init(&p->mu, NULL)) {
        free(p);
        return PV_ENOMEM;
    }
    p->limit = limit;
    *out = p;
    return PV_OK;
}

/* Drops every cached page of class c (under mu). */
static void drop_class(kv_pool *p, size_class *c) {
    while (c->head) {
        free_page *f = c->head;
        c->head = f->next;
        free(f);
        p->cached -= c->bytes;
    }
    c->n = 0;
}

void kv_pool_trim(kv_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < POOL_CLASSES; i++) drop_class(p, &p->cls[i]);
    pthread_mutex_unlock(&p->mu);
}

void kv_pool_destroy(kv_pool *p) {
    if (!p) return;
    kv_pool_trim(p);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

static int over(const kv_pool *p, size_t extra) {
    return p->limit && (p->used > p->limit || extra > p->limit - p->used);
}

/* Makes room for `bytes` more of held memory (used + cached) by releasing
 * cached pages of other sizes, so the process stays within the limit. */
static void make_room(kv_pool *p, size_t bytes, const size_class *keep) {
    for (int i = 0; i < POOL_CLASSES && p->limit && p->used + p->cached + bytes > p->limit; i++)
        if (&p->cls[i] != keep) drop_class(p, &p->cls[i]);
}

static void note_used(kv_pool *p, size_t bytes) {
    p->used += bytes;
    if (p->used > p->peak) p->peak = p->used;
}

void *kv_pool_alloc(kv_pool *p, size_t bytes) {
    if (!p) return malloc(bytes);
    if (bytes < sizeof(free_page)) bytes = sizeof(free_page);
    pthread_mutex_lock(&p->mu);
    void *r = NULL;
    if (over(p, bytes)) {
        p->n_refused++;
        goto out;
    }
    size_class *c = NULL;
    for (int i = 0; i < POOL_CLASSES && !c; i++)
        if (p->cls[i].bytes == bytes) c = &p->cls[i];
    if (c && c->head) {
        free_page *f = c->head;
        c->head = f->next;
        c->n--;
        p->cached -= bytes;
        p->n_reused++;
        note_used(p, bytes);
        r = f;
        goto out;
    }
    make_room(p, bytes, NULL);
    if ((r = malloc(bytes))) {
        p->n_malloc++;
        note_used(p, bytes);
    }
out:
    pthread_mutex_unlock(&p->mu);
    return r;
}

void kv_pool_free(kv_pool *p, void *page, size_t bytes) {
    if (!page) return;
    if (!p) {
        free(page);
        return;
    }
    if (bytes < sizeof(free_page)) bytes = sizeof(free_page);
    pthread_mutex_lock(&p->mu);
    p->used -= bytes;
    size_class *c = NULL;
    for (int i = 0; i < POOL_CLASSES && !c; i++)
        if (p->cls[i].bytes == bytes) c = &p->cls[i];
    for (int i = 0; i < POOL_CLASSES && !c; i++)
        if (!p->cls[i].bytes || !p->cls[i].n) { /* a free or empty class takes the size */
            c = &p->cls[i];
            c->bytes = bytes;
        }
    if (c) {
        free_page *f = page;
        f->next = c->head;
        c->head = f;
        c->n++;
        p->cached += bytes;
        make_room(p, 0, c);
    } else {
        free(page);
    }
    pthread_mutex_unlock(&p->mu);
}

int kv_pool_charge(kv_pool *p, size_t bytes) {
    if (!p) return PV_OK;
    pthread_mutex_lock(&p->mu);
    int rc = PV_OK;
    if (over(p, bytes)) {
        p->n_refused++;
        rc = PV_ENOMEM;
    } else {
        make_room(p, bytes, NULL);
        note_used(p, bytes);
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

void kv_pool_uncharge(kv_pool *p, size_t bytes) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->used -= bytes;
    pthread_mutex_unlock(&p->mu);
}

void kv_pool_get_stats(kv_pool *p, kv_pool_stats *st) {
    memset(st, 0, sizeof *st);
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    *st = (kv_pool_stats){.limit = p->limit, .used = p->used, .peak = p->peak,
                          .cached = p->cached, .n_malloc = p->n_malloc,
                          .n_reused = p->n_reused, .n_refused = p->n_refused};
    pthread_mutex_unlock(&p->mu);
}

size_t kv_pool_used(kv_pool *p) {
    kv_pool_stats st;
    kv_pool_get_stats(p, &st);
    return st.used;
}
