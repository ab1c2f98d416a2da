/* memfile.h — an input as a file, for fuzz targets whose code under test
 * opens a path (the model loaders map it, the tokenizer.json importer reads
 * it): one memfd per process, rewritten for each input, named by its
 * /proc/self/fd path. */
#ifndef KB_FUZZ_MEMFILE_H
#define KB_FUZZ_MEMFILE_H

#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util.h"

/* The path of a file holding data[0..size), or NULL when it cannot be written. */
static const char *fuzz_memfile(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static char path[64];
	if (fd < 0) {
		fd = memfd_create("fuzz-input", 0);
		ASSERT(fd >= 0);
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) != 0)
		return NULL;
	for (size_t off = 0; off < size;) {
		ssize_t w = pwrite(fd, data + off, size - off, (off_t)off);
		if (w <= 0)
			return NULL;
		off += (size_t)w;
	}
	return path;
}

#endif
