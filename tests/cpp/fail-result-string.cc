// Must NOT compile: a kernel whose result is not trivially copyable (the
// results of a processes context travel through shared memory).
#include <pasha/pasha.hpp>

#include <string>

int main()
{
    pasha::context t(pasha::kind::threads, 2);
    auto r = pasha::map(t, 10, [](int, std::size_t i) { return std::to_string(i); });
    (void)r;
}
