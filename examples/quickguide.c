/* The quick guide of the original pasha, in C: allocate an output like the
 * input, map triple_it over the input, check the result. Runs it in each
 * context kind (or only the one named on the command line: serial, threads,
 * processes).
 *
 *   cc quickguide.c $(pkg-config --cflags --libs pasha) && ./a.out
 */
#include <math.h>
#include <pasha/pasha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct triple_args {
    double *out;
};

/* The kernel: called once per element, in whichever worker gets it. */
static int triple_it(void *user_data, int worker_id, size_t index, const void *value)
{
    struct triple_args *args = user_data;
    const psh_view *v = value; /* a 0-d view of inp[index] */
    (void)worker_id;
    args->out[index] = 3 * *(const double *)v->data;
    return 0;
}

static int run(psh_kind kind, const char *name)
{
    psh_context *ctx = NULL;
    psh_array *inp = NULL, *outp = NULL;
    psh_functor *f = NULL;
    size_t n = 100;
    int rc, ok = 1;

    if ((rc = psh_context_create(&ctx, kind, 0)) != PSH_OK) goto fail;
    if ((rc = psh_alloc(&inp, ctx, PSH_FLOAT64, 1, &n, NULL)) != PSH_OK) goto fail;
    double *in = psh_array_data(inp);
    srand(42);
    for (size_t i = 0; i < n; ++i) in[i] = (double)rand() / RAND_MAX;

    if ((rc = psh_alloc_like(&outp, ctx, inp, NULL)) != PSH_OK) goto fail;
    if ((rc = psh_functor_array(&f, inp, 0)) != PSH_OK) goto fail;
    struct triple_args args = {psh_array_data(outp)};
    if ((rc = psh_map(ctx, triple_it, &args, f)) != PSH_OK) goto fail;

    for (size_t i = 0; i < n; ++i) ok &= fabs(args.out[i] - 3 * in[i]) < 1e-12;
    printf("%-9s %2d workers: %s\n", name, psh_context_num_workers(ctx),
           ok ? "True (outp == 3 * inp)" : "False");
    psh_functor_destroy(f);
    psh_array_free(outp);
    psh_array_free(inp);
    psh_context_destroy(ctx);
    return ok ? 0 : 1;

fail:
    fprintf(stderr, "%s: %s (%s)\n", name, psh_strerror(rc), psh_last_error());
    psh_functor_destroy(f);
    psh_array_free(outp);
    psh_array_free(inp);
    psh_context_destroy(ctx);
    return 1;
}

int main(int argc, char **argv)
{
    static const struct { const char *name; psh_kind kind; } kinds[] = {
        {"serial", PSH_SERIAL}, {"threads", PSH_THREADS}, {"processes", PSH_PROCESSES}};
    int failed = 0;
    printf("libpasha %s\n", psh_version());
    for (size_t k = 0; k < 3; ++k)
        if (argc < 2 || strcmp(argv[1], kinds[k].name) == 0) failed |= run(kinds[k].kind, kinds[k].name);
    return failed;
}
