/* fuzz_s3list.c — fuzz target for the S3 ListObjectsV2 page parser of the
 * remote tier (remote_parse_list, common/remote.c): what a remote server sends
 * back, read by kvblend evict --remote.
 *
 * libFuzzer:   tests/fuzz/run.sh [SECONDS] s3list
 * standalone:  tests/fuzz/run.sh --replay s3list; the seeds in
 *              tests/fuzz/corpus/s3list/ were made by `tests/fuzz/run.sh --seeds s3list`.
 *
 * Every input either parses — each object's name is a non-empty C string
 * without control characters, under the prefix it was asked for; a continuation
 * token only with a truncated page or without — or fails with KB_ERR_FORMAT
 * (or KB_ERR_NOMEM). Anything else (a crash, a sanitizer report, an ASSERT)
 * is a bug.
 */
#include <stdint.h>
#include <string.h>

#include "remote.h"

static volatile size_t sink;

static int each(void *ctx, const struct remote_object *o)
{
	(void)ctx;
	ASSERT(o->name && *o->name);
	for (const char *p = o->name; *p; p++)
		ASSERT((unsigned char)*p >= 0x20 || *p == '\t' || *p == '\n' || *p == '\r');
	sink += strlen(o->name) + (size_t)o->size + (size_t)o->mtime;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const prefixes[] = { "", "p/" };
	for (int i = 0; i < 2; i++) {
		bool more = false;
		char *next = (char *)1;
		int rc = remote_parse_list((const char *)data, size, prefixes[i], each, NULL, &more, &next);
		if (rc != KB_OK) {
			ASSERT(rc == KB_ERR_FORMAT || rc == KB_ERR_NOMEM);
			free(next == (char *)1 ? NULL : next);
			continue;
		}
		ASSERT(next != (char *)1);
		if (next)
			sink += strlen(next);
		free(next);
	}
	return 0;
}

#ifdef KVBLEND_FUZZ_MAIN
#define FUZZ_NAME "fuzz_s3list"
#include "driver.h"

static const struct fuzz_text_seed seeds[] = {
	{ "page.seed",
	  "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
	  "<Name>kvb</Name><Prefix>p/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>"
	  "<Contents><Key>p/0a1b.kvc</Key><LastModified>2026-12-07T21:14:51.000Z</LastModified>"
	  "<ETag>&quot;b1946ac9&quot;</ETag><Size>6400</Size><StorageClass>STANDARD</StorageClass></Contents>"
	  "<Contents><Key>p/a&amp;b</Key><Size>0</Size></Contents>"
	  "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>"
	  "</ListBucketResult>\n" },
	{ "last.seed", "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>x</Key><Size>1</Size></Contents></ListBucketResult>" },
	{ "error.seed", "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>none</Message></Error>" },
	{ "entities.seed", "<ListBucketResult><Contents><Key>p/&#x41;&#66;&lt;&gt;&apos;</Key><Size>18446744073709551615</Size></Contents></ListBucketResult>" },
};

static int write_seeds(const char *dir)
{
	return fuzz_write_text_seeds(dir, seeds, sizeof seeds / sizeof *seeds);
}
#endif
