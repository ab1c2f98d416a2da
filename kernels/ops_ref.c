/* ops_ref.c — scalar references of the non-matmul kernels (kernels.h).
 *
 * Plain C, one obvious loop per formula, accumulating in double. These define
 * the answers: the fast variants in ops*.c are tested against them.
 */
#include <math.h>
#include <stdlib.h>

#include "kernels.h"
#include "ops_impl.h"
#include "util.h"

void kern_rmsnorm_ref(float *y, const float *x, const float *w, int n_rows, int n, float eps)
{
	for (int r = 0; r < n_rows; r++) {
		const float *xr = x + (size_t)r * n;
		float *yr = y + (size_t)r * n;
		double ss = 0;
		for (int i = 0; i < n; i++)
			ss += (double)xr[i] * xr[i];
		double scale = 1.0 / sqrt(ss / n + eps);
		for (int i = 0; i < n; i++)
			yr[i] = (float)(xr[i] * scale * w[i]);
	}
}

void kern_layernorm_ref(float *y, const float *x, const float *w, const float *b, int n_rows, int n,
			float eps)
{
	for (int r = 0; r < n_rows; r++) {
		const float *xr = x + (size_t)r * n;
		float *yr = y + (size_t)r * n;
		double mean = 0, var = 0;
		for (int i = 0; i < n; i++)
			mean += xr[i];
		mean /= n;
		for (int i = 0; i < n; i++)
			var += (xr[i] - mean) * (xr[i] - mean);
		double scale = 1.0 / sqrt(var / n + eps);
		for (int i = 0; i < n; i++)
			yr[i] = (float)((xr[i] - mean) * scale * w[i] + b[i]);
	}
}

/* Rotate (x0, x1) by the angle whose cos and sin are c, s. */
static void rotate_pair(float *x0, float *x1, double c, double s)
{
	double a = *x0, b = *x1;
	*x0 = (float)(a * c - b * s);
	*x1 = (float)(a * s + b * c);
}

void kern_rope_ref(float *x, const int32_t *pos, int n_tok, int n_head, int head_dim,
		   const struct kern_rope *r)
{
	ASSERT(r->n_rot % 2 == 0 && r->n_rot <= head_dim);
	ASSERT(r->mode == KERN_ROPE_NORM || r->mode == KERN_ROPE_NEOX);
	int half = r->n_rot / 2;
	for (int t = 0; t < n_tok; t++) {
		for (int h = 0; h < n_head; h++) {
			float *xh = x + ((size_t)t * n_head + h) * head_dim;
			for (int i = 0; i < half; i++) {
				float c, s;
				ops_rope_cs(pos[t], r->inv_freq[i], &c, &s);
				if (r->mode == KERN_ROPE_NORM)
					rotate_pair(&xh[2 * i], &xh[2 * i + 1], c, s);
				else
					rotate_pair(&xh[i], &xh[i + half], c, s);
			}
		}
	}
}

void kern_softmax_ref(float *x, int n)
{
	if (n <= 0)
		return;
	double max = x[0];
	for (int i = 1; i < n; i++)
		if (x[i] > max)
			max = x[i];
	double sum = 0;
	for (int i = 0; i < n; i++)
		sum += exp(x[i] - max);
	for (int i = 0; i < n; i++)
		x[i] = (float)(exp(x[i] - max) / sum);
}

void kern_swiglu_ref(float *out, const float *gate, const float *up, int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		double g = gate[i];
		out[i] = (float)(g / (1.0 + exp(-g)) * up[i]);
	}
}

void kern_gelu_ref(float *out, const float *x, int64_t n)
{
	const double c = sqrt(2.0 / M_PI);
	for (int64_t i = 0; i < n; i++) {
		double v = x[i];
		out[i] = (float)(0.5 * v * (1.0 + tanh(c * (v + 0.044715 * v * v * v))));
	}
}

/* Dot product of two rows of n floats, in double. */
static double dot_ref(const float *a, const float *b, int n)
{
	double s = 0;
	for (int d = 0; d < n; d++)
		s += (double)a[d] * b[d];
	return s;
}

/* The score of one visible key, in double: q . k * scale, soft-capped. */
static double score_ref(const float *q, const float *k, int head_dim, double scale, double cap)
{
	double x = dot_ref(q, k, head_dim) * scale;
	return cap > 0 ? cap * tanh(x / cap) : x;
}

/* One (query, head): out = sum_j softmax_j(score_j) v_j over the keys j it sees
 * (lo < k_pos[j] <= qp). */
static void attend_ref(float *out, const float *q, const float *k, const float *v, int kv_stride,
		       int32_t qp, int32_t lo, const int32_t *k_pos, int n_kv, int head_dim, double scale,
		       double cap, double *acc)
{
	double max = -INFINITY, sum = 0;
	for (int j = 0; j < n_kv; j++)
		if (k_pos[j] <= qp && k_pos[j] > lo)
			max = fmax(max, score_ref(q, k + (size_t)j * kv_stride, head_dim, scale, cap));
	for (int d = 0; d < head_dim; d++)
		acc[d] = 0;
	for (int j = 0; j < n_kv && max > -INFINITY; j++) {
		if (k_pos[j] > qp || k_pos[j] <= lo)
			continue;
		double p = exp(score_ref(q, k + (size_t)j * kv_stride, head_dim, scale, cap) - max);
		sum += p;
		for (int d = 0; d < head_dim; d++)
			acc[d] += p * v[(size_t)j * kv_stride + d];
	}
	for (int d = 0; d < head_dim; d++)
		out[d] = sum > 0 ? (float)(acc[d] / sum) : 0.0f;
}

