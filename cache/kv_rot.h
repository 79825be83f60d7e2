/* kv_rot: the fixed randomized Hadamard rotation the mixed cache applies to
 * keys, values and queries when its policy says rotate=1.
 *
 * R = H·D/√d, with H the d×d Walsh–Hadamard matrix (d a power of two) and
 * D a diagonal of ±1 signs drawn per (layer, KV head) from a fixed seed.
 * R is orthogonal, so (Rq)·(Rk) = q·k and Σ p·Rv = R·Σ p·v: attention over
 * rotated keys and values with a rotated query, rotated back, is attention
 * unchanged in exact arithmetic. What it buys is in the quantizer: an
 * outlier channel's energy is spread over all d channels, so the range a
 * group's scale must cover shrinks, and INT2/INT4 codes lose less. The
 * signs keep a structured input (one hot channel, a constant vector) from
 * mapping onto a single Hadamard row.
 *
 * Nothing here allocates; the signs are the caller's d floats. */
#ifndef PIVOT_KV_ROT_H
#define PIVOT_KV_ROT_H

/* 1 when d is a power of two in [8, 4096] (what the transform needs). */
int kvr_supported(int d);
/* The ±1 signs of (layer, head): the same for every cache and run. */
void kvr_signs(int layer, int head, int d, float *signs);
/* x <- R x (forward: before storing a key or value, on the query). */
void kvr_forward(const float *signs, int d, float *x);
/* x <- Rᵀ x (inverse: on the attention output). */
void kvr_inverse(const float *signs, int d, float *x);

#endif
