/* store.c — see store.h. (Skeleton: the API compiles; the implementation follows.) */
#include "store.h"

#include <string.h>

#include "hash.h"

int store_default_dir(char **dir) { *dir = NULL; return kb_fail(KB_ERR_UNSUPPORTED, "the store is not implemented yet"); }
int store_open(struct store **out, const char *dir) { *out = NULL; return kb_fail(KB_ERR_UNSUPPORTED, "the store is not implemented yet"); }
void store_close(struct store *st) { (void)st; }
const char *store_dir(const struct store *st) { return ""; }

void store_key(const uint8_t model_fp[32], const int32_t *tokens, size_t n, char key[STORE_KEY_HEX + 1])
{
	struct sha256 s;
	uint8_t b[4], d[32];
	sha256_init(&s);
	sha256_update(&s, model_fp, 32);
	for (size_t i = 0; i < n; i++) {
		uint32_t u = (uint32_t)tokens[i];
		b[0] = (uint8_t)u; b[1] = (uint8_t)(u >> 8); b[2] = (uint8_t)(u >> 16); b[3] = (uint8_t)(u >> 24);
		sha256_update(&s, b, 4);
	}
	sha256_final(&s, d);
	hash_hex(d, 32, key);
}

bool store_key_valid(const char *key)
{
	for (int i = 0; i < STORE_KEY_HEX; i++)
		if (!((key[i] >= '0' && key[i] <= '9') || (key[i] >= 'a' && key[i] <= 'f')))
			return false;
	return key[STORE_KEY_HEX] == '\0';
}

char *store_object_path(const struct store *st, const char *key) { kb_fail(KB_ERR_UNSUPPORTED, "not implemented"); return NULL; }
int store_get(struct store *st, const char *key, char **path) { return KB_ERR_UNSUPPORTED; }
int store_get_fd(struct store *st, const char *key, int *fd) { return KB_ERR_UNSUPPORTED; }
int store_has(struct store *st, const char *key, char **path) { return KB_ERR_UNSUPPORTED; }
int store_entry_get(struct store *st, const char *key, struct store_entry *e) { return KB_ERR_UNSUPPORTED; }
int store_list(struct store *st, int (*fn)(void *ctx, const struct store_entry *e), void *ctx) { return KB_ERR_UNSUPPORTED; }
int store_put_begin(struct store *st, const char *key, struct store_put *p) { return KB_ERR_UNSUPPORTED; }
int store_put_commit(struct store *st, struct store_put *p, const struct store_meta *meta) { return KB_ERR_UNSUPPORTED; }
void store_put_abort(struct store *st, struct store_put *p) { (void)p; }
int store_pin(struct store *st, const char *key, bool pinned) { return KB_ERR_UNSUPPORTED; }
int store_remove(struct store *st, const char *key) { return KB_ERR_UNSUPPORTED; }
const char *store_policy_name(int policy) { return "?"; }
int store_policy_from_name(const char *name) { return -1; }
int store_evict(struct store *st, const struct store_evict_opts *o, store_evict_fn fn, void *ctx,
		struct store_evict_result *res) { return KB_ERR_UNSUPPORTED; }
int store_stats(struct store *st, struct store_stats *s) { return KB_ERR_UNSUPPORTED; }
int store_stats_models(struct store *st, int (*fn)(void *ctx, const struct store_model_stats *m), void *ctx) { return KB_ERR_UNSUPPORTED; }
uint64_t store_verify_problems(const struct store_verify_result *r) { return 0; }
int store_verify(struct store *st, bool repair, store_verify_fn fn, void *ctx, struct store_verify_result *r) { return KB_ERR_UNSUPPORTED; }
void store_set_clock(struct store *st, double t) { (void)st; }
void store_set_test_hook(struct store *st, void (*fn)(void *ctx, int point), void *ctx) { (void)st; }
