/* gguf_internal: the parsed file's representation, shared by the parser
 * (gguf.c) and the accessors (gguf_get.c). Private to model/gguf*. */
#ifndef PIVOT_GGUF_INTERNAL_H
#define PIVOT_GGUF_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef struct {
    gguf_str key;
    uint32_t type;
    uint32_t elem_type;      /* arrays only */
    uint64_t n;              /* arrays only: element count */
    const uint8_t *val;      /* scalar bytes, string length prefix, or first array element */
    uint64_t *str_off;       /* string arrays: file offset of each element's length prefix */
} kv_entry;

typedef struct {
    const char *ptr;
    uint64_t len;
    int idx;
} key_ix;

typedef struct {
    const char *name;
    int64_t idx;
} name_ix;

struct gguf_file {
    const uint8_t *buf;
    size_t size;
    void *map; /* non-NULL when gguf_open owns an mmap of map_size bytes */
    size_t map_size;
    uint32_t version;
    size_t alignment;
    size_t data_start;
    int64_t n_kv;
    kv_entry *kvs;
    key_ix *kv_sorted;
    int64_t n_tensors;
    gguf_tensor *tensors;
    name_ix *t_sorted;
    char *names; /* arena for the NUL-terminated tensor names */
};

/* Key order of kv_sorted (length-aware memcmp); qsort/bsearch comparator. */
int ggi_cmp_key(const void *a, const void *b);
/* Tensor name order of t_sorted (strcmp); qsort/bsearch comparator. */
int ggi_cmp_name(const void *a, const void *b);
/* The entry of `key`, NULL when absent. */
const kv_entry *ggi_find_kv(const gguf_file *g, const char *key);
/* Reads a scalar integer/bool of any width. 1 if `type` is an integer type;
 * *range_err set for a u64 above INT64_MAX. */
int ggi_load_int(uint32_t type, const uint8_t *p, int64_t *out, int *range_err);
/* Reads any numeric scalar as a double. 1 if `type` is numeric. */
int ggi_load_float(uint32_t type, const uint8_t *p, double *out);
/* Fixed byte size of a scalar metadata type; 0 for string/array/unknown. */
size_t ggi_vtype_size(uint32_t t);

#endif
