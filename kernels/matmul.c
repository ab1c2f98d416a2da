/* matmul.c — kern_matmul: the dispatcher, the threading and the portable C
 * variant. The SIMD variants live in matmul_avx2.c and matmul_avx512.c; all
 * share the driver here: quantize the activations (quantized weights only:
 * blocks of 32, or K-quant records of 256), then split the output rows into
 * blocks of MM_ROW_BLOCK across threads. */
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "matmul_impl.h"
#include "pool.h"
#include "util.h"

/* Below this many multiply-adds a call runs on one thread. */
#define MM_PAR_MIN (1 << 17)
/* Row-block runs handed out per thread. */
#define MM_ITEMS_PER_THREAD 4
/* From this many tokens the activations are quantized by all threads. */
#define MM_PAR_QUANT_MIN 32
/* Tokens per pass over a weight row in the portable variant. */
#define GEN_TOK 8

/* Weight types whose kernels take quantized activations. */
static int is_q(int wtype)
{
	return wtype == QTYPE_Q8_0 || wtype == QTYPE_Q4_0 || mm_is_k(wtype);
}

size_t kern_matmul_wsize(int wtype, int n_tok, int n_in)
{
	if (!is_q(wtype) || n_tok <= 0)
		return 0;
	if (mm_is_k(wtype)) /* rows or tiles of MM_XT tokens, one record per super-block */
		return (size_t)mm_round_up(n_tok, MM_XT) * (size_t)(n_in / QK_K) * MM_KX_REC;
	size_t rows = (size_t)n_tok * mm_xq_stride(n_in / 32);
	size_t tiled = (size_t)mm_round_up(n_tok, MM_XT) / MM_XT * (n_in / 32) * MM_XT_BLOCK;
	return rows > tiled ? rows : tiled;
}

/* ---- activation quantization (portable) ---- */

/* v rounded to nearest even in [-127, 127] (v is finite: see below). */
static int gen_quant(float v)
{
	if (!(v >= -127.0f && v <= 127.0f))
		return v < 0 ? -127 : 127;
	return (int)nearbyintf(v);
}

/* A block holding NaN or infinity is quantized as zeros with a NaN scale (every
 * ISA does the same), so the products it enters are NaN, as they are in f32,
 * and no NaN is ever converted to an integer. */
static bool gen_nonfinite(const float *x, int n)
{
	bool bad = false;
	for (int j = 0; j < n; j++)
		bad |= !(fabsf(x[j]) <= FLT_MAX);
	return bad;
}

void mm_quant_generic(const struct mm_args *a, int t)
{
	const float *x = a->x + (size_t)t * a->n_in;
	int8_t *qs = mm_xq_qs(a, t);
	float *d = mm_xq_d(a, t), *c = mm_xq_c(a, t);
	int32_t *ks = mm_xq_ks(a, t);
	int nb2 = mm_round_up(a->nb, 2), nbp = mm_round_up(a->nb, 16), k = mm_offset(a->wtype);

	for (int b = 0; b < a->nb; b++, x += 32) {
		if (gen_nonfinite(x, 32)) {
			memset(qs + b * 32, 0, 32);
			d[b] = c[b] = NAN, ks[b] = 0;
			continue;
		}
		float amax = 0;
		for (int j = 0; j < 32; j++)
			amax = fmaxf(amax, fabsf(x[j]));
		float db = amax / 127, id = db != 0 ? 1.0f / db : 0.0f;
		int sum = 0;
		for (int j = 0; j < 32; j++) {
			int q = gen_quant(x[j] * id);
			qs[b * 32 + j] = (int8_t)q;
			sum += q;
		}
		d[b] = db;
		c[b] = db * (float)sum;
		ks[b] = -k * sum;
	}
	memset(qs + a->nb * 32, 0, (size_t)(nb2 - a->nb) * 32);
	for (int b = a->nb; b < nbp; b++)
		d[b] = c[b] = 0, ks[b] = 0;
}

