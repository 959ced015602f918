// The quick guide of the original pasha, in C++ (include/pasha/pasha.hpp):
// allocate an output like the input, map a lambda that triples each element
// over the input, check the result. Runs it in each context kind (or only
// the one named on the command line: serial, threads, processes, pool).
//
//   c++ -std=c++17 quickguide.cpp $(pkg-config --cflags --libs pasha) && ./a.out
#include <pasha/pasha.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

static bool run(const pasha::context &ctx, const char *name)
{
    const std::size_t n = 100;
    auto inp = pasha::alloc<double>(ctx, {n});
    std::srand(42);
    for (double &x : inp) x = static_cast<double>(std::rand()) / RAND_MAX;

    auto outp = pasha::alloc_like(ctx, inp);
    // Capture pointers into psh arrays by value: right for every kind,
    // persistent pools included (see pasha::context_options::persistent).
    double *out = outp.data();
    pasha::map(ctx, inp, [=](int /*worker_id*/, std::size_t i, pasha::view<double> v) {
        out[i] = 3 * v();  // v: a 0-d view of inp[i]
    });

    bool ok = true;
    for (std::size_t i = 0; i < n; ++i) ok &= std::fabs(outp[i] - 3 * inp[i]) < 1e-12;
    std::printf("%-9s %2d workers: %s\n", name, ctx.num_workers(), ok ? "True (outp == 3 * inp)" : "False");
    return ok;
}

int main(int argc, char **argv)
{
    std::printf("libpasha %s (C++)\n", pasha::version());
    pasha::context_options pool;
    pool.kind = pasha::kind::processes;
    pool.persistent = true;
    bool ok = true;
    try {
        if (argc < 2 || std::strcmp(argv[1], "serial") == 0) ok &= run(pasha::context(pasha::kind::serial), "serial");
        if (argc < 2 || std::strcmp(argv[1], "threads") == 0) ok &= run(pasha::context(pasha::kind::threads), "threads");
        if (argc < 2 || std::strcmp(argv[1], "processes") == 0)
            ok &= run(pasha::context(pasha::kind::processes), "processes");
        if (argc < 2 || std::strcmp(argv[1], "pool") == 0) ok &= run(pasha::context(pool), "pool");
    } catch (const pasha::error &e) {
        std::fprintf(stderr, "quickguide: %s\n", e.what());
        return 1;
    }
    return ok ? 0 : 1;
}
