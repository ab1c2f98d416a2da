/* kvc.c — see kvc.h. (Skeleton: the implementation is on its way.) */
#include "kvc.h"

#include <string.h>

void kvc_header_init(struct kvc_header *h) { memset(h, 0, sizeof *h); }
void kvc_header_free(struct kvc_header *h) { (void)h; }
int kvc_header_copy(struct kvc_header *dst, const struct kvc_header *src) { (void)dst; (void)src; return kb_fail(KB_ERR_UNSUPPORTED, "kvc: not implemented yet"); }
const char *kvc_dtype_name(int dtype) { (void)dtype; return "?"; }
int kvc_dtype_from_name(const char *name) { (void)name; return -1; }
size_t kvc_row_bytes(int dtype, size_t kv_dim) { (void)dtype; (void)kv_dim; return 0; }
int kvc_header_check(const struct kvc_header *h) { (void)h; return kb_fail(KB_ERR_UNSUPPORTED, "kvc: not implemented yet"); }
int kvc_check_model(const struct kvc_header *h, const uint8_t model_fp[32], const uint8_t tok_fp[32], int n_layer, int n_kv_head, int head_dim) { return kb_fail(KB_ERR_UNSUPPORTED, "kvc: not implemented yet"); }
bool kvc_sniff(const void *buf, size_t n) { return n >= KVC_MAGIC_LEN && memcmp(buf, KVC_MAGIC, KVC_MAGIC_LEN) == 0; }
int kvc_writer_init(struct kvc_writer **w, int fd, const struct kvc_header *h) { *w = NULL; return kb_fail(KB_ERR_UNSUPPORTED, "kvc: not implemented yet"); }
int kvc_writer_layer(struct kvc_writer *w, int layer, const float *k, const float *v, size_t row_stride) { return kb_fail(KB_ERR_UNSUPPORTED, "kvc: not implemented yet"); }
int kvc_writer_finish(struct kvc_writer *w) { return kb_fail(KB_ERR_UNSUPPORTED, "kvc: not implemented yet"); }
uint64_t kvc_writer_bytes(const struct kvc_writer *w) { return 0; }
void kvc_writer_free(struct kvc_writer *w) { (void)w; }
int kvc_write_file(const char *path, const struct kvc_header *h, const float *k, const float *v, size_t layer_stride, size_t row_stride) { return kb_fail(KB_ERR_UNSUPPORTED, "kvc: not implemented yet"); }
int kvc_write_file_cb(const char *path, const struct kvc_header *h, kvc_layer_fn fn, void *ctx) { return kb_fail(KB_ERR_UNSUPPORTED, "kvc: not implemented yet"); }
int kvc_reader_open_fd(struct kvc_reader **r, int fd, const char *name) { *r = NULL; return kb_fail(KB_ERR_UNSUPPORTED, "kvc: not implemented yet"); }
int kvc_reader_open_fd_prefix(struct kvc_reader **r, int fd, const void *prefix, size_t prefix_len, const char *name) { *r = NULL; return kb_fail(KB_ERR_UNSUPPORTED, "kvc: not implemented yet"); }
int kvc_reader_open_mem(struct kvc_reader **r, const void *buf, size_t len, const char *name) { *r = NULL; return kb_fail(KB_ERR_UNSUPPORTED, "kvc: not implemented yet"); }
int kvc_reader_open_file(struct kvc_reader **r, const char *path) { *r = NULL; return kb_fail(KB_ERR_UNSUPPORTED, "kvc: not implemented yet"); }
void kvc_reader_free(struct kvc_reader *r) { (void)r; }
int kvc_reader_next_header(struct kvc_reader *r, const struct kvc_header **h) { return kb_fail(KB_ERR_UNSUPPORTED, "kvc: not implemented yet"); }
int kvc_reader_layer(struct kvc_reader *r, float *k, float *v, size_t row_stride) { return kb_fail(KB_ERR_UNSUPPORTED, "kvc: not implemented yet"); }
int kvc_reader_layer_raw(struct kvc_reader *r, const void **k, const void **v, size_t *bytes) { return kb_fail(KB_ERR_UNSUPPORTED, "kvc: not implemented yet"); }
int kvc_reader_end(struct kvc_reader *r) { return kb_fail(KB_ERR_UNSUPPORTED, "kvc: not implemented yet"); }
uint64_t kvc_reader_offset(const struct kvc_reader *r) { return 0; }
bool kvc_reader_is_mapped(const struct kvc_reader *r) { return false; }
void kvc_decode_rows(int dtype, const void *src, size_t n, size_t kv_dim, float *dst, size_t row_stride) { }