/* Token t (>= n_tok: zeros) into its K-quant records (see matmul_impl.h). */
void mm_quant_k_generic(const struct mm_args *a, int t)
{
	int g = mm_k_group(a->wtype);
	for (int b = 0; b < a->nb; b++) {
		uint8_t *rec = mm_kx_rec(a, t, b);
		int8_t *qs = (int8_t *)rec;
		float *fx = (float *)(rec + MM_KX_FX), *d = (float *)(rec + MM_KX_D);
		if (t >= a->n_tok) {
			memset(rec, 0, MM_KX_D + sizeof(float));
			continue;
		}
		const float *x = a->x + (size_t)t * a->n_in + (size_t)b * QK_K;
		if (gen_nonfinite(x, QK_K)) {
			memset(qs, 0, QK_K);
			for (int k = 0; k < 16; k++)
				fx[k] = NAN;
			*d = NAN;
			continue;
		}
		float amax = 0;
		for (int j = 0; j < QK_K; j++)
			amax = fmaxf(amax, fabsf(x[j]));
		float db = amax / 127, id = db != 0 ? 1.0f / db : 0.0f;
		for (int k = 0; k < 16; k++)
			fx[k] = 0;
		for (int j = 0; j < QK_K; j++) {
			qs[j] = (int8_t)gen_quant(x[j] * id);
			fx[j / g] += (float)qs[j]; /* integers < 2^13: exact */
		}
		for (int k = 0; k < 16; k++)
			fx[k] *= db;
		*d = db;
	}
}

/* ---- K-quant super-blocks, unpacked (portable) ---- */

void mm_kq_scales(int wtype, const uint8_t *row, int b, struct mm_kq_block *o)
{
	if (wtype == QTYPE_Q6_K) {
		const block_q6_K *k = (const block_q6_K *)row + b;
		for (int j = 0; j < 16; j++)
			o->sc[j] = k->scales[j], o->m[j] = 32 * k->scales[j];
		o->ng = 16;
		o->d = o->dm = fp16_to_fp32(k->d);
		return;
	}
	/* Q4_K, Q5_K: the same header */
	const block_q4_K *k = (const block_q4_K *)(row + (size_t)b * mm_kq_bytes(wtype));
	for (int j = 0; j < 8; j++)
		kq_scale_min(k->scales, j, &o->sc[j], &o->m[j]);
	o->ng = 8;
	o->d = fp16_to_fp32(k->d);
	o->dm = fp16_to_fp32(k->dmin);
}

/* 8 bytes at a time (the per-byte masks keep shifted bits in their byte). */
static uint64_t ld64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static void st64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

#define B8(x) (0x0101010101010101ull * (x))

void mm_kq_unpack(int wtype, const uint8_t *row, int b, struct mm_kq_block *o)
{
	mm_kq_scales(wtype, row, b, o);
	if (wtype == QTYPE_Q6_K) {
		/* half h, l < 32: ql[64h + l] feeds elements l (low nibble), l + 64 (high),
		 * ql[64h + 32 + l] elements l + 32, l + 96; bits 2i of qh[32h + l] are the
		 * top 2 bits of element 32i + l */
		const block_q6_K *k = (const block_q6_K *)row + b;
		for (int h = 0; h < 2; h++) {
			const uint8_t *ql = k->ql + 64 * h, *qh = k->qh + 32 * h;
			uint8_t *q = o->q + 128 * h;
			for (int l = 0; l < 32; l += 8) {
				uint64_t a = ld64(ql + l), c = ld64(ql + 32 + l), hb = ld64(qh + l);
				st64(q + l, (a & B8(15)) | (hb & B8(3)) << 4);
				st64(q + l + 32, (c & B8(15)) | (hb >> 2 & B8(3)) << 4);
				st64(q + l + 64, (a >> 4 & B8(15)) | (hb >> 4 & B8(3)) << 4);
				st64(q + l + 96, (c >> 4 & B8(15)) | (hb >> 6 & B8(3)) << 4);
			}
		}
		return;
	}
	/* Q4_K, Q5_K: qs[32k + l] holds elements 64k + l (low nibble), 64k + 32 + l
	 * (high); Q5_K adds a fifth bit, bit j of qh[l] for element 32j + l */
	const uint8_t *blk = row + (size_t)b * mm_kq_bytes(wtype);
	const uint8_t *qs = wtype == QTYPE_Q4_K ? ((const block_q4_K *)blk)->qs : ((const block_q5_K *)blk)->qs;
	const uint8_t *qh = wtype == QTYPE_Q5_K ? ((const block_q5_K *)blk)->qh : NULL;
	for (int j = 0; j < 8; j++) {
		for (int l = 0; l < 32; l += 8) {
			uint64_t v = ld64(qs + 32 * (j / 2) + l) >> (j & 1 ? 4 : 0) & B8(15);
			if (qh)
				v |= (ld64(qh + l) >> j & B8(1)) << 4;
			st64(o->q + 32 * j + l, v);
		}
	}
}

