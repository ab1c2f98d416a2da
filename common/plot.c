/* plot.c — see plot.h. */
#include "plot.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define W 760.0
#define H 520.0
#define L 80.0  /* margins: left, right, top, bottom */
#define R 40.0
#define T 64.0
#define B 84.0
#define PW (W - L - R)
#define PH (H - T - B)

/* The axes: where a value lands in the plot area. */
struct axes {
	bool logx;
	double x0, x1, y0, y1, ytop;
};

static double px(const struct axes *a, double v)
{
	return L + PW * (a->logx ? (log10(v) - log10(a->x0)) / (log10(a->x1) - log10(a->x0)) : (v - a->x0) / (a->x1 - a->x0));
}

static double py(const struct axes *a, double v)
{
	return T + PH * (1 - (v - a->y0) / (a->y1 - a->y0));
}

static void escaped(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '<')
			fputs("&lt;", f);
		else if (*s == '>')
			fputs("&gt;", f);
		else if (*s == '&')
			fputs("&amp;", f);
		else
			fputc(*s, f);
	}
}

static void svg_text(FILE *f, double x, double y, const char *anchor, const char *style, const char *s)
{
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\"%s%s>", x, y, anchor, style ? " " : "",
		style ? style : "");
	escaped(f, s);
	fputs("</text>\n", f);
}

/* Ticks at 1, 2, 5 times powers of ten covering [lo, hi] (at most 16). */
static int log_ticks(double lo, double hi, double *t)
{
	int n = 0;
	for (double dec = pow(10, floor(log10(lo))); dec <= hi * 10 && n < 16; dec *= 10)
		for (int k = 0; k < 3 && n < 16; k++) {
			double v = dec * (k == 0 ? 1 : k == 1 ? 2 : 5);
			if (v >= lo * 0.999 && v <= hi * 1.001)
				t[n++] = v;
		}
	return n;
}

/* A step of 1, 2 or 5 times a power of ten giving about 5 ticks over span. */
static double nice_step(double span)
{
	double raw = span / 5, p = pow(10, floor(log10(raw))), r = raw / p;
	return p * (r < 1.5 ? 1 : r < 3.5 ? 2 : r < 7.5 ? 5 : 10);
}

static bool shown(const struct plot_point *q)
{
	return isfinite(q->x) && isfinite(q->y) && q->x > 0;
}

static struct axes make_axes(const struct plot *p)
{
	struct axes a = { .ytop = p->y_top };
	double xmin = INFINITY, xmax = -INFINITY, ymin = p->y_top;
	for (int i = 0; i < p->n; i++)
		if (shown(&p->pts[i]))
			xmin = fmin(xmin, p->pts[i].x), xmax = fmax(xmax, p->pts[i].x), ymin = fmin(ymin, p->pts[i].y);
	if (!(xmax >= xmin))
		xmin = 1, xmax = 10;
	/* x: log when the values span a decade or so, else linear from 0 */
	a.logx = xmax / xmin >= 8;
	if (a.logx) {
		a.x0 = pow(10, floor(log10(xmin / 1.3) * 2) / 2);
		a.x1 = pow(10, ceil(log10(xmax * 1.3) * 2) / 2);
	} else {
		double st = nice_step(xmax * 1.15);
		a.x0 = 0;
		a.x1 = ceil(xmax * 1.15 / st) * st;
	}
	/* y: from a tenth below the lowest point to the top, with a little room above it */
	a.y0 = floor((ymin - 0.02) * 10) / 10;
	a.y0 = a.y0 < 0 ? 0 : a.y0;
	a.y1 = a.ytop + 0.04 * (a.ytop - a.y0);
	return a;
}

