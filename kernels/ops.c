#include "ops.h"

#include <math.h>
#include <stddef.h>

void ko_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    /* Accumulate in double: n is small (hidden size) and this keeps the
     * normalization from drifting against the reference at long sums. */
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

void ko_rope(float *x, int n_heads, int head_dim, int rope_dim, int pos, float base, int neox) {
    int half = rope_dim / 2;
    for (int i = 0; i < half; i++) {
        /* theta_i = pos * base^(-2i/rope_dim); computed in double because
         * pos * freq loses precision in float at long positions. */
        double freq = pow((double)base, -2.0 * i / rope_dim);
        double ang = pos * freq;
        float c = (float)cos(ang), s = (float)sin(ang);
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)h * head_dim;
            int a = neox ? i : 2 * i;
            int b = neox ? i + half : 2 * i + 1;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * c - x1 * s;
            v[b] = x0 * s + x1 * c;
        }
    }
}

void ko_swiglu(float *out, const float *gate, const float *up, int n) {
    for (int i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void ko_add(float *y, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += x[i];
}

float ko_softmax(float *x, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if (x[i] > mx) mx = x[i];
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
    return mx;
}