/* ---- the portable variant ---- */

/* Signed quants of weight block b of a row: Q8_0 as is, Q4_0 as q - 8. */
static float gen_unpack(int wtype, const uint8_t *row, int b, int8_t q[32])
{
	if (wtype == QTYPE_Q8_0) {
		const block_q8_0 *blk = (const block_q8_0 *)row + b;
		memcpy(q, blk->qs, 32);
		return fp16_to_fp32(blk->d);
	}
	const block_q4_0 *blk = (const block_q4_0 *)row + b;
	for (int j = 0; j < 16; j++) {
		q[j] = (int8_t)((blk->qs[j] & 0x0f) - 8);
		q[j + 16] = (int8_t)((blk->qs[j] >> 4) - 8);
	}
	return fp16_to_fp32(blk->d);
}

static int gen_dot_i8(const int8_t *a, const int8_t *b)
{
	int s = 0;
	for (int j = 0; j < 32; j++)
		s += a[j] * b[j];
	return s;
}

/* Quantized weights: each block unpacked once for GEN_TOK tokens. */
static void gen_rows_q(const struct mm_args *a, int r0, int r1)
{
	int8_t wq[32];
	float acc[GEN_TOK];

	for (int r = r0; r < r1; r++) {
		const uint8_t *row = a->w + (size_t)r * a->w_stride;
		for (int t0 = 0; t0 < a->n_tok; t0 += GEN_TOK) {
			int nt = a->n_tok - t0 < GEN_TOK ? a->n_tok - t0 : GEN_TOK;
			for (int t = 0; t < nt; t++)
				acc[t] = 0;
			for (int b = 0; b < a->nb; b++) {
				float dw = gen_unpack(a->wtype, row, b, wq);
				for (int t = 0; t < nt; t++) {
					int s = gen_dot_i8(wq, mm_xq_qs(a, t0 + t) + b * 32);
					acc[t] += dw * mm_xq_d(a, t0 + t)[b] * (float)s;
				}
			}
			for (int t = 0; t < nt; t++)
				a->y[(size_t)(t0 + t) * a->n_out + r] = acc[t];
		}
	}
}

/* Dot product of 16 unsigned quants with 16 int8 activations. */
static int gen_dot_u8_16(const uint8_t *q, const int8_t *x)
{
	int s = 0;
	for (int j = 0; j < 16; j++)
		s += q[j] * x[j];
	return s;
}

/* K-quant weights: each super-block unpacked once for GEN_TOK tokens. */
static void gen_rows_k(const struct mm_args *a, int r0, int r1)
{
	struct mm_kq_block kb;
	float acc[GEN_TOK];

	for (int r = r0; r < r1; r++) {
		const uint8_t *row = a->w + (size_t)r * a->w_stride;
		for (int t0 = 0; t0 < a->n_tok; t0 += GEN_TOK) {
			int nt = a->n_tok - t0 < GEN_TOK ? a->n_tok - t0 : GEN_TOK;
			for (int t = 0; t < nt; t++)
				acc[t] = 0;
			for (int b = 0; b < a->nb; b++) {
				mm_kq_unpack(a->wtype, row, b, &kb);
				int g = QK_K / kb.ng;
				for (int t = 0; t < nt; t++) {
					const uint8_t *rec = mm_kx_rec(a, t0 + t, b);
					const int8_t *xq = (const int8_t *)rec;
					const float *fx = (const float *)(rec + MM_KX_FX);
					float dx;
					memcpy(&dx, rec + MM_KX_D, sizeof dx);
					int isum = 0;
					float msum = 0;
					for (int j = 0; j < kb.ng; j++) {
						int s = gen_dot_u8_16(kb.q + j * g, xq + j * g);
						if (g == 32)
							s += gen_dot_u8_16(kb.q + j * g + 16, xq + j * g + 16);
						isum += kb.sc[j] * s;
						msum += (float)kb.m[j] * fx[j];
					}
					acc[t] += kb.d * dx * (float)isum - kb.dm * msum;
				}
			}
			for (int t = 0; t < nt; t++)
				a->y[(size_t)(t0 + t) * a->n_out + r] = acc[t];
		}
	}
}

