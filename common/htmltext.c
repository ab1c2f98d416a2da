/* htmltext.c — see htmltext.h. */
#include "htmltext.h"

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libxml/HTMLparser.h>
#include <libxml/parser.h>
#include <libxml/xmlerror.h>

/* What an element does to the text around it. */
enum kind {
	K_INLINE = 0, /* nothing: its text runs on */
	K_DROP,       /* it and everything in it are left out */
	K_BLOCK,      /* a paragraph: a blank line before and after */
	K_LINE,       /* a line of its own */
	K_CELL,       /* a space before and after */
	K_BREAK,      /* <br>: a line end */
	K_HEADING,    /* h1 .. h6 */
};

struct kind_name {
	const char *name;
	enum kind kind;
};

/* Sorted by name once (init), then looked up with bsearch. */
static struct kind_name kinds[] = {
	{ "script", K_DROP }, { "style", K_DROP }, { "template", K_DROP }, { "noscript", K_DROP },
	{ "head", K_DROP }, { "svg", K_DROP }, { "iframe", K_DROP }, { "object", K_DROP },
	{ "canvas", K_DROP }, { "title", K_DROP },
	{ "address", K_BLOCK }, { "article", K_BLOCK }, { "aside", K_BLOCK }, { "blockquote", K_BLOCK },
	{ "body", K_BLOCK }, { "caption", K_BLOCK }, { "center", K_BLOCK }, { "details", K_BLOCK },
	{ "dialog", K_BLOCK }, { "dir", K_BLOCK }, { "div", K_BLOCK }, { "dl", K_BLOCK },
	{ "fieldset", K_BLOCK }, { "figcaption", K_BLOCK }, { "figure", K_BLOCK }, { "footer", K_BLOCK },
	{ "form", K_BLOCK }, { "header", K_BLOCK }, { "hgroup", K_BLOCK }, { "hr", K_BLOCK },
	{ "html", K_BLOCK }, { "legend", K_BLOCK }, { "main", K_BLOCK }, { "menu", K_BLOCK },
	{ "nav", K_BLOCK }, { "ol", K_BLOCK }, { "p", K_BLOCK }, { "pre", K_BLOCK },
	{ "section", K_BLOCK }, { "summary", K_BLOCK }, { "table", K_BLOCK }, { "ul", K_BLOCK },
	{ "li", K_LINE }, { "dt", K_LINE }, { "dd", K_LINE }, { "tr", K_LINE }, { "option", K_LINE },
	{ "td", K_CELL }, { "th", K_CELL },
	{ "br", K_BREAK },
	{ "h1", K_HEADING }, { "h2", K_HEADING }, { "h3", K_HEADING }, { "h4", K_HEADING },
	{ "h5", K_HEADING }, { "h6", K_HEADING },
};

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct kind_name *)a)->name, ((const struct kind_name *)b)->name);
}

/* libxml2's HTML parser writes element names in lowercase. */
static enum kind kind_of(const xmlNode *n)
{
	if (n->type != XML_ELEMENT_NODE || !n->name)
		return K_INLINE;
	struct kind_name key = { (const char *)n->name, K_INLINE };
	const struct kind_name *k = bsearch(&key, kinds, sizeof kinds / sizeof *kinds, sizeof *kinds, by_name);
	return k ? k->kind : K_INLINE;
}

static bool is_pre(const xmlNode *n)
{
	return n->type == XML_ELEMENT_NODE && n->name && !strcmp((const char *)n->name, "pre");
}

/* The text being written, with the white space still owed. */
struct out {
	char *v;         /* owned, malloc() */
	size_t n, cap;
	int brk;         /* line ends owed before the next text: 0, 1 or 2 */
	bool space;      /* a space owed before the next text */
	int heading;     /* '#'s owed before the next text of a heading */
	int pre;         /* <pre> elements the walk is inside */
	bool nomem;
};

