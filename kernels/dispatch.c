/* dispatch.c — choose the kernel variants for this CPU, once. */
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "kernels.h"

enum kern_level kern_level = KERN_GENERIC;
static int initialised;

static const char *const level_names[] = {
	[KERN_REF] = "ref", [KERN_GENERIC] = "generic", [KERN_AVX2] = "avx2", [KERN_AVX512] = "avx512",
};

#if defined(__x86_64__) || defined(__i386__)
/* F16C from CPUID leaf 1 (ECX bit 29): clang's __builtin_cpu_supports does not know "f16c" */
static int has_f16c(void)
{
	unsigned a, b, c, d;
	return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}
#endif

enum kern_level kern_cpu_level(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
	    __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
	    __builtin_cpu_supports("avx512vnni"))
		return KERN_AVX512;
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c())
		return KERN_AVX2;
#endif
	return KERN_GENERIC;
}

int kern_set_isa(const char *name)
{
	for (int l = KERN_REF; l <= KERN_AVX512; l++) {
		if (strcmp(name, level_names[l]) == 0) {
			if ((enum kern_level)l > kern_cpu_level())
				return -1;
			kern_level = (enum kern_level)l;
			initialised = 1;
			kern_plan_clear();
			return 0;
		}
	}
	return -1;
}

void kern_init(void)
{
	if (initialised)
		return;
	initialised = 1;
	kern_level = kern_cpu_level();
	const char *force = getenv("KVBLEND_ISA");
	if (force && *force && kern_set_isa(force) != 0)
		kern_level = kern_cpu_level();
}

const char *kern_isa(void)
{
	return level_names[kern_level];
}

const char *kern_cpu_name(void)
{
	static char name[49];
#if defined(__x86_64__) || defined(__i386__)
	if (!name[0]) {
		unsigned r[12] = { 0 }, top = __get_cpuid_max(0x80000000u, NULL);
		for (unsigned i = 0; i < 3 && top >= 0x80000004u; i++)
			__get_cpuid(0x80000002u + i, &r[4 * i], &r[4 * i + 1], &r[4 * i + 2], &r[4 * i + 3]);
		memcpy(name, r, 48);
		name[48] = 0;
		/* the brand string is padded with spaces (and may start with them) */
		size_t b = 0, e = strlen(name);
		while (name[b] == ' ')
			b++;
		while (e > b && name[e - 1] == ' ')
			e--;
		memmove(name, name + b, e - b);
		name[e - b] = 0;
		for (char *c = name; *c; c++)
			if (*c == '\t' || *c == '\n')
				*c = ' ';
	}
#endif
	if (!name[0])
		strcpy(name, "unknown CPU");
	return name;
}