static void grid(FILE *f, const struct plot *p, const struct axes *a)
{
	double tk[32];
	int nt = 0;
	if (a->logx)
		nt = log_ticks(a->x0, a->x1, tk);
	else
		for (double v = a->x0, st = nice_step(a->x1 - a->x0); v <= a->x1 * 1.0001 && nt < 32; v += st)
			tk[nt++] = v;
	fprintf(f, "<g stroke=\"#e5e5e5\" stroke-width=\"1\">\n");
	for (int i = 0; i < nt; i++)
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", px(a, tk[i]), T, px(a, tk[i]), T + PH);
	const double yst = nice_step(a->ytop - a->y0);
	for (double v = a->y0; v <= a->ytop + 1e-9; v += yst)
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", L, py(a, v), L + PW, py(a, v));
	fprintf(f, "</g>\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#333333\"/>\n",
		L, T, PW, PH);
	char lab[64];
	for (int i = 0; i < nt; i++) {
		snprintf(lab, sizeof lab, "%g", tk[i]);
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333333\"/>\n", px(a, tk[i]),
			T + PH, px(a, tk[i]), T + PH + 5);
		svg_text(f, px(a, tk[i]), T + PH + 19, "middle", NULL, lab);
	}
	for (double v = a->y0; v <= a->ytop + 1e-9; v += yst) {
		snprintf(lab, sizeof lab, "%.2f", v);
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333333\"/>\n", L - 5, py(a, v), L,
			py(a, v));
		svg_text(f, L - 8, py(a, v) + 4, "end", NULL, lab);
	}
	svg_text(f, L + PW / 2, T + PH + 42, "middle", NULL, a->logx && p->xlabel_log ? p->xlabel_log : p->xlabel);
	fprintf(f, "<g transform=\"translate(22 %.1f) rotate(-90)\">", T + PH / 2);
	svg_text(f, 0, 0, "middle", NULL, p->ylabel);
	fprintf(f, "</g>\n");
}

/* The points shown, in order, with their positions and label groups. */
struct placed {
	const struct plot_point *pt;
	double x, y; /* pixels */
	int grp;     /* index of the first point of its label group */
};

/* Where the label of group k (w pixels wide) goes: the first of a few spots
 * around its point that stays inside the plot, clears every point and every
 * label placed (box[n_box]) and is nearer its own point than any other;
 * failing that, the first spot clear of points and labels, with a leader line;
 * failing that, stacked at the lower right. Returns the spot (>= n_near: a
 * leader line is needed; -1: stacked) and its text origin in *x, *y. */
static int place_label(const struct placed *pl, int n, int k, double w, double (*box)[4], int n_box, double *x,
		       double *y)
{
	static const double cand[][2] = { { 9, -7 }, { 9, 15 }, { -9, -7 }, { -9, 15 }, { 0, -12 }, { 0, 24 },
					  { 9, -24 }, { 9, 32 }, { -9, -24 }, { -9, 32 }, { 20, -40 }, { 20, 48 },
					  { -20, -40 }, { -20, 48 } };
	const int n_cand = (int)(sizeof cand / sizeof *cand), n_near = 6;
	const double h = 14, qx0 = pl[k].x, qy0 = pl[k].y;
	for (int pass = 0; pass < 2; pass++)
		for (int c = 0; c < n_cand + 40; c++) {
			/* after the fixed spots: further and further below, right then left */
			double dx = c < n_cand ? cand[c][0] : (c - n_cand) % 2 ? -9 : 9;
			double dy = c < n_cand ? cand[c][1] : 48 + 16 * ((c - n_cand) / 2);
			*x = dx > 0 ? qx0 + dx : dx < 0 ? qx0 + dx - w : qx0 - w / 2;
			*y = qy0 + dy;
			bool fits = *x >= L + 2 && *x + w <= L + PW - 2 && *y - h >= T + 1 && *y + 3 <= T + PH - 1;
			for (int j = 0; j < n && fits; j++) /* clear of every point */
				fits = !(pl[j].x + 6 > *x && pl[j].x - 6 < *x + w && pl[j].y + 6 > *y - h + 2 && pl[j].y - 6 < *y + 3);
			for (int j = 0; j < n_box && fits; j++) /* and of the labels placed */
				fits = !(box[j][0] < *x + w && *x < box[j][2] && box[j][1] < *y + 3 && *y - h + 2 < box[j][3]);
			/* first pass: near, and nearer its own point than any other */
			double ax = dx > 0 ? *x : dx < 0 ? *x + w : *x + w / 2, ay = *y - 4, own = hypot(ax - qx0, ay - qy0);
			for (int j = 0; j < n && fits && pass == 0; j++)
				fits = c < n_near && (pl[j].grp == k || hypot(ax - pl[j].x, ay - pl[j].y) > own + 6);
			if (fits)
				return pass == 0 ? c : n_cand + c;
		}
	*x = L + PW - w - 6;
	*y = T + PH - 8 - 16.0 * n_box;
	return -1;
}