/* Append n bytes (and keep room for a NUL after them). */
static void put(struct out *o, const char *s, size_t n)
{
	if (o->nomem)
		return;
	if (n >= o->cap - o->n) {
		size_t cap = o->cap ? o->cap : 4096;
		while (n >= cap - o->n) {
			if (cap > SIZE_MAX / 2) {
				o->nomem = true;
				return;
			}
			cap *= 2;
		}
		char *v = realloc(o->v, cap);
		if (!v) {
			o->nomem = true;
			return;
		}
		o->v = v, o->cap = cap;
	}
	memcpy(o->v + o->n, s, n);
	o->n += n;
}

/* Pay what is owed before text: the line ends, else a space, then a heading's marks. */
static void settle(struct out *o)
{
	if (o->brk && o->n) {
		while (o->n && o->v[o->n - 1] == ' ')
			o->n--;
		put(o, "\n\n", (size_t)o->brk);
	} else if (o->space && o->n && o->v[o->n - 1] != '\n') {
		put(o, " ", 1);
	}
	o->brk = 0, o->space = false;
	if (o->heading) {
		put(o, "######", (size_t)o->heading);
		put(o, " ", 1);
		o->heading = 0;
	}
}

static void owe_break(struct out *o, int n)
{
	if (o->brk < n)
		o->brk = n;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

/* Text outside <pre>: runs of white space become one space. */
static void put_text(struct out *o, const char *s)
{
	while (*s) {
		if (is_space(*s)) {
			o->space = true;
			while (is_space(*s))
				s++;
			continue;
		}
		size_t n = 0;
		while (s[n] && !is_space(s[n]))
			n++;
		settle(o);
		put(o, s, n);
		s += n;
	}
}

/* Text inside <pre>: as it is, CR LF and CR as LF. */
static void put_pre(struct out *o, const char *s)
{
	if (!*s)
		return;
	settle(o);
	for (; *s; s++) {
		if (*s == '\r') {
			put(o, "\n", 1);
			if (s[1] == '\n')
				s++;
		} else {
			put(o, s, 1);
		}
	}
}

/* What an element owes on its way in (enter) or out. */
static void element_edge(struct out *o, const xmlNode *n, enum kind k, bool enter)
{
	switch (k) {
	case K_BLOCK:
		owe_break(o, 2);
		if (is_pre(n))
			o->pre += enter ? 1 : -1;
		break;
	case K_LINE: owe_break(o, 1); break;
	case K_CELL: o->space = true; break;
	case K_BREAK:
		if (enter) { /* a <br> is a line end even in a run of them */
			settle(o);
			put(o, "\n", 1);
		}
		break;
	case K_HEADING:
		owe_break(o, 2);
		o->heading = enter ? n->name[1] - '0' : 0;
		break;
	default: break;
	}
}

/* The tree below root, in document order, without recursion (a page may nest
 * deeper than the stack would like). */
static void walk(struct out *o, const xmlNode *root)
{
	const xmlNode *n = root;
	while (n) {
		enum kind k = kind_of(n);
		bool descend = false;
		if (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) {
			if (n->content)
				(o->pre ? put_pre : put_text)(o, (const char *)n->content);
		} else if (n->type == XML_ELEMENT_NODE && k != K_DROP) {
			element_edge(o, n, k, true);
			descend = n->children != NULL;
			if (!descend)
				element_edge(o, n, k, false);
		}
		if (descend) {
			n = n->children;
			continue;
		}
		/* on to the next sibling, closing the elements left on the way up */
		while (n && n != root && !n->next) {
			n = n->parent;
			if (n && n->type == XML_ELEMENT_NODE)
				element_edge(o, n, kind_of(n), false);
		}
		n = n && n != root ? n->next : NULL;
	}
}

/* The first element called name outside the body, at most depth levels down. */
static const xmlNode *find(const xmlNode *n, const char *name, int depth)
{
	for (; n && depth > 0; n = n->next) {
		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (!strcmp((const char *)n->name, name))
			return n;
		if (!strcmp((const char *)n->name, "body"))
			continue; /* a title belongs in the head */
		const xmlNode *in = find(n->children, name, depth - 1);
		if (in)
			return in;
	}
	return NULL;
}

/* The page's <title>, white space collapsed; NULL when none or empty. */
static char *title_of(xmlDoc *doc, bool *nomem)
{
	const xmlNode *t = find(xmlDocGetRootElement(doc), "title", 8);
	if (!t)
		return NULL;
	xmlChar *s = xmlNodeGetContent(t);
	if (!s)
		return NULL;
	struct out o = { 0 };
	put_text(&o, (const char *)s);
	xmlFree(s);
	if (o.nomem) {
		free(o.v);
		*nomem = true;
		return NULL;
	}
	if (o.v)
		o.v[o.n] = '\0';
	return o.v;
}

static void quiet(void *ctx, const char *msg, ...)
{
	(void)ctx, (void)msg;
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init(void)
{
	qsort(kinds, sizeof kinds / sizeof *kinds, sizeof *kinds, by_name);
	xmlInitParser();
}

int html_to_text(const char *name, const char *data, size_t len, const char *encoding, char **text, size_t *tlen,
		 char **title)
{
	*text = NULL, *tlen = 0, *title = NULL;
	if (len > INT_MAX)
		return kb_fail(KB_ERR_FORMAT, "'%s': HTML larger than %d bytes (libxml2's limit)", name, INT_MAX);
	pthread_once(&init_once, init);
	xmlSetGenericErrorFunc(NULL, quiet); /* encoding complaints too (libxml2 keeps the handler per thread) */
	const unsigned char *u = (const unsigned char *)data;
	if (encoding && !strcasecmp(encoding, "utf-16")) {
		/* libxml2 takes "UTF-16" for little-endian: the byte order mark
		 * decides, else big-endian as RFC 2781 says */
		bool le = len >= 2 && u[0] == 0xff && u[1] == 0xfe, be = len >= 2 && u[0] == 0xfe && u[1] == 0xff;
		encoding = le ? "UTF-16LE" : "UTF-16BE";
		if (le || be)
			data += 2, len -= 2;
	}
	int opts = HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING | HTML_PARSE_NONET;
	xmlCharEncodingHandler *h = encoding ? xmlFindCharEncodingHandler(encoding) : NULL;
	if (h) {
		xmlCharEncCloseFunc(h);
		opts |= HTML_PARSE_IGNORE_ENC; /* the server's word over the page's <meta> */
	}
	xmlDoc *doc = htmlReadMemory(data, (int)len, NULL, h ? encoding : NULL, opts);
	if (!doc) {
		if (len == 0 || !data[strspn(data, " \t\r\n\f")]) { /* nothing to parse: no text */
			*text = kb_malloc(1);
			if (!*text)
				return KB_ERR_NOMEM;
			**text = '\0';
			return KB_OK;
		}
		return kb_fail(KB_ERR_FORMAT, "'%s': libxml2 makes no HTML document of it", name);
	}
	struct out o = { 0 };
	const xmlNode *root = xmlDocGetRootElement(doc);
	if (root)
		walk(&o, root);
	bool nomem = o.nomem;
	*title = nomem ? NULL : title_of(doc, &nomem);
	xmlFreeDoc(doc);
	while (o.n && is_space(o.v[o.n - 1]))
		o.n--;
	if (o.n)
		put(&o, "\n", 1);
	else if (!o.v)
		put(&o, "", 0);
	if (nomem || o.nomem) {
		free(o.v);
		free(*title);
		*title = NULL;
		return kb_fail(KB_ERR_NOMEM, "'%s': out of memory", name);
	}
	o.v[o.n] = '\0';
	*text = o.v;
	*tlen = o.n;
	return KB_OK;
}
