// Must NOT compile: a closure larger than a pool's user_data copy (64 KiB).
#include <pasha/pasha.hpp>

struct big {
    char bytes[70000];
};

int main()
{
    pasha::context t(pasha::kind::threads, 2);
    big b{};
    pasha::map(t, 10, [b](int, std::size_t i) { (void)b.bytes[i]; });
}
