// Must NOT compile: a mutable lambda (workers call the kernel as a const
// object, several at once).
#include <pasha/pasha.hpp>

int main()
{
    pasha::context t(pasha::kind::threads, 2);
    int count = 0;
    pasha::map(t, 10, [count](int, std::size_t) mutable { ++count; });
}
