/* fmapeak: this CPU's single-core float32 FMA peak, in GFLOP per CPU-second.
 *
 * Twelve independent chains of fused multiply-adds on the widest vectors the
 * compiler targets (-march=native: 512-bit with AVX-512, else 256-bit), so
 * that neither latency nor memory limits them: what one core can compute at
 * most, the ceiling of any matrix product. On cores whose AVX-512 runs on
 * 256-bit units (AMD Zen 4) the two widths give the same figure.
 *
 *   cc -O2 -march=native scripts/fmapeak.c -o fmapeak && ./fmapeak
 */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

#if defined(__AVX512F__)
typedef __m512 vec;
#define LANES 16
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define STORE _mm512_storeu_ps
#else
typedef __m256 vec;
#define LANES 8
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define STORE _mm256_storeu_ps
#endif

#define CHAINS 12

static double cpu_seconds(void) {
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
	const long steps = 100000000;
	vec acc[CHAINS], x = SET1(0.9999999f), y = SET1(1e-7f);
	for (int j = 0; j < CHAINS; j++)
		acc[j] = SET1((float)j);
	double t0 = cpu_seconds();
	for (long i = 0; i < steps; i++) {
#pragma GCC unroll 12
		for (int j = 0; j < CHAINS; j++)
			acc[j] = FMA(acc[j], x, y);
	}
	double t = cpu_seconds() - t0;
	/* the sum keeps the compiler from dropping the loop */
	float lanes[LANES], sum = 0;
	for (int j = 0; j < CHAINS; j++) {
		STORE(lanes, acc[j]);
		for (int k = 0; k < LANES; k++)
			sum += lanes[k];
	}
	printf("fma_peak_gflops_per_core %.1f\n", 2.0 * LANES * CHAINS * steps / t / 1e9);
	printf("fma_peak_vector_bits %d\n", LANES * 32);
	fprintf(stderr, "(checksum %g)\n", sum);
	return 0;
}