static void points(FILE *f, struct placed *pl, int n, double (*box)[4])
{
	for (int k = 0; k < n; k++) {
		fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\" stroke=\"white\" stroke-width=\"1\"/>\n",
			pl[k].x, pl[k].y, pl[k].pt->color);
		pl[k].grp = k;
		for (int j = 0; j < k && pl[k].grp == k; j++)
			if (pl[j].grp == j && hypot(pl[k].x - pl[j].x, pl[k].y - pl[j].y) < 4)
				pl[k].grp = j;
	}
	int n_box = 0;
	for (int k = 0; k < n; k++) {
		if (pl[k].grp != k)
			continue;
		size_t chars = 0;
		for (int j = k; j < n; j++)
			if (pl[j].grp == k)
				chars += strlen(pl[j].pt->label) + (j > k ? 2 : 0);
		const double w = 7.3 * chars + 2, h = 14;
		double x, y;
		int pick = place_label(pl, n, k, w, box, n_box, &x, &y);
		box[n_box][0] = x, box[n_box][1] = y - h + 2, box[n_box][2] = x + w, box[n_box][3] = y + 3;
		n_box++;
		if (pick < 0 || pick >= 6)
			fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#888888\" stroke-width=\"0.8\"/>\n",
				pl[k].x, pl[k].y, x + w / 2 < pl[k].x ? x + w : x, y - 4);
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" xml:space=\"preserve\">", x, y);
		for (int j = k; j < n; j++) {
			if (pl[j].grp != k)
				continue;
			if (j > k)
				fputs("<tspan fill=\"#666666\">, </tspan>", f);
			fprintf(f, "<tspan fill=\"%s\">", pl[j].pt->color);
			escaped(f, pl[j].pt->label);
			fputs("</tspan>", f);
		}
		fputs("</text>\n", f);
	}
}

int plot_write_svg(FILE *f, const struct plot *p)
{
	const struct axes a = make_axes(p);
	struct placed *pl = kb_calloc((size_t)(p->n ? p->n : 1), sizeof *pl);
	double (*box)[4] = kb_calloc((size_t)(p->n ? p->n : 1), sizeof *box);
	if (!pl || !box) {
		free(pl);
		free(box);
		return KB_ERR_NOMEM;
	}
	int n = 0;
	for (int i = 0; i < p->n; i++)
		if (shown(&p->pts[i]))
			pl[n++] = (struct placed){ .pt = &p->pts[i], .x = px(&a, p->pts[i].x), .y = py(&a, p->pts[i].y) };
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		   "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
		   "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"13\">\n"
		   "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
		W, H, W, H);
	if (p->title)
		svg_text(f, W / 2, 26, "middle", "font-size=\"16\" font-weight=\"bold\"", p->title);
	if (p->subtitle)
		svg_text(f, W / 2, 45, "middle", "font-size=\"12\" fill=\"#444444\"", p->subtitle);
	if (p->footnote)
		svg_text(f, 12, H - 10, "start", "font-size=\"11\" fill=\"#666666\"", p->footnote);
	grid(f, p, &a);
	points(f, pl, n, box);
	fprintf(f, "</svg>\n");
	free(pl);
	free(box);
	return ferror(f) ? kb_fail(KB_ERR_IO, "cannot write the plot") : KB_OK;
}
