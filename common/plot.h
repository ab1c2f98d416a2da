/* plot.h — a scatter plot of labelled points as a standalone SVG.
 *
 * The x axis is logarithmic when the points span a decade or so, else linear
 * from 0; the y axis runs from a tenth below the lowest point to y_top. Points
 * within a few pixels of each other share one label ("full, prefix"); each
 * label goes where it clears every point and every other label. It knows
 * nothing of what is plotted: the caller gives the points and the texts.
 */
#ifndef KB_PLOT_H
#define KB_PLOT_H

#include <stdio.h>

#include "util.h"

struct plot_point {
	double x, y;       /* x > 0 and finite, y finite: other points are left out */
	const char *label; /* not owned */
	const char *color; /* an SVG colour ("#1f77b4"), not owned */
};

struct plot {
	const char *title, *subtitle, *footnote; /* texts above and below; NULL: none */
	const char *xlabel, *xlabel_log;         /* the x axis's name, linear and log scale */
	const char *ylabel;
	double y_top;                            /* the top of the y axis (e.g. 1 for a share) */
	const struct plot_point *pts;            /* [n], not owned */
	int n;
};

/* Write p as an SVG document to f. KB_OK, or KB_ERR_IO when f reports a write
 * error (the caller closes f). */
int plot_write_svg(FILE *f, const struct plot *p) KB_WUR;

#endif
