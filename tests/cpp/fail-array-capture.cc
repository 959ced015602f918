// Must NOT compile: a closure that owns a (move-only) pasha::array.
#include <pasha/pasha.hpp>

#include <utility>

int main()
{
    pasha::context t(pasha::kind::threads, 2);
    auto a = pasha::alloc<double>(t, {10});
    pasha::map(t, 10, [a = std::move(a)](int, std::size_t i) { a[i] = 1; });
}
