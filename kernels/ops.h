/* ko: the small element-wise kernels of the forward pass (f32). */
#ifndef PIVOT_KO_OPS_H
#define PIVOT_KO_OPS_H

/* out = x / sqrt(mean(x^2) + eps) * w, n elements (out may alias x). */
void ko_rmsnorm(float *out, const float *x, const float *w, int n, float eps);
/* Rotary embedding in place for one token: n_heads heads of head_dim floats,
 * the first rope_dim of each rotated. neox: pairs (i, i + rope_dim/2);
 * otherwise adjacent pairs (2i, 2i+1). theta_i = pos * base^(-2i/rope_dim). */
void ko_rope(float *x, int n_heads, int head_dim, int rope_dim, int pos, float base, int neox);
/* ko_rope in two steps, for a position whose angles serve many vectors (a
 * token's q and k in every layer): cs[2i], cs[2i+1] = cos, sin of theta_i
 * for i < rope_dim/2 (rope_dim floats), then the rotation with them. The
 * same bits as ko_rope. */
void ko_rope_angles(float *cs, int rope_dim, int pos, float base);
void ko_rope_cs(float *x, int n_heads, int head_dim, int rope_dim, const float *cs, int neox);
/* out = silu(gate) * up. */
void ko_swiglu(float *out, const float *gate, const float *up, int n);
/* y += x */
void ko_add(float *y, const float *x, int n);
/* In-place softmax; returns the max (for log-sum-exp users). */
float ko_softmax(float *x, int n);

#endif
