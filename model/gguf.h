/* gguf: a validating reader for GGUF model files (spec: ggml docs/gguf.md).
 *
 * The file is mmap'ed read-only; every pointer returned below points into the
 * mapping (or into the caller's buffer for gguf_open_memory) and stays valid
 * until gguf_close(). Strings in GGUF are NOT NUL-terminated: they come back as
 * gguf_str {ptr,len}. Tensor names are the exception: the loader keeps a
 * NUL-terminated copy of each, owned by the gguf_file.
 *
 * Validation done at open (any failure returns an error code and a one-line
 * message naming what is wrong, never a crash or an out-of-bounds read):
 * magic, version (2 or 3), counts vs remaining bytes, every string length,
 * metadata value types and array nesting, tensor n_dims (1..4), dims > 0 and
 * element-count overflow, known tensor type, element count a multiple of the
 * type's block size, offset alignment, tensor data inside the file and
 * non-overlapping, `general.alignment` a power of two, duplicate keys or
 * tensor names. Architecture-specific required keys are checked by the model
 * loader (model/llama.c), which knows the architecture. */
#ifndef PIVOT_GGUF_H
#define PIVOT_GGUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct gguf_file gguf_file;

typedef enum {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
} gguf_vtype;

typedef struct {
    const char *ptr; /* not NUL-terminated */
    uint64_t len;
} gguf_str;

typedef struct {
    const char *name; /* NUL-terminated copy owned by the gguf_file */
    int n_dims;       /* 1..4 */
    int64_t ne[4];    /* ne[0] is the contiguous dimension; unused dims = 1 */
    uint32_t type;    /* ggml type id, see kernels/quant.h (KQ_*) */
    uint64_t offset;  /* relative to the data section */
    const void *data; /* points into the mapping */
    size_t nbytes;
} gguf_tensor;

/* Open and validate. On failure returns a PV_* code, *out stays NULL and err
 * (if non-NULL) holds a message such as
 * "gguf: tensor 'blk.0.attn_q.weight' data [1234..5678) extends past end of file (4000 bytes)".
 * Unsupported tensor types give PV_EUNSUPPORTED and
 * "unsupported tensor type X in tensor Y". */
int gguf_open(const char *path, gguf_file **out, char *err, size_t errlen);

/* Same over a caller-owned buffer (fuzzing, tests); the buffer must outlive
 * the gguf_file. */
int gguf_open_memory(const void *data, size_t size, gguf_file **out, char *err, size_t errlen);

void gguf_close(gguf_file *g);

uint32_t gguf_version(const gguf_file *g);
int64_t gguf_n_kv(const gguf_file *g);
int64_t gguf_n_tensors(const gguf_file *g);
size_t gguf_alignment(const gguf_file *g);

/* Metadata. Lookups by full key. Return 0 on success, PV_ENOTFOUND when the
 * key is absent, PV_EINVAL when it has an incompatible type. */
int gguf_find_key(const gguf_file *g, const char *key); /* index or -1 */
gguf_str gguf_key_at(const gguf_file *g, int idx);
gguf_vtype gguf_kv_type(const gguf_file *g, int idx);
/* Any integer width or bool is accepted (files often write u32 where u64 is
 * meant); values that do not fit int64_t give PV_ERANGE. */
int gguf_get_int(const gguf_file *g, const char *key, int64_t *out);
/* FLOAT32 or FLOAT64 (integers accepted too). */
int gguf_get_float(const gguf_file *g, const char *key, double *out);
int gguf_get_bool(const gguf_file *g, const char *key, int *out);
int gguf_get_str(const gguf_file *g, const char *key, gguf_str *out);
/* Arrays: element type and length. Nested arrays report GGUF_TYPE_ARRAY. */
int gguf_get_arr(const gguf_file *g, const char *key, gguf_vtype *elem_type, uint64_t *n);
/* Element i of an array (bounds-checked). */
int gguf_arr_str(const gguf_file *g, const char *key, uint64_t i, gguf_str *out);
int gguf_arr_int(const gguf_file *g, const char *key, uint64_t i, int64_t *out);
int gguf_arr_float(const gguf_file *g, const char *key, uint64_t i, double *out);

/* Tensors. */
const gguf_tensor *gguf_tensor_at(const gguf_file *g, int64_t i);
const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name);

/* Convenience: gguf_str equals a C string. */
int gguf_str_eq(gguf_str s, const char *c);

#endif
