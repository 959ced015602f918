// pasha_mpi.hpp under mpirun (tests/cpp/meson.build runs it with 1 and 2
// ranks, with threads and with processes as the local kind):
//   test-cpp-mpi threads|processes
// Every rank checks what it can see; the exit status is the number of failed
// checks on this rank (mpirun fails when any rank does).
#include <pasha/pasha_mpi.hpp>

#include <cstdio>
#include <stdexcept>
#include <string>

static int failures = 0, checks = 0;

#define CHECK(cond)                                                                                  \
    do {                                                                                             \
        ++checks;                                                                                    \
        if (!(cond)) {                                                                               \
            ++failures;                                                                              \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);            \
        }                                                                                            \
    } while (0)

static void run(pasha::kind local)
{
    int world = 0, me = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    pasha::mpi::context c(MPI_COMM_WORLD, local, 2);
    CHECK(c.kind() == pasha::kind::mpi);
    CHECK(c.size() == world && c.rank() == me);
    CHECK(pasha::mpi::size(c) == world && pasha::mpi::rank(c) == me);
    CHECK(c.num_workers() == 2 * world);
    pasha::context plain(pasha::kind::serial);
    CHECK(pasha::mpi::rank(plain) == -1 && pasha::mpi::size(plain) == 0);

    // A map over global indices, then gather and allgather.
    const std::size_t n = 1001;
    auto out = pasha::alloc<double>(c, {n});
    double *po = out.data();
    pasha::map(c, n, [=](int, std::size_t i) { po[i] = 3.0 * static_cast<double>(i); });
    pasha::mpi::allgather(c, out);
    bool ok = true;
    for (std::size_t i = 0; i < n; ++i) ok &= out[i] == 3.0 * static_cast<double>(i);
    CHECK(ok);
    pasha::mpi::gather(c, out, world - 1);

    // A per-worker reduction over every rank's workers.
    auto acc = pasha::alloc<long>(c, {2}, pasha::per_worker);
    CHECK(acc.shape()[0] == static_cast<std::size_t>(2 * world));
    long *pa = acc.data();
    pasha::map(c, n, [=](int w, std::size_t i) {
        pa[2 * w] += static_cast<long>(i);
        pa[2 * w + 1] += 1;
    });
    pasha::mpi::reduce(c, acc, pasha::mpi::op::sum, 0);
    if (me == 0) {
        auto s = pasha::sum_per_worker(acc);
        CHECK(s[0] == static_cast<long>(n * (n - 1) / 2) && s[1] == static_cast<long>(n));
    }

    // A progress lambda (no implicit cancel flag on MPI contexts).
    std::size_t calls = 0, last_done = 0, last_total = 0;
    pasha::map_options mo;
    mo.progress = [&](std::size_t d, std::size_t t) {
        ++calls;
        last_done = d;
        last_total = t;
    };
    pasha::map(c, n, [=](int, std::size_t i) { po[i] = 2.0; }, mo);
    CHECK(calls >= 1 && last_done == last_total && last_total > 0);

    // An exception on rank 0's block: PSH_EKERNEL on every rank; rank 0 has the text.
    int code = 0;
    std::string what;
    try {
        pasha::map(c, n, [](int, std::size_t i) {
            if (i == 5) throw std::out_of_range("mpi boom at 5");
        });
    } catch (const pasha::error &e) {
        code = e.code();
        what = e.what();
    }
    CHECK(code == PSH_EKERNEL);
    if (me == 0)
        CHECK(what.find("mpi boom at 5") != std::string::npos);
    else
        CHECK(what.find("rank 0") != std::string::npos);
    // Still usable.
    pasha::map(c, n, [=](int, std::size_t i) { po[i] = 1.0 + static_cast<double>(i); });
    pasha::mpi::allgather(c, out);
    CHECK(out[n - 1] == static_cast<double>(n));
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    std::string local = argc > 1 ? argv[1] : "threads";
    try {
        run(local == "processes" ? pasha::kind::processes : pasha::kind::threads);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "unexpected exception: %s\n", e.what());
        ++failures;
    }
    std::printf("test-cpp-mpi %s: %d checks, %d failed\n", local.c_str(), checks, failures);
    MPI_Finalize();
    return failures > 100 ? 100 : failures;
}
