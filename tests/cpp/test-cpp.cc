// Tests of the C++ API (include/pasha/pasha.hpp): a plain asserting program.
//
//   test-cpp common | serial | threads | processes | pool
//
// "common" checks what does not depend on a context's kind (errors, arrays,
// move-only handles, views, options); each kind runs the maps, reductions,
// exception rules and map options on that kind (pool: a persistent
// processes context). Every check compares computed values with what they
// must be; the exit status is the number of failed checks (capped).
#include <pasha/pasha.hpp>

#include <unistd.h>

#include <array>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

static int failures = 0;
static int checks = 0;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        ++checks;                                                                    \
        if (!(cond)) {                                                               \
            ++failures;                                                              \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

// Expect `stmt` to throw pasha::error with `code`; returns its what().
#define EXPECT_PASHA_ERROR(stmt, code_, text)                                               \
    do {                                                                                    \
        ++checks;                                                                           \
        bool thrown_ = false;                                                               \
        try {                                                                               \
            stmt;                                                                           \
        } catch (const pasha::error &e_) {                                                  \
            thrown_ = true;                                                                 \
            if (e_.code() != (code_) || std::string(e_.what()).find(text) == std::string::npos) { \
                ++failures;                                                                 \
                std::fprintf(stderr, "%s:%d: wrong pasha::error %d \"%s\" (want %d, \"%s\")\n", \
                             __FILE__, __LINE__, e_.code(), e_.what(), (code_), text);     \
            }                                                                               \
        }                                                                                   \
        if (!thrown_) {                                                                     \
            ++failures;                                                                     \
            std::fprintf(stderr, "%s:%d: no pasha::error from %s\n", __FILE__, __LINE__, #stmt); \
        }                                                                                   \
    } while (0)

// ---- compile-time rules ---------------------------------------------------

static_assert(!std::is_copy_constructible<pasha::array<double>>::value, "arrays are move-only");
static_assert(!std::is_copy_assignable<pasha::array<double>>::value, "arrays are move-only");
static_assert(std::is_nothrow_move_constructible<pasha::array<double>>::value, "");
static_assert(std::is_nothrow_move_assignable<pasha::array<double>>::value, "");
static_assert(std::is_copy_constructible<pasha::context>::value, "contexts are copyable references");
static_assert(std::is_nothrow_move_constructible<pasha::context>::value, "");
static_assert(!std::is_convertible<pasha::kind, pasha::context>::value, "no context made behind one's back");
static_assert(std::is_base_of<std::runtime_error, pasha::error>::value, "");
static_assert(pasha::dtype_of<long>() == PSH_INT64, "");
static_assert(pasha::dtype_of<unsigned char>() == PSH_UINT8, "");
static_assert(pasha::dtype_of<std::int16_t>() == PSH_INT16, "");
static_assert(pasha::dtype_of<std::uint32_t>() == PSH_UINT32, "");
static_assert(pasha::dtype_of<float>() == PSH_FLOAT32, "");
static_assert(pasha::dtype_of<const double>() == PSH_FLOAT64, "");
static_assert(pasha::dtype_of<std::complex<float>>() == PSH_COMPLEX64, "");
static_assert(pasha::max_closure_size == 65536, "the pool's user_data_size limit");

// An exception type not derived from std::exception.
struct odd_exception {
    int value;
};

// ---- kind-independent ------------------------------------------------------

static void test_errors()
{
    pasha::context s(pasha::kind::serial);
    EXPECT_PASHA_ERROR(pasha::alloc<double>(s, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                                                1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}),
                       PSH_EINVAL, "ndim 34");
    EXPECT_PASHA_ERROR(pasha::context(pasha::kind::threads, 100000), PSH_EINVAL, "PSH_EINVAL");
    pasha::context_options o;
    o.kind = pasha::kind::threads;
    o.persistent = true;  // only processes contexts can be persistent
    EXPECT_PASHA_ERROR(pasha::context c(o), PSH_EINVAL, "persistent");
    o = pasha::context_options{};
    o.schedule = static_cast<psh_schedule>(3);
    EXPECT_PASHA_ERROR(pasha::context c(o), PSH_EINVAL, "schedule");
    // Caught as std::runtime_error, with psh_strerror's name in what().
    bool caught = false;
    try {
        pasha::context c(pasha::kind::threads, 100000);
    } catch (const std::runtime_error &e) {
        caught = std::string(e.what()).rfind("PSH_EINVAL", 0) == 0;
    }
    CHECK(caught);
    // The fields of an error without a worker: none of them.
    caught = false;
    try {
        pasha::context c(pasha::kind::threads, 100000);
    } catch (const pasha::error &e) {
        caught = e.code() == PSH_EINVAL && e.worker_id() == -1 && e.index() == -1 && e.signal() == 0 &&
                 e.exit_status() == -1 && e.callback() == nullptr;
    }
    CHECK(caught);
    pasha::error own(PSH_ESYS, "made here");
    CHECK(own.code() == PSH_ESYS && own.worker_id() == -1 && own.callback() == nullptr &&
          std::string(own.what()) == std::string(psh_strerror(PSH_ESYS)) + ": made here");
    // A bad schedule per map, a bad axis, a 0-d array.
    auto a = pasha::alloc<int>(s, {4});
    EXPECT_PASHA_ERROR(pasha::map(s, 4, [](int, std::size_t) {}, {static_cast<psh_schedule>(3), 0}), PSH_EINVAL,
                       "schedule");
    EXPECT_PASHA_ERROR(pasha::map(s, a, 1, [](int, std::size_t, pasha::view<int>) {}), PSH_EINVAL, "axis 1");
    auto z = pasha::alloc<int>(s, {});
    CHECK(z.ndim() == 0 && z.size() == 1);
    z() = 4;  // a 0-d array: no index
    CHECK(z[0] == 4);
    EXPECT_PASHA_ERROR(pasha::map(s, z, [](int, std::size_t, pasha::view<int>) {}), PSH_EINVAL, "0-d");
    // An empty (moved-from) context is an error, not the default context.
    pasha::context moved = std::move(s);
    CHECK(!s && moved);
    EXPECT_PASHA_ERROR(pasha::map(s, 4, [](int, std::size_t) {}), PSH_EINVAL, "moved-from");
    EXPECT_PASHA_ERROR(pasha::alloc<int>(s, {4}), PSH_EINVAL, "moved-from");
    // adopt checks the dtype.
    psh_array *raw = nullptr;
    std::size_t n = 3;
    CHECK(psh_alloc(&raw, moved.get(), PSH_FLOAT32, 1, &n, nullptr) == PSH_OK);
    EXPECT_PASHA_ERROR(pasha::array<double>::adopt(raw), PSH_EINVAL, "dtype");
    auto f = pasha::array<float>::adopt(raw);  // the right type takes it over
    CHECK(f.get() == raw && f.size() == 3);
    // adopt refuses padded per-worker rows: array<T> indexes them as one run.
    psh_alloc_options po;
    psh_alloc_options_init(&po);
    po.per_worker = PSH_PER_WORKER_PADDED;
    pasha::context two(pasha::kind::threads, 2);
    psh_array *padded = nullptr;
    CHECK(psh_alloc(&padded, two.get(), PSH_FLOAT32, 1, &n, &po) == PSH_OK);
    EXPECT_PASHA_ERROR(pasha::array<float>::adopt(padded), PSH_EINVAL, "not contiguous");
    psh_array_free(padded);
    po.per_worker = 1;
    CHECK(psh_alloc(&padded, two.get(), PSH_FLOAT32, 1, &n, &po) == PSH_OK);
    CHECK(pasha::array<float>::adopt(padded).size() == 6);  // back to back rows are fine
}

static void test_arrays()
{
    pasha::context t(pasha::kind::threads, 3);
    CHECK(t.num_workers() == 3);
    CHECK(t.kind() == pasha::kind::threads);
    CHECK(t.get() != nullptr);
    pasha::context t2 = t;  // a second reference to the same context
    CHECK(t2.get() == t.get());

    auto a = pasha::alloc<double>(t, {1000, 3});
    CHECK(a.ndim() == 2 && a.shape()[0] == 1000 && a.shape()[1] == 3 && a.size() == 3000);
    CHECK(a.nbytes() == 3000 * sizeof(double));
    CHECK(a.order() == pasha::order::c);
    CHECK(a.strides()[0] == 3 * sizeof(double) && a.strides()[1] == sizeof(double));
    bool zero = true;
    for (double v : a) zero &= v == 0.0;
    CHECK(zero);
    a[5] = 7.0;
    CHECK(a(1, 2) == 7.0);  // C order: flat 5 == (1, 2)

    // F order: the first index varies fastest.
    auto fo = pasha::alloc<int>(t, {4, 5}, pasha::order::f);
    CHECK(fo.order() == pasha::order::f);
    CHECK(fo.strides()[0] == sizeof(int) && fo.strides()[1] == 4 * sizeof(int));
    fo(3, 1) = 9;
    CHECK(fo[3 + 4 * 1] == 9);

    // Fill values, converted to the element type.
    auto filled = pasha::alloc<float>(t, {10}, pasha::fill(2.5));
    bool all = true;
    for (float v : filled) all &= v == 2.5f;
    CHECK(all);
    auto cfill = pasha::alloc<std::complex<double>>(t, {3}, pasha::fill(std::complex<double>(1, -2)));
    CHECK(cfill[2] == std::complex<double>(1, -2));

    // per_worker: an axis of length num_workers first (C) or last (F).
    auto w = pasha::alloc<long>(t, {64}, pasha::per_worker);
    CHECK(w.ndim() == 2 && w.shape()[0] == 3 && w.shape()[1] == 64);
    auto wf = pasha::alloc<long>(t, {64}, pasha::order::f, pasha::per_worker, pasha::fill(1));
    CHECK(wf.shape()[0] == 64 && wf.shape()[1] == 3 && wf[191] == 1);

    // A shape from a container.
    std::vector<std::size_t> shp{2, 3, 4};
    auto b = pasha::alloc<std::int16_t>(t, shp);
    CHECK(b.ndim() == 3 && b.size() == 24 && b.shape().to_vector() == shp);
    std::array<std::size_t, 1> shp1{{7}};
    CHECK(pasha::alloc<char>(t, shp1).size() == 7);

    // alloc_like: like's shape and order; the same or another element type.
    auto l1 = pasha::alloc_like(t, fo);
    static_assert(std::is_same<decltype(l1), pasha::array<int>>::value, "");
    CHECK(l1.order() == pasha::order::f && l1.shape()[0] == 4 && l1.shape()[1] == 5 && l1[3 + 4] == 0);
    auto l2 = pasha::alloc_like<double>(t, fo, pasha::fill(0.5));
    static_assert(std::is_same<decltype(l2), pasha::array<double>>::value, "");
    CHECK(l2.order() == pasha::order::f && l2.size() == 20 && l2[19] == 0.5);
    auto l3 = pasha::alloc_like(t, a, pasha::order::f);
    CHECK(l3.order() == pasha::order::f && l3.shape()[0] == 1000);
    auto l4 = pasha::alloc_like(t, a, pasha::per_worker);
    CHECK(l4.ndim() == 3 && l4.shape()[0] == 3 && l4.shape()[1] == 1000);
    pasha::array<int> none;
    EXPECT_PASHA_ERROR(pasha::alloc_like(t, none), PSH_EINVAL, "empty");

    // Move-only: the source is left empty, the target owns the memory.
    psh_array *raw = a.get();
    double *data = a.data();
    pasha::array<double> m = std::move(a);
    CHECK(!a && a.get() == nullptr && a.data() == nullptr && a.size() == 0);
    CHECK(m.get() == raw && m.data() == data && m[5] == 7.0);
    pasha::array<double> m2 = pasha::alloc<double>(t, {2});
    m2 = std::move(m);  // frees m2's old array
    CHECK(m2.get() == raw && !m);
    psh_array *rel = m2.release();
    CHECK(rel == raw && !m2);
    psh_array_free(rel);

    // Contexts outlive their copies; adopt and borrow.
    psh_context *c = nullptr;
    CHECK(psh_context_create(&c, PSH_SERIAL, 1) == PSH_OK);
    {
        pasha::context b1 = pasha::context::borrow(c);
        CHECK(b1.get() == c && b1.num_workers() == 1);
    }
    CHECK(psh_context_num_workers(c) == 1);  // still alive: borrow took its own reference
    pasha::context owner = pasha::context::adopt(c);
    CHECK(owner.kind() == pasha::kind::serial);
    // The default context, made the default by a wrapper.
    pasha::context threads4(pasha::kind::threads, 4);
    threads4.make_default();
    pasha::context dflt = pasha::context::default_context();
    CHECK(dflt.get() == threads4.get() && dflt.num_workers() == 4);
}

static void test_views_and_sum()
{
    pasha::context s(pasha::kind::serial);
    // A 3-d array viewed along each axis.
    auto a = pasha::alloc<int>(s, {2, 3, 4});
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<int>(i);
    auto seen = pasha::alloc<int>(s, {4, 8});
    int *sv = seen.data();
    pasha::map(s, a, 2, [=](int, std::size_t k, pasha::view<int> v) {
        // sub-array a[:, :, k]: rank 2, extents {2, 3}, strides {12, 4}
        sv[k * 8 + 0] = v.rank();
        sv[k * 8 + 1] = static_cast<int>(v.extent(0));
        sv[k * 8 + 2] = static_cast<int>(v.extent(1));
        sv[k * 8 + 3] = static_cast<int>(v.stride(0));
        sv[k * 8 + 4] = static_cast<int>(v.stride(1));
        sv[k * 8 + 5] = v(1, 2);  // a[1, 2, k] = 12 + 8 + k
        sv[k * 8 + 6] = static_cast<int>(v.size());
        sv[k * 8 + 7] = v.is_contiguous() ? 1 : 0;
    });
    for (int k = 0; k < 4; ++k) {
        CHECK(sv[k * 8 + 0] == 2 && sv[k * 8 + 1] == 2 && sv[k * 8 + 2] == 3);
        CHECK(sv[k * 8 + 3] == 12 && sv[k * 8 + 4] == 4);
        CHECK(sv[k * 8 + 5] == 20 + k && sv[k * 8 + 6] == 6 && sv[k * 8 + 7] == 0);
    }
    // Along axis -3 == 0: contiguous 3x4 blocks.
    pasha::map(s, a, -3, [=](int, std::size_t i, pasha::view<int> v) {
        sv[i] = v(2, 3) + (v.is_contiguous() ? 1000 : 0);
    });
    CHECK(sv[0] == 1011 && sv[1] == 1023);
    // A 1-d array: 0-d views, one element each.
    auto one = pasha::alloc<double>(s, {5}, pasha::fill(1.5));
    auto out = pasha::alloc_like(s, one);
    double *po = out.data();
    pasha::map(s, one, [=](int, std::size_t i, pasha::view<double> v) { po[i] = v() * static_cast<double>(i) + v.rank(); });
    CHECK(out[4] == 6.0 && out[0] == 0.0);

    // sum_per_worker adds the rows.
    pasha::context t(pasha::kind::threads, 2);
    auto acc = pasha::alloc<long>(t, {3}, pasha::per_worker);
    acc(0, 0) = 1;
    acc(1, 0) = 2;
    acc(1, 2) = 5;
    auto sums = pasha::sum_per_worker(acc);
    CHECK(sums.size() == 3 && sums[0] == 3 && sums[1] == 0 && sums[2] == 5);
    auto accf = pasha::alloc<long>(t, {3}, pasha::per_worker, pasha::order::f);
    EXPECT_PASHA_ERROR(pasha::sum_per_worker(accf), PSH_EINVAL, "C order");
}

static void test_common()
{
    test_errors();
    test_arrays();
    test_views_and_sum();
}

// ---- per kind ---------------------------------------------------------------

static pasha::context make(const std::string &k)
{
    if (k == "serial") return pasha::context(pasha::kind::serial);
    if (k == "threads") return pasha::context(pasha::kind::threads, 3);
    pasha::context_options o;
    o.kind = pasha::kind::processes;
    o.num_workers = 3;
    o.persistent = k == "pool";
    return pasha::context(o);
}

// Parameters captured by value: a persistent pool gets a copy of the closure.
struct params {
    double scale;
    double table[200];
};
static_assert(std::is_trivially_copyable<params>::value, "");

static void test_maps(pasha::context &ctx, bool processes, bool pool)
{
    const std::size_t n = 10007;
    const int W = ctx.num_workers();
    auto in = pasha::alloc<double>(ctx, {n});
    for (std::size_t i = 0; i < n; ++i) in[i] = std::sin(static_cast<double>(i));
    auto out = pasha::alloc_like(ctx, in);
    const double *pin = in.data();
    double *pout = out.data();

    // Items: out = 3 * in.
    pasha::map(ctx, n, [=](int, std::size_t i) { pout[i] = 3 * pin[i]; });
    bool ok = true;
    for (std::size_t i = 0; i < n; ++i) ok &= out[i] == 3 * in[i];
    CHECK(ok);

    // Nothing to do: no call, no error; an array with a zero-length axis.
    auto calls = pasha::alloc<int>(ctx, {1});
    int *pcalls = calls.data();
    pasha::map(ctx, 0, [=](int, std::size_t) { pcalls[0] += 1; });
    pasha::map_blocks(ctx, 0, [=](int, std::size_t, std::size_t) { pcalls[0] += 1; });
    auto empty = pasha::alloc<float>(ctx, {0, 4});
    CHECK(empty.size() == 0 && empty.shape()[1] == 4);
    pasha::map(ctx, empty, [=](int, std::size_t, pasha::view<float>) { pcalls[0] += 1; });
    CHECK(calls[0] == 0);

    // The worker ids are 0..W-1 and each item ran once.
    auto hits = pasha::alloc<int>(ctx, {n});
    auto ids = pasha::alloc<int>(ctx, {n}, pasha::fill(-1));
    int *ph = hits.data(), *pid = ids.data();
    pasha::map(ctx, n, [=](int w, std::size_t i) {
        ph[i] += 1;
        pid[i] = w;
    });
    ok = true;
    for (std::size_t i = 0; i < n; ++i) ok &= hits[i] == 1 && ids[i] >= 0 && ids[i] < W;
    CHECK(ok);
    if (W > 1) CHECK(ids[0] != ids[n - 1]);  // static split: the ends go to different workers

    // Blocks: cover [0, n) once; with the static schedule one block per worker.
    auto blocks = pasha::alloc<long>(ctx, {1}, pasha::per_worker);
    long *pb = blocks.data();
    pasha::map_blocks(ctx, n, [=](int w, std::size_t b, std::size_t e) {
        pb[w] += 1;
        for (std::size_t i = b; i < e; ++i) ph[i] += 1;
    });
    ok = true;
    for (std::size_t i = 0; i < n; ++i) ok &= hits[i] == 2;
    CHECK(ok);
    long nblocks = 0;
    for (int w = 0; w < W; ++w) nblocks += blocks[static_cast<std::size_t>(w)];
    CHECK(nblocks == W);

    // A per-map schedule: dynamic chunks of at most 7 items.
    auto bigblock = pasha::alloc<long>(ctx, {2}, pasha::per_worker);
    long *pbb = bigblock.data();
    pasha::map_blocks(
        ctx, n,
        [=](int w, std::size_t b, std::size_t e) {
            long len = static_cast<long>(e - b);
            if (len > pbb[2 * w]) pbb[2 * w] = len;
            pbb[2 * w + 1] += len;
        },
        {PSH_SCHEDULE_DYNAMIC, 7});
    long longest = 0, total = 0;
    for (int w = 0; w < W; ++w) {
        longest = std::max(longest, bigblock(w, 0));
        total += bigblock(w, 1);
    }
    CHECK(longest == 7 && total == static_cast<long>(n));

    // A per-worker reduction: sum of i and of i^2, no locks.
    auto acc = pasha::alloc<long>(ctx, {2}, pasha::per_worker);
    CHECK(acc.shape()[0] == static_cast<std::size_t>(W) && acc.shape()[1] == 2);
    long *pa = acc.data();
    pasha::map(ctx, n, [=](int w, std::size_t i) {
        pa[2 * w] += static_cast<long>(i);
        pa[2 * w + 1] += static_cast<long>(i * i);
    });
    auto sums = pasha::sum_per_worker(acc);
    long nn = static_cast<long>(n);
    CHECK(sums[0] == nn * (nn - 1) / 2);
    CHECK(sums[1] == (nn - 1) * nn * (2 * nn - 1) / 6);

    // Along an axis of a 2-d array (C and F order): row sums and column sums.
    for (pasha::order ord : {pasha::order::c, pasha::order::f}) {
        const std::size_t R = 501, C = 7;
        auto m = pasha::alloc<float>(ctx, {R, C}, ord);
        for (std::size_t r = 0; r < R; ++r)
            for (std::size_t c = 0; c < C; ++c) m(r, c) = static_cast<float>(r * 10 + c);
        auto rows = pasha::alloc<double>(ctx, {R});
        auto cols = pasha::alloc<double>(ctx, {C});
        double *pr = rows.data(), *pc = cols.data();
        pasha::map(ctx, m, [=](int, std::size_t r, pasha::view<float> v) {
            double s = 0;
            for (std::size_t c = 0; c < v.extent(0); ++c) s += v[c];
            pr[r] = s;
        });
        pasha::map(ctx, m, 1, [=](int, std::size_t c, pasha::view<float> v) {
            double s = 0;
            for (std::size_t r = 0; r < v.extent(0); ++r) s += v(r);
            pc[c] = s;
        });
        ok = true;
        for (std::size_t r = 0; r < R; ++r) ok &= rows[r] == static_cast<double>(r * 10 * C + C * (C - 1) / 2);
        for (std::size_t c = 0; c < C; ++c) ok &= cols[c] == static_cast<double>(10 * R * (R - 1) / 2 + c * R);
        CHECK(ok);
    }

    // Over a contiguous range: the elements by reference.
    if (!processes) {
        std::vector<int> v(1000);
        std::iota(v.begin(), v.end(), 0);
        pasha::map(ctx, v, [](int, std::size_t i, int &x) { x = x * 2 + static_cast<int>(i); });
        ok = true;
        for (std::size_t i = 0; i < v.size(); ++i) ok &= v[i] == static_cast<int>(3 * i);
        CHECK(ok);
    } else if (!pool) {
        // fork per map: the children read the caller's vector as it is at the map.
        std::vector<double> v(n, 0.25);
        pasha::map(ctx, static_cast<const std::vector<double> &>(v),
                   [=](int, std::size_t i, const double &x) { pout[i] = x + static_cast<double>(i); });
        CHECK(out[n - 1] == 0.25 + static_cast<double>(n - 1));
    }
    // Over a psh array's elements by the range overload of its pointer span.
    struct span {
        double *p;
        std::size_t n;
        double *data() const { return p; }
        std::size_t size() const { return n; }
    };
    pasha::map(ctx, span{pout, n}, [](int, std::size_t i, double &x) { x = static_cast<double>(i) * 0.5; });
    CHECK(out[n - 1] == static_cast<double>(n - 1) * 0.5);

    // A closure with a 1.6 KiB struct captured by value: the workers (in a
    // pool: its shared copy) see the values the caller set just before the map.
    params p{};
    p.scale = 4.0;
    for (int k = 0; k < 200; ++k) p.table[k] = k * 0.5;
    pasha::map(ctx, n, [=](int, std::size_t i) { pout[i] = p.scale * p.table[i % 200]; });
    ok = true;
    for (std::size_t i = 0; i < n; ++i) ok &= out[i] == 4.0 * static_cast<double>(i % 200) * 0.5;
    CHECK(ok);
    // Near the size limit (60 KiB of captures).
    struct big {
        int v[15000];
    } bg{};
    for (int k = 0; k < 15000; ++k) bg.v[k] = k + 1;
    pasha::map(ctx, n, [=](int, std::size_t i) { ph[i] = bg.v[(i * 7) % 15000]; });
    ok = true;
    for (std::size_t i = 0; i < n; ++i) ok &= hits[i] == static_cast<int>((i * 7) % 15000 + 1);
    CHECK(ok);
}

static void test_exceptions(pasha::context &ctx, bool processes)
{
    const std::size_t n = 5000;
    auto done = pasha::alloc<int>(ctx, {n});
    int *pd = done.data();
    auto kernel = [=](int, std::size_t i) {
        if (i == 1717) throw std::out_of_range("bad index " + std::to_string(i));
        pd[i] = 1;
    };
    auto odd = [=](int, std::size_t i) {
        if (i == 99) throw odd_exception{42};
    };
    if (!processes) {
        // The very exception, of its own type, comes back.
        bool caught = false;
        try {
            pasha::map(ctx, n, kernel);
        } catch (const std::out_of_range &e) {
            caught = std::string(e.what()) == "bad index 1717";
        }
        CHECK(caught);
        int value = 0;
        try {
            pasha::map(ctx, n, odd);
        } catch (const odd_exception &e) {
            value = e.value;
        }
        CHECK(value == 42);
        caught = false;
        try {
            pasha::map_blocks(ctx, n, [](int, std::size_t b, std::size_t e) {
                if (b <= 10 && 10 < e) throw std::invalid_argument("block with 10");
            });
        } catch (const std::invalid_argument &e) {
            caught = std::string(e.what()) == "block with 10";
        }
        CHECK(caught);
        if (ctx.kind() == pasha::kind::serial) {
            // The map stopped at the throw: nothing after 1717 ran.
            long ran = std::accumulate(done.begin(), done.end(), 0L);
            CHECK(ran == 1717);
        }
    } else {
        // pasha::error with PSH_EKERNEL, the type, the original text and the
        // item that threw (regression: the block's first index, the C
        // layer's return code and psh_map_blocks_ext, no type).
        EXPECT_PASHA_ERROR(pasha::map(ctx, n, kernel), PSH_EKERNEL,
                           "the kernel threw std::out_of_range: bad index 1717 at index 1717 (worker ");
        EXPECT_PASHA_ERROR(pasha::map(ctx, n, odd), PSH_EKERNEL, "odd_exception at index 99 (worker ");
        auto m = pasha::alloc<double>(ctx, {10, 2});
        EXPECT_PASHA_ERROR(pasha::map(ctx, m,
                                      [](int, std::size_t i, pasha::view<double>) {
                                          if (i == 3) throw std::runtime_error("row three");
                                      }),
                           PSH_EKERNEL, "std::runtime_error: row three at index 3 (worker ");
        // The same as data (psh_last_error_info, not the text): the worker
        // whose static share holds item 1717 of 5000 with 3 workers (1),
        // the very item, the callback.
        int W = ctx.num_workers();
        for (int round = 0; round < 2; ++round) {
            bool got = false;
            try {
                if (round == 0)
                    pasha::map(ctx, n, kernel);
                else
                    pasha::map_blocks(ctx, n, [](int, std::size_t b, std::size_t e) {
                        if (b <= 4000 && 4000 < e) throw std::invalid_argument("block with 4000");
                    });
            } catch (const pasha::error &e) {
                got = true;
                CHECK(e.code() == PSH_EKERNEL);
                CHECK(e.worker_id() == static_cast<int>((round == 0 ? 1717 : 4000) * static_cast<std::size_t>(W) / n));
                // map: the item; map_blocks (static: one block per worker): the block's start
                CHECK(e.index() == (round == 0 ? 1717 : static_cast<long long>(e.worker_id() * n / W)));
                CHECK(e.callback() != nullptr &&
                      std::string(e.callback()) == (round == 0 ? "kernel" : "block_kernel"));
                CHECK(e.signal() == 0 && e.exit_status() == -1);
            }
            CHECK(got);
        }
        // Caught as a std::runtime_error too.
        bool caught = false;
        try {
            pasha::map(ctx, n, kernel);
        } catch (const std::runtime_error &e) {
            caught = std::string(e.what()).find("bad index 1717") != std::string::npos;
        }
        CHECK(caught);
    }
    // The map stopped early: not every item ran (the static split gives the
    // thrower's share to one worker, which stops at 1717).
    long ran = std::accumulate(done.begin(), done.end(), 0L);
    CHECK(ran < static_cast<long>(n));
    // The context stays usable.
    std::fill(done.begin(), done.end(), 0);
    pasha::map(ctx, n, [=](int, std::size_t i) { pd[i] = 2; });
    CHECK(std::accumulate(done.begin(), done.end(), 0L) == 2 * static_cast<long>(n));
}

static void test_options(pasha::context &ctx, bool processes)
{
    const std::size_t n = 20000;
    auto out = pasha::alloc<long>(ctx, {n});
    long *po = out.data();

    // A cancel flag set before the map: PSH_ECANCELED, nothing ran.
    std::atomic<int> cancel{1};
    pasha::map_options mo;
    mo.cancel = &cancel;
    EXPECT_PASHA_ERROR(pasha::map(ctx, n, [=](int, std::size_t i) { po[i] = 1; }, mo), PSH_ECANCELED, "cancel");
    CHECK(std::accumulate(out.begin(), out.end(), 0L) == 0);
    cancel.store(0);
    pasha::map(ctx, n, [=](int, std::size_t i) { po[i] = 1; }, mo);
    CHECK(std::accumulate(out.begin(), out.end(), 0L) == static_cast<long>(n));
    if (!processes) {
        // Set by a kernel (threads share the caller's memory) half-way.
        std::fill(out.begin(), out.end(), 0);
        std::atomic<int> *pc = &cancel;
        pasha::map_options dyn(PSH_SCHEDULE_DYNAMIC, 10);
        dyn.cancel = &cancel;
        EXPECT_PASHA_ERROR(pasha::map(ctx, n,
                                      [=](int, std::size_t i) {
                                          if (i == 100) pc->store(1);
                                          po[i] = 1;
                                      },
                                      dyn),
                           PSH_ECANCELED, "cancel");
        CHECK(std::accumulate(out.begin(), out.end(), 0L) < static_cast<long>(n));
        cancel.store(0);
    }

    // Progress: a lambda; the last call reports all items done.
    std::size_t last_done = 0, last_total = 0, calls = 0;
    mo = pasha::map_options{};
    mo.progress = [&](std::size_t d, std::size_t t) {
        last_done = d;
        last_total = t;
        ++calls;
    };
    pasha::map(ctx, n, [=](int, std::size_t i) { po[i] = 2; }, mo);
    CHECK(calls >= 1 && last_done == n && last_total == n);
    // A throwing progress callback: its exception comes back.
    mo.progress = [](std::size_t, std::size_t) { throw std::logic_error("progress says no"); };
    bool caught = false;
    try {
        pasha::map(ctx, n, [=](int, std::size_t i) { po[i] = 3; }, mo);
    } catch (const std::logic_error &e) {
        caught = std::string(e.what()) == "progress says no";
    }
    CHECK(caught);
    // Still usable.
    pasha::map(ctx, n, [=](int, std::size_t i) { po[i] = 4; });
    CHECK(std::accumulate(out.begin(), out.end(), 0L) == 4 * static_cast<long>(n));
}

// A map from inside a kernel runs serially in that worker; exceptions from it
// reach the outer map's rules.
// A worker process that dies: pasha::error(PSH_EWORKER) with the worker,
// the first item of the block it was on (pasha::map runs blocks; with the
// static schedule the worker's whole share) and the signal or exit status,
// as data.
static void test_dead_worker(pasha::context &ctx)
{
    const std::size_t n = 3000;
    const int W = ctx.num_workers();
    for (int how = 0; how < 2; ++how) {
        bool got = false;
        try {
            pasha::map(ctx, n, [how](int, std::size_t i) {
                if (i == 2500) {
                    if (how == 0) raise(SIGKILL);
                    _exit(7);
                }
            });
        } catch (const pasha::error &e) {
            got = true;
            CHECK(e.code() == PSH_EWORKER);
            CHECK(e.worker_id() == static_cast<int>(2500 * static_cast<std::size_t>(W) / n));
            const int w = static_cast<int>(2500 * static_cast<std::size_t>(W) / n);
            CHECK(e.index() == static_cast<long long>(static_cast<std::size_t>(w) * n / static_cast<std::size_t>(W)));
            CHECK(how == 0 ? (e.signal() == SIGKILL && e.exit_status() == -1)
                           : (e.signal() == 0 && e.exit_status() == 7));
        }
        CHECK(got);
        // The context stays usable.
        std::vector<long> r = pasha::map(ctx, 10, [](int, std::size_t i) { return static_cast<long>(i); });
        CHECK(r.size() == 10 && r[9] == 9);
    }
}

// map_options::worker_begin / worker_end: per-worker state set up in the
// worker itself (its thread, or its process in processes contexts and a
// pool), once per map, seen by the worker's kernel calls.
static thread_local int began_as = -1;
static std::atomic<int> ends{0};  // the caller's: serial and threads only

static void test_worker_hooks(pasha::context &ctx, bool processes)
{
    const std::size_t n = 5000;
    const int W = ctx.num_workers();
    pasha::map_options o{PSH_SCHEDULE_DYNAMIC, 50};
    o.worker_begin = [](int w) { began_as = w; };
    o.worker_end = [](int) { ends.fetch_add(1); began_as = -1; };
    ends = 0;
    std::vector<int> seen = pasha::map(ctx, n, [](int w, std::size_t) { return began_as == w ? 1 : 0; }, o);
    CHECK(seen.size() == n && std::accumulate(seen.begin(), seen.end(), 0) == static_cast<int>(n));
    if (!processes) CHECK(ends.load() == W);  // once per worker, not per chunk
    // A throwing worker_begin fails the map, as a kernel's throw does.
    o.worker_begin = [](int w) {
        if (w == 0) throw std::logic_error("no setup");
    };
    bool thrown = false;
    try {
        pasha::map(ctx, n, [](int, std::size_t) {}, o);
    } catch (const std::logic_error &e) {
        thrown = !processes && std::string(e.what()) == "no setup";
    } catch (const pasha::error &e) {
        thrown = processes && e.code() == PSH_EKERNEL && e.callback() && std::string(e.callback()) == "worker_begin" &&
                 e.worker_id() == 0 && std::string(e.what()).find("no setup") != std::string::npos;
    }
    CHECK(thrown);
}

// ---- maps with results, reductions -----------------------------------------

struct item_result {
    int worker;
    long index;
    double value;
};
static_assert(std::is_trivially_copyable<item_result>::value, "");

struct no_default {  // trivially copyable, not default-constructible
    explicit no_default(long v) : v(v) {}
    long v;
};

static void test_results(pasha::context &ctx, bool pool)
{
    const std::size_t n = 10007;
    const int W = ctx.num_workers();
    // A kernel that returns a value: a std::vector in item order.
    std::vector<long> sq = pasha::map(ctx, n, [](int, std::size_t i) { return static_cast<long>(i * i + 1); });
    CHECK(sq.size() == n);
    bool ok = sq.size() == n;
    for (std::size_t i = 0; ok && i < n; ++i) ok = sq[i] == static_cast<long>(i * i + 1);
    CHECK(ok);
    // Structs, under each schedule: the worker that computed item i, and
    // every worker id in range.
    for (psh_schedule s : {PSH_SCHEDULE_STATIC, PSH_SCHEDULE_DYNAMIC, PSH_SCHEDULE_GUIDED}) {
        std::vector<item_result> r = pasha::map(
            ctx, n,
            [](int w, std::size_t i) {
                return item_result{w, static_cast<long>(i), 0.5 * static_cast<double>(i)};
            },
            {s, 100});
        ok = r.size() == n;
        std::vector<long> per(static_cast<std::size_t>(W), 0);
        for (std::size_t i = 0; ok && i < n; ++i) {
            ok = r[i].index == static_cast<long>(i) && r[i].value == 0.5 * static_cast<double>(i) &&
                 r[i].worker >= 0 && r[i].worker < W;
            if (ok) per[static_cast<std::size_t>(r[i].worker)] += 1;
        }
        CHECK(ok);
        CHECK(std::accumulate(per.begin(), per.end(), 0L) == static_cast<long>(n));
        if (s == PSH_SCHEDULE_STATIC) {
            // worker w computed exactly [w*n/W, (w+1)*n/W)
            bool split = true;
            const std::size_t uw = static_cast<std::size_t>(W);
            for (std::size_t w = 0; w < uw; ++w)
                for (std::size_t i = w * n / uw; i < (w + 1) * n / uw; ++i) split &= r[i].worker == static_cast<int>(w);
            CHECK(split);
        }
    }
    // No items: an empty vector; a type without a default constructor.
    CHECK(pasha::map(ctx, 0, [](int, std::size_t) { return 1.0; }).empty());
    std::vector<no_default> nd = pasha::map(ctx, 100, [](int, std::size_t i) { return no_default(7 * static_cast<long>(i)); });
    CHECK(nd.size() == 100 && nd[0].v == 0 && nd[99].v == 693);
    // Over an array's axis and over a range.
    auto m = pasha::alloc<double>(ctx, {50, 4});
    for (std::size_t i = 0; i < m.size(); ++i) m[i] = static_cast<double>(i);
    std::vector<double> rows = pasha::map(ctx, m, [](int, std::size_t, pasha::view<double> v) {
        return v(0) + v(1) + v(2) + v(3);
    });
    CHECK(rows.size() == 50 && rows[0] == 6 && rows[49] == 196 + 197 + 198 + 199);
    std::vector<double> cols = pasha::map(ctx, m, 1, [](int, std::size_t, pasha::view<double> v) { return v(49); });
    CHECK(cols.size() == 4 && cols[0] == 196 && cols[3] == 199);
    std::vector<float> range = pasha::map(ctx, m, [](int, std::size_t i, pasha::view<double>) { return float(i); });
    auto arr = pasha::alloc<int>(ctx, {300});
    for (std::size_t i = 0; i < arr.size(); ++i) arr[i] = static_cast<int>(i) - 5;
    std::vector<int> neg = pasha::map(ctx, arr, [](int, std::size_t, pasha::view<int> v) { return -v(); });
    CHECK(neg.size() == 300 && neg[0] == 5 && neg[299] == -294);
    if (!pool) {  // a range on the caller's stack: the pool's workers cannot see it
        std::array<short, 5> small{{1, 2, 3, 4, 5}};
        std::vector<int> twice = pasha::map(ctx, small, [](int, std::size_t, short &e) { return 2 * e; });
        CHECK((twice == std::vector<int>{2, 4, 6, 8, 10}));
    }
    CHECK(range.size() == 50 && range[49] == 49.0f);
    // A kernel that throws: no results, the error as for a void map.
    bool thrown = false;
    try {
        (void)pasha::map(ctx, n, [](int, std::size_t i) {
            if (i == 4321) throw std::length_error("result 4321");
            return i;
        });
    } catch (const std::length_error &e) {
        thrown = ctx.kind() != pasha::kind::processes && std::string(e.what()) == "result 4321";
    } catch (const pasha::error &e) {
        thrown = ctx.kind() == pasha::kind::processes && e.code() == PSH_EKERNEL &&
                 std::string(e.what()).find("result 4321 at index 4321") != std::string::npos;
    }
    CHECK(thrown);
}

// A span of items: reduce's order check. lo == -1: the identity (no items).
struct span {
    long lo, hi;
    bool contiguous;
};

struct histogram {
    long bins[64];
    double sum;
};

static void test_reduce(pasha::context &ctx)
{
    const std::size_t n = 100003;
    const int W = ctx.num_workers();
    const long long want = static_cast<long long>(n) * static_cast<long long>(n - 1) / 2;
    // Functional forms: sum of [0, n).
    for (psh_schedule s : {PSH_SCHEDULE_STATIC, PSH_SCHEDULE_DYNAMIC, PSH_SCHEDULE_GUIDED}) {
        long long sum = pasha::reduce(
            ctx, n, 0LL,
            [](std::size_t b, std::size_t e, long long acc) {
                for (std::size_t i = b; i < e; ++i) acc += static_cast<long long>(i);
                return acc;
            },
            [](long long a, long long b) { return a + b; }, {s, 1000});
        CHECK(sum == want);
    }
    // The combine order: worker 0, 1, ..., W-1, left to right (a
    // non-commutative combine that only accepts adjacent spans), W - 1 calls,
    // in the caller (a counter on the caller's stack).
    int combines = 0;
    int *pcombines = &combines;
    span all = pasha::reduce(
        ctx, n, span{-1, -1, true},
        [](std::size_t b, std::size_t e, const span &acc) {
            if (acc.lo < 0) return span{long(b), long(e), true};
            return span{acc.lo, long(e), acc.contiguous && acc.hi == long(b)};
        },
        [pcombines](const span &a, const span &b) {
            ++*pcombines;
            if (a.lo < 0) return b;
            if (b.lo < 0) return a;
            return span{a.lo, b.hi, a.contiguous && b.contiguous && a.hi == b.lo};
        },
        {PSH_SCHEDULE_STATIC});
    CHECK(all.lo == 0 && all.hi == static_cast<long>(n) && all.contiguous);
    CHECK(combines == W - 1);
    // In-place forms, a 64-bin histogram (each bin its own count) and a sum,
    // dynamic schedule in small chunks.
    histogram zero{};
    histogram h = pasha::reduce(
        ctx, n, zero,
        [](std::size_t b, std::size_t e, histogram &acc) {
            for (std::size_t i = b; i < e; ++i) {
                acc.bins[i % 64] += 1;
                acc.sum += 1.0;
            }
        },
        [](histogram &into, const histogram &from) {
            for (int k = 0; k < 64; ++k) into.bins[k] += from.bins[k];
            into.sum += from.sum;
        },
        {PSH_SCHEDULE_DYNAMIC, 77});
    bool ok = h.sum == static_cast<double>(n);
    for (std::size_t k = 0; k < 64; ++k) ok &= h.bins[k] == static_cast<long>(n / 64 + (k < n % 64 ? 1 : 0));
    CHECK(ok);
    // The identity counts once per worker: with identity 10 and W workers,
    // the sum of nothing is 10 * W.
    long ten = pasha::reduce(ctx, 0, 10L, [](std::size_t, std::size_t, long &) {}, [](long &a, const long &b) { a += b; });
    CHECK(ten == 10L * W);
    // Reading a psh array: max of in[i].
    auto in = pasha::alloc<double>(ctx, {n});
    for (std::size_t i = 0; i < n; ++i) in[i] = static_cast<double>((i * 7919) % n);
    const double *pin = in.data();
    double mx = pasha::reduce(
        ctx, n, -1.0,
        [pin](std::size_t b, std::size_t e, double acc) {
            for (std::size_t i = b; i < e; ++i) acc = std::max(acc, pin[i]);
            return acc;
        },
        [](double a, double b) { return std::max(a, b); });
    CHECK(mx == static_cast<double>(n - 1));
    // Exceptions come back as from map; the context stays usable.
    bool thrown = false;
    try {
        (void)pasha::reduce(
            ctx, n, 0L,
            [](std::size_t b, std::size_t e, long &) {
                if (b <= 555 && 555 < e) throw std::overflow_error("reduce 555");
            },
            [](long &a, const long &b) { a += b; });
    } catch (const std::overflow_error &e) {
        thrown = ctx.kind() != pasha::kind::processes && std::string(e.what()) == "reduce 555";
    } catch (const pasha::error &e) {
        thrown = ctx.kind() == pasha::kind::processes && e.code() == PSH_EKERNEL &&
                 std::string(e.what()).find("reduce 555") != std::string::npos;
    }
    CHECK(thrown);
    CHECK(pasha::reduce(ctx, 10, 0, [](std::size_t b, std::size_t e, int &a) { a += int(e - b); },
                        [](int x, int y) { return x + y; }) == 10);
}

static void test_nested(pasha::context &ctx, bool processes)
{
    const std::size_t n = 40, m = 25;
    auto out = pasha::alloc<long>(ctx, {n, m});
    long *po = out.data();
    const pasha::context *pc = &ctx;
    if (!processes) {
        pasha::map(ctx, n, [=](int, std::size_t i) {
            pasha::map(*pc, m, [=](int, std::size_t j) { po[i * m + j] = static_cast<long>(i * j); });
        });
        CHECK(out(n - 1, m - 1) == static_cast<long>((n - 1) * (m - 1)));
        bool caught = false;
        try {
            pasha::map(ctx, n, [=](int, std::size_t) {
                pasha::map(*pc, m, [](int, std::size_t j) {
                    if (j == 5) throw std::domain_error("inner");
                });
            });
        } catch (const std::domain_error &e) {
            caught = std::string(e.what()) == "inner";
        }
        CHECK(caught);
    }
}

int main(int argc, char **argv)
{
    std::string what = argc > 1 ? argv[1] : "common";
    try {
        if (what == "common") {
            test_common();
        } else if (what == "serial" || what == "threads" || what == "processes" || what == "pool") {
            pasha::context ctx = make(what);
            bool processes = what == "processes" || what == "pool";
            CHECK(ctx.kind() == (processes ? pasha::kind::processes
                                 : what == "serial" ? pasha::kind::serial
                                                    : pasha::kind::threads));
            test_maps(ctx, processes, what == "pool");
            test_exceptions(ctx, processes);
            test_options(ctx, processes);
            test_nested(ctx, processes);
            test_results(ctx, what == "pool");
            test_reduce(ctx);
            if (processes) test_dead_worker(ctx);
            test_worker_hooks(ctx, processes);
        } else {
            std::fprintf(stderr, "usage: test-cpp common|serial|threads|processes|pool\n");
            return 2;
        }
    } catch (const std::exception &e) {
        std::fprintf(stderr, "unexpected exception: %s\n", e.what());
        return 1;
    }
    std::printf("test-cpp %s: %d checks, %d failed\n", what.c_str(), checks, failures);
    return failures > 100 ? 100 : failures;
}
