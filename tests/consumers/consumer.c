/* An outside program of an installed libpasha (built by .ci/parts/06-install.sh
 * with pkg-config, pkg-config --static and CMake): square 0..n-1 into a
 * shared array on threads and on processes, check the sum, check the header
 * and library versions agree. Prints the sum; exit status 1 on any mismatch. */
#include <pasha/pasha.h>
#include <stdio.h>

static int square(void *user_data, int worker_id, size_t index, const void *value)
{
    (void)worker_id;
    (void)value;
    ((double *)user_data)[index] = (double)index * (double)index;
    return 0;
}

static int run(psh_kind kind, const char *name)
{
    const size_t n = 1000;
    const double want = (double)(n - 1) * n * (2 * n - 1) / 6; /* 332833500 */
    psh_context *ctx = NULL;
    psh_array *a = NULL;
    psh_functor *f = NULL;
    double sum = 0;
    int rc = psh_context_create(&ctx, kind, 2);
    if (rc == PSH_OK) rc = psh_alloc(&a, ctx, PSH_FLOAT64, 1, &n, NULL);
    if (rc == PSH_OK) rc = psh_functor_range(&f, n);
    if (rc == PSH_OK) rc = psh_map(ctx, square, psh_array_data(a), f);
    if (rc == PSH_OK)
        for (size_t i = 0; i < n; ++i) sum += ((const double *)psh_array_data(a))[i];
    else
        printf("%s: %s (%s)\n", name, psh_strerror(rc), psh_last_error());
    psh_functor_destroy(f);
    psh_array_free(a);
    psh_context_destroy(ctx);
    printf("%s: sum %.0f\n", name, sum);
    return rc == PSH_OK && sum == want ? 0 : 1;
}

int main(void)
{
    int failed = 0;
    if (psh_version_number() != PSH_VERSION_NUMBER) {
        printf("header %s (%d) but library %s (%u)\n", PSH_VERSION_STRING, PSH_VERSION_NUMBER,
               psh_version(), psh_version_number());
        failed = 1;
    }
    printf("libpasha %s (%u)\n", psh_version(), psh_version_number());
    failed |= run(PSH_THREADS, "threads");
    failed |= run(PSH_PROCESSES, "processes");
    return failed;
}
