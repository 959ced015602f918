// Must NOT compile: a closure holding a std::vector by value cannot be
// copied into a persistent pool's shared memory (tests/cpp/meson.build).
#include <pasha/pasha.hpp>

#include <vector>

int main()
{
    pasha::context t(pasha::kind::threads, 2);
    std::vector<double> v(10);
    pasha::map(t, v.size(), [v](int, std::size_t i) { (void)v[i]; });
}