/* Float dot product with 8 partial sums (so the compiler can vectorize). */
static float gen_dot_f32(const float *u, const float *v, int n)
{
	float s[8] = { 0 };
	int i = 0;
	for (; i + 8 <= n; i += 8)
		for (int j = 0; j < 8; j++)
			s[j] += u[i + j] * v[i + j];
	for (; i < n; i++)
		s[0] += u[i] * v[i];
	return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

/* Float weights: rows converted to f32 a chunk at a time, used for GEN_TOK tokens. */
static void gen_rows_f(const struct mm_args *a, int r0, int r1)
{
	const struct qtype_traits *tr = qtype_traits(a->wtype);
	float wf[MM_KCHUNK], acc[GEN_TOK];
	size_t esz = tr->type_size;

	for (int r = r0; r < r1; r++) {
		const uint8_t *row = a->w + (size_t)r * a->w_stride;
		for (int t0 = 0; t0 < a->n_tok; t0 += GEN_TOK) {
			int nt = a->n_tok - t0 < GEN_TOK ? a->n_tok - t0 : GEN_TOK;
			for (int t = 0; t < nt; t++)
				acc[t] = 0;
			for (int k0 = 0; k0 < a->n_in; k0 += MM_KCHUNK) {
				int n = a->n_in - k0 < MM_KCHUNK ? a->n_in - k0 : MM_KCHUNK;
				tr->to_float(row + (size_t)k0 * esz, wf, n);
				for (int t = 0; t < nt; t++)
					acc[t] += gen_dot_f32(wf, a->x + (size_t)(t0 + t) * a->n_in + k0, n);
			}
			for (int t = 0; t < nt; t++)
				a->y[(size_t)(t0 + t) * a->n_out + r] = acc[t];
		}
	}
}

const struct mm_isa mm_isa_generic = {
	.quant = mm_quant_generic,
	.quant_k = mm_quant_k_generic,
	.rows = {
		[QTYPE_F32] = gen_rows_f,
		[QTYPE_F16] = gen_rows_f,
		[QTYPE_BF16] = gen_rows_f,
		[QTYPE_Q8_0] = gen_rows_q,
		[QTYPE_Q4_0] = gen_rows_q,
		[QTYPE_Q4_K] = gen_rows_k,
		[QTYPE_Q5_K] = gen_rows_k,
		[QTYPE_Q6_K] = gen_rows_k,
	},
};

/* ---- dispatch ---- */

/* Row block i of the output. */
static void mm_rows_block(const struct mm_args *a, mm_rows_fn *rows, int i)
{
	int r0 = i * MM_ROW_BLOCK;
	rows(a, r0, r0 + MM_ROW_BLOCK < a->n_out ? r0 + MM_ROW_BLOCK : a->n_out);
}

static const struct mm_isa *mm_isa_for(enum kern_level l)
{
	switch (l) {
	case KERN_AVX512:
		return &mm_isa_avx512;
	case KERN_AVX2:
		return &mm_isa_avx2;
	default:
		return &mm_isa_generic;
	}
}

struct mm_task {
	const struct mm_args *a;
	mm_rows_fn *rows;
	mm_quant_fn *quant;
	int tq; /* tokens quantized per item */
	long n_rb, n_items; /* row blocks, and the items they are handed out in */
};

static void mm_quant_item(void *ctx, long i, int thread)
{
	const struct mm_task *k = ctx;
	(void)thread;
	for (int t = (int)i * k->tq; t < ((int)i + 1) * k->tq; t++)
		k->quant(k->a, t);
}

/* Item i of n_items: a run of consecutive row blocks. */
static void mm_rows_item(void *ctx, long i, int thread)
{
	const struct mm_task *k = ctx;
	(void)thread;
	for (long b = k->n_rb * i / k->n_items; b < k->n_rb * (i + 1) / k->n_items; b++)
		mm_rows_block(k->a, k->rows, (int)b);
}

/* Quantize (quantized weights), then every row block; threads when it pays. */
static void mm_run(const struct mm_isa *isa, struct mm_args *a)
{
	struct mm_task k = {
		.a = a, .rows = isa->rows[a->wtype],
		.quant = !mm_is_k(a->wtype) ? isa->quant : isa->quant_k ? isa->quant_k : mm_quant_k_generic,
		.tq = a->xtiled ? MM_XT : 1, /* a tiled record is one thread's */
	};
	int q = is_q(a->wtype);
	int n_rb = (a->n_out + MM_ROW_BLOCK - 1) / MM_ROW_BLOCK;
	/* Every task costs a few hundred nanoseconds of handing out: small calls
	 * run on this thread alone, and few tokens are quantized here rather than
	 * as a task of their own. */
	int par = (double)a->n_tok * a->n_in * a->n_out >= MM_PAR_MIN && kern_threads() > 1;
	int n_q = (a->n_tok + k.tq - 1) / k.tq;

	if (q && par && a->n_tok >= MM_PAR_QUANT_MIN)
		kern_parallel(n_q, 0, mm_quant_item, &k);
	else if (q)
		for (int i = 0; i < n_q; i++)
			mm_quant_item(&k, i, 0);
	/* a few items a thread: enough that the threads that run take over the
	 * share of one that does not, few enough that handing them out (an atomic
	 * on a line the threads share) stays small beside a decode's microseconds */
	k.n_rb = n_rb;
	k.n_items = n_rb < MM_ITEMS_PER_THREAD * kern_threads() ? n_rb : MM_ITEMS_PER_THREAD * kern_threads();
	if (par)
		kern_parallel(k.n_items, 0, mm_rows_item, &k);
	else
		for (int i = 0; i < n_rb; i++)
			mm_rows_block(a, k.rows, i);
}

/* ---- the matrix-vector plan ---- */

/* The variants one-token products can run, and the level each needs. */
static const struct mv_variant {
	const char *name;
	enum kern_level level;
	const struct mm_isa *isa;
} mv_variants[] = {
	{ "generic", KERN_GENERIC, &mm_isa_generic },
	{ "avx2", KERN_AVX2, &mm_isa_avx2 },
	{ "vnni256", KERN_AVX512, &mm_isa_vnni256 },
	{ "avx512", KERN_AVX512, &mm_isa_avx512 },
};
#define MV_N (int)(sizeof mv_variants / sizeof *mv_variants)

/* Per weight type, the variant one-token products run (index + 1; 0: the
 * chosen level's own). Set by kern_plan_matvec, cleared by kern_set_isa. */
static int mv_plan[QTYPE_COUNT];

void kern_plan_clear(void)
{
	memset(mv_plan, 0, sizeof mv_plan);
}

/* The variant that is the chosen level's own. */
static int mv_own(void)
{
	for (int v = 0; v < MV_N; v++)
		if (mv_variants[v].isa == mm_isa_for(kern_level))
			return v;
	return 0;
}

const char *kern_matvec_isa(int wtype)
{
	ASSERT(wtype >= 0 && wtype < QTYPE_COUNT);
	if (kern_level == KERN_REF)
		return "ref";
	return mv_variants[mv_plan[wtype] ? mv_plan[wtype] - 1 : mv_own()].name;
}

/* Seconds of the fastest of reps one-token products through variant v. */
static double mv_time(int v, float *y, const float *x, const void *w, int wtype, int n_in, int n_out, void *ws,
		      int reps)
{
	mv_plan[wtype] = v + 1;
	double best = 1e30;
	for (int r = 0; r <= reps; r++) { /* the first warms caches and pages */
		double t0 = kb_now();
		kern_matmul(y, x, w, wtype, 1, n_in, n_out, ws);
		double t = kb_now() - t0;
		if (r && t < best)
			best = t;
	}
	return best;
}

int kern_plan_use(int wtype, const char *name, struct kern_plan *p)
{
	ASSERT(wtype >= 0 && wtype < QTYPE_COUNT);
	memset(p, 0, sizeof *p);
	p->wtype = wtype;
	p->isa = kern_matvec_isa(wtype);
	if (kern_level == KERN_REF)
		return -1;
	for (int v = 0; v < MV_N; v++)
		if (!strcmp(name, mv_variants[v].name) && mv_variants[v].level <= kern_level &&
		    mv_variants[v].isa->rows[wtype]) {
			mv_plan[wtype] = v == mv_own() ? 0 : v + 1;
			p->isa = mv_variants[v].name;
			return 0;
		}
	return -1;
}

int kern_plan_matvec(const void *w, int wtype, int n_in, int n_out, struct kern_plan *p)
{
	ASSERT(wtype >= 0 && wtype < QTYPE_COUNT && qtype_traits(wtype));
	memset(p, 0, sizeof *p);
	p->wtype = wtype;
	p->isa = kern_matvec_isa(wtype);
	if (kern_level == KERN_REF)
		return 0;
	const char *force = getenv("KVBLEND_MATVEC");
	if (force && *force) {
		if (kern_plan_use(wtype, force, p))
			return -1;
		p->forced = 1;
		return 0;
	}
	/* candidates: the chosen level's own first, then the others it can run
	 * down to AVX2 (what AMD's cores that split 512-bit operations may prefer) */
	int cand[KERN_PLAN_MAX], n_cand = 0, own = mv_own();
	cand[n_cand++] = own;
	for (int v = MV_N - 1; v >= 0; v--)
		if (v != own && mv_variants[v].level >= KERN_AVX2 && mv_variants[v].level <= kern_level &&
		    mv_variants[v].isa->rows[wtype] && n_cand < KERN_PLAN_MAX)
			cand[n_cand++] = v;
	if (n_cand == 1)
		return 0;
	size_t wsz = kern_matmul_wsize(wtype, 1, n_in);
	float *x = kb_aligned_alloc(64, (size_t)n_in * sizeof *x), *y = kb_aligned_alloc(64, (size_t)n_out * sizeof *y);
	void *ws = wsz ? kb_aligned_alloc(64, wsz) : NULL;
	if (!x || !y || (wsz && !ws)) {
		free(x), free(y), free(ws);
		return 0; /* no plan: the chosen level's own */
	}
	uint64_t st = 0x9e3779b97f4a7c15ull;
	for (int i = 0; i < n_in; i++) {
		st = st * 6364136223846793005ull + 1442695040888963407ull;
		x[i] = (float)((int)(st >> 40) % 2001 - 1000) / 1000.0f;
	}
	/* interleaved, best of each: a burst of load elsewhere hits them all */
	double best[KERN_PLAN_MAX];
	for (int c = 0; c < n_cand; c++)
		best[c] = 1e30;
	for (int round = 0; round < 3; round++)
		for (int c = 0; c < n_cand; c++) {
			double t = mv_time(cand[c], y, x, w, wtype, n_in, n_out, ws, 3);
			best[c] = t < best[c] ? t : best[c];
		}
	/* the level's own unless another is clearly (5%) faster: the plan
	 * should not flip between runs on noise */
	int pick = 0;
	for (int c = 1; c < n_cand; c++)
		if (best[c] < 0.95 * best[0] && best[c] < best[pick])
			pick = c;
	mv_plan[wtype] = pick ? cand[pick] + 1 : 0;
	p->isa = mv_variants[cand[pick]].name;
	for (int c = 0; c < n_cand; c++) {
		p->cand[c] = mv_variants[cand[c]].name;
		p->us[c] = best[c] * 1e6;
	}
	p->n_cand = n_cand;
	free(x), free(y), free(ws);
	return 0;
}

void kern_matmul(float *y, const float *x, const void *w, int wtype,
		 int n_tok, int n_in, int n_out, void *ws)
{
	ASSERT(wtype >= 0 && wtype < QTYPE_COUNT && qtype_traits(wtype));
	const struct mm_isa *isa = n_tok == 1 && mv_plan[wtype] ? mv_variants[mv_plan[wtype] - 1].isa
							       : mm_isa_for(kern_level);
	if (!isa->rows[wtype])
		isa = &mm_isa_generic;
	if (kern_level == KERN_REF || !isa->rows[wtype]) {
		kern_matmul_ref(y, x, w, wtype, n_tok, n_in, n_out);
		return;
	}
	if (n_tok <= 0 || n_out <= 0)
		return;
	ASSERT(n_in % qtype_traits(wtype)->blck_size == 0);
	ASSERT(!is_q(wtype) || (ws && ((uintptr_t)ws & 63) == 0));
	int k = mm_is_k(wtype), tile_min = k ? isa->tile_min_tok_k : isa->tile_min_tok;
	struct mm_args a = {
		.y = y, .x = x, .w = w, .w_stride = qtype_row_size(wtype, n_in),
		.wtype = wtype, .n_tok = n_tok, .n_in = n_in, .n_out = n_out,
		.xq = ws, .xq_stride = k ? (size_t)(n_in / QK_K) * MM_KX_REC : mm_xq_stride(n_in / 32),
		.nb = n_in / (k ? QK_K : 32),
		.xtiled = tile_min && n_tok >= tile_min,
	};
	mm_run(isa, &a);
}
