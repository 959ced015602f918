// Must NOT compile: a reduction whose accumulator is not trivially copyable
// (processes contexts keep the per-worker accumulators in shared memory).
#include <pasha/pasha.hpp>

#include <vector>

int main()
{
    pasha::context t(pasha::kind::threads, 2);
    std::vector<double> zero(8, 0.0);
    auto r = pasha::reduce(
        t, 10, zero, [](std::size_t, std::size_t, std::vector<double> &acc) { acc[0] += 1; },
        [](std::vector<double> &a, const std::vector<double> &b) { a[0] += b[0]; });
    (void)r;
}