void kern_attention_ref(float *out, const float *q, int q_stride,
			const float *k, const float *v, int kv_stride,
			const int32_t *q_pos, const int32_t *k_pos, int n_q, int n_kv,
			int n_head, int n_kv_head, int head_dim)
{
	kern_attention_ex_ref(out, q, q_stride, k, v, kv_stride, q_pos, k_pos, 0, n_q, n_kv, n_head, n_kv_head,
			      head_dim, NULL);
}

void kern_attention_ph_ref(float *out, const float *q, int q_stride,
			   const float *k, const float *v, int kv_stride,
			   const int32_t *q_pos, const int32_t *k_pos, int k_pos_hstride, int n_q, int n_kv,
			   int n_head, int n_kv_head, int head_dim)
{
	kern_attention_ex_ref(out, q, q_stride, k, v, kv_stride, q_pos, k_pos, k_pos_hstride, n_q, n_kv, n_head,
			      n_kv_head, head_dim, NULL);
}

void kern_attention_ex_ref(float *out, const float *q, int q_stride,
			   const float *k, const float *v, int kv_stride,
			   const int32_t *q_pos, const int32_t *k_pos, int k_pos_hstride, int n_q, int n_kv,
			   int n_head, int n_kv_head, int head_dim, const struct kern_att_opts *o)
{
	ASSERT(n_kv_head > 0 && n_head % n_kv_head == 0);
	const struct kern_att_opts none = { 0 };
	if (!o)
		o = &none;
	int n_rep = n_head / n_kv_head;
	double scale = o->scale > 0 ? o->scale : 1.0 / sqrt((double)head_dim);
	double *acc = malloc((size_t)head_dim * sizeof *acc);
	ASSERT(acc);
	for (int i = 0; i < n_q; i++) {
		int32_t lo = o->window > 0 ? q_pos[i] - o->window : INT32_MIN;
		for (int h = 0; h < n_head; h++) {
			size_t qo = (size_t)i * q_stride + (size_t)h * head_dim;
			size_t ko = (size_t)(h / n_rep) * head_dim;
			attend_ref(out + qo, q + qo, k + ko, v + ko, kv_stride, q_pos[i], lo,
				   k_pos + (size_t)(h / n_rep) * k_pos_hstride, n_kv, head_dim, scale, o->softcap, acc);
		}
	}
	free(acc);
}

/* One (query, head) of APE attention (kernels.h): each group's log-sum-exp and
 * softmax-weighted V in double, then merged with the context's weight
 * e^(S * T * lse_C). */
static void attend_ape_ref(float *out, const float *q, const float *k, const float *v, int kv_stride,
			   int32_t qp, const int32_t *k_pos, int n_kv, int head_dim, const struct kern_ape *ape,
			   double *acc)
{
	const double scale = 1.0 / sqrt((double)head_dim), T = ape->temp, S = ape->scale;
	double *gacc[2] = { acc, acc + head_dim }, lse[2];
	for (int g = 0; g < 2; g++) { /* g = 0: the other keys, 1: the context */
		const double t = g ? T : 1.0;
		double max = -INFINITY, sum = 0;
		for (int j = 0; j < n_kv; j++)
			if (k_pos[j] <= qp && (j >= ape->ctx0 && j < ape->ctx1) == (g == 1))
				max = fmax(max, dot_ref(q, k + (size_t)j * kv_stride, head_dim) * scale / t);
		for (int d = 0; d < head_dim; d++)
			gacc[g][d] = 0;
		for (int j = 0; j < n_kv && max > -INFINITY; j++) {
			if (k_pos[j] > qp || (j >= ape->ctx0 && j < ape->ctx1) != (g == 1))
				continue;
			double p = exp(dot_ref(q, k + (size_t)j * kv_stride, head_dim) * scale / t - max);
			sum += p;
			for (int d = 0; d < head_dim; d++)
				gacc[g][d] += p * v[(size_t)j * kv_stride + d];
		}
		for (int d = 0; d < head_dim && sum > 0; d++)
			gacc[g][d] /= sum;
		lse[g] = sum > 0 ? max + log(sum) : -INFINITY;
	}
	lse[1] *= S * T;
	const double m = fmax(lse[0], lse[1]);
	const double w0 = lse[0] > -INFINITY ? exp(lse[0] - m) : 0, w1 = lse[1] > -INFINITY ? exp(lse[1] - m) : 0;
	for (int d = 0; d < head_dim; d++)
		out[d] = w0 + w1 > 0 ? (float)((w0 * gacc[0][d] + w1 * gacc[1][d]) / (w0 + w1)) : 0.0f;
}

void kern_attention_ape_ref(float *out, const float *q, int q_stride,
			    const float *k, const float *v, int kv_stride,
			    const int32_t *q_pos, const int32_t *k_pos, int n_q, int n_kv,
			    int n_head, int n_kv_head, int head_dim, const struct kern_ape *ape)
{
	ASSERT(n_kv_head > 0 && n_head % n_kv_head == 0 && ape->temp > 0 && ape->scale > 0);
	int n_rep = n_head / n_kv_head;
	double *acc = malloc((size_t)2 * head_dim * sizeof *acc);
	ASSERT(acc);
	for (int i = 0; i < n_q; i++) {
		for (int h = 0; h < n_head; h++) {
			size_t qo = (size_t)i * q_stride + (size_t)h * head_dim;
			size_t ko = (size_t)(h / n_rep) * head_dim;
			attend_ape_ref(out + qo, q + qo, k + ko, v + ko, kv_stride, q_pos[i], k_pos, n_kv, head_dim,
				       ape, acc);
		}
	}
	free(acc);
}
