#include "shm.hh"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "error.hh"
#include "pasha/pasha.h"

namespace psh {

namespace {

const size_t kPage = 4096;

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

// Open a fresh shm object with an unpredictable name, O_EXCL and mode 0600,
// and unlink it at once: nothing is left in /dev/shm even after SIGKILL.
int open_unlinked_shm()
{
    for (int attempt = 0; attempt < 16; ++attempt) {
        uint64_t r[2] = {0, 0};
        if (getrandom(r, sizeof r, 0) != sizeof r)
            r[0] ^= (uint64_t)getpid() * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)&r;
        char name[64];
        snprintf(name, sizeof name, "/psh-%016" PRIx64 "%016" PRIx64, r[0], r[1]);
        int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) {
            shm_unlink(name);
            return fd;
        }
        if (errno != EEXIST)
            fail_errno("shm_open", errno);
    }
    fail(PSH_ESYS, "shm_open: could not find an unused name");
}

// posix_fallocate, retried on EINTR; returns 0 or an errno value.
int commit(int fd, off_t offset, size_t len)
{
    int rc;
    do {
        rc = posix_fallocate(fd, offset, (off_t)len);
    } while (rc == EINTR);
    return rc;
}

void release(int fd, off_t offset, size_t len)
{
    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, (off_t)len);
}

[[noreturn]] void fail_commit(int err, size_t len)
{
    if (err == ENOSPC || err == ENOMEM)
        fail(PSH_ENOMEM, "not enough space in /dev/shm for %zu bytes", len);
    fail_errno("posix_fallocate", err);
}

class StandaloneBlock final : public Block {
public:
    StandaloneBlock(void *data, size_t size) : Block(data, size) {}
    ~StandaloneBlock() override { munmap(data_, size_); }
};

class Arena {
public:
    static Arena &get()
    {
        static Arena *arena = new Arena();  // never destroyed: blocks may outlive main
        return *arena;
    }

    // Returns nullptr when the arena cannot serve this request.
    std::unique_ptr<Block> allocate(size_t len);
    void free(size_t offset, size_t len);
    size_t capacity()
    {
        std::lock_guard<std::mutex> lock(mutex_);
        init_locked();
        return capacity_;
    }

private:
    void init_locked();

    std::mutex mutex_;
    bool initialized_ = false;
    int fd_ = -1;
    char *base_ = nullptr;
    size_t capacity_ = 0;
    pid_t owner_ = 0;
    std::map<size_t, size_t> free_;  // offset -> length
};

class ArenaBlock final : public Block {
public:
    ArenaBlock(void *data, size_t size, size_t offset) : Block(data, size), offset_(offset) {}
    ~ArenaBlock() override { Arena::get().free(offset_, size_); }

private:
    size_t offset_;
};

size_t default_arena_size()
{
    const char *env = getenv("PASHA_ARENA_SIZE");
    if (env && *env) {
        char *end;
        unsigned long long v = strtoull(env, &end, 10);
        switch (*end) {
        case 'T': case 't': v <<= 10; [[fallthrough]];
        case 'G': case 'g': v <<= 10; [[fallthrough]];
        case 'M': case 'm': v <<= 20; break;
        default: break;
        }
        return (size_t)v;
    }
    // Under valgrind the leak check reads every page of the arena, and tmpfs
    // backs every page read through a shared mapping: a huge arena would fill
    // /dev/shm. (Valgrind's preloaded core is named vgpreload_*.)
    const char *preload = getenv("LD_PRELOAD");
    if (preload && strstr(preload, "vgpreload")) return (size_t)1 << 30;
    long pages = sysconf(_SC_PHYS_PAGES);
    size_t ram = pages > 0 ? (size_t)pages * kPage : 0;
    size_t size = 2 * ram;
    if (size < ((size_t)64 << 30)) size = (size_t)64 << 30;
    if (size > ((size_t)16 << 40)) size = (size_t)16 << 40;
    return size;
}

void Arena::init_locked()
{
    if (initialized_) return;
    initialized_ = true;
    size_t want = round_up(default_arena_size(), kPage);
    if (want == 0) return;
    int fd;
    try {
        fd = open_unlinked_shm();
    } catch (const Error &) {
        return;  // no arena: every allocation becomes standalone (and reports the error)
    }
    // Halve on failure: address-space limits, valgrind and sanitizers may
    // refuse a huge reservation; a smaller arena still serves most arrays.
    for (size_t size = want; size >= ((size_t)1 << 30) || size == want; size /= 2) {
        if (ftruncate(fd, (off_t)size) != 0) continue;
        void *p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
        if (p == MAP_FAILED) continue;
        // Not in core dumps: the dumper would read every page of the
        // reservation (and tmpfs would back each one). Arrays are
        // re-included as they are allocated.
        madvise(p, size, MADV_DONTDUMP);
        fd_ = fd;
        base_ = (char *)p;
        capacity_ = size;
        owner_ = getpid();
        free_[0] = size;
        return;
    }
    close(fd);
}

std::unique_ptr<Block> Arena::allocate(size_t len)
{
    std::lock_guard<std::mutex> lock(mutex_);
    init_locked();
    // A forked child shares the arena's pages but not its bookkeeping: it must
    // not hand out ranges the parent may hand out too.
    if (!base_ || getpid() != owner_) return nullptr;
    for (auto it = free_.begin(); it != free_.end(); ++it) {
        if (it->second < len) continue;
        size_t offset = it->first, avail = it->second;
        int err = commit(fd_, (off_t)offset, len);
        if (err) {
            release(fd_, (off_t)offset, len);
            fail_commit(err, len);
        }
        free_.erase(it);
        if (avail > len) free_[offset + len] = avail - len;
        madvise(base_ + offset, len, MADV_DODUMP);
        return std::unique_ptr<Block>(new ArenaBlock(base_ + offset, len, offset));
    }
    return nullptr;
}

void Arena::free(size_t offset, size_t len)
{
    std::lock_guard<std::mutex> lock(mutex_);
    if (getpid() != owner_) return;  // the parent owns these pages
    release(fd_, (off_t)offset, len);
    madvise(base_ + offset, len, MADV_DONTDUMP);
    auto next = free_.lower_bound(offset);
    if (next != free_.end() && offset + len == next->first) {
        len += next->second;
        next = free_.erase(next);
    }
    if (next != free_.begin()) {
        auto prev = std::prev(next);
        if (prev->first + prev->second == offset) {
            prev->second += len;
            return;
        }
    }
    free_[offset] = len;
}

std::mutex pools_mutex;
pid_t pools_pid = 0;
int pools = 0;

bool live_pools()
{
    std::lock_guard<std::mutex> lock(pools_mutex);
    return pools_pid == getpid() && pools > 0;
}

}  // namespace

std::unique_ptr<Block> shm_allocate_standalone(size_t nbytes)
{
    size_t len = round_up(nbytes ? nbytes : 1, kPage);
    int fd = open_unlinked_shm();
    if (ftruncate(fd, (off_t)len) != 0) {
        int err = errno;
        close(fd);
        fail_errno("ftruncate", err);
    }
    int err = commit(fd, 0, len);
    if (err) {
        close(fd);
        fail_commit(err, len);
    }
    void *p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    err = errno;
    close(fd);
    if (p == MAP_FAILED) fail_errno("mmap", err);
    return std::unique_ptr<Block>(new StandaloneBlock(p, len));
}

std::unique_ptr<Block> shm_allocate(size_t nbytes)
{
    size_t len = round_up(nbytes ? nbytes : 1, kPage);
    if (len < nbytes) fail(PSH_ENOMEM, "%zu bytes is more than the address space", nbytes);
    if (auto block = Arena::get().allocate(len)) return block;
    if (live_pools())
        fail(PSH_ENOMEM,
             "the shm arena (%zu bytes, PASHA_ARENA_SIZE) cannot hold %zu more bytes, and an array outside it "
             "would be invisible to the workers of the persistent pool alive in this process",
             shm_arena_capacity(), len);
    return shm_allocate_standalone(len);
}

void shm_pool_started()
{
    std::lock_guard<std::mutex> lock(pools_mutex);
    if (pools_pid != getpid()) {  // a forked child does not own its parent's pools
        pools_pid = getpid();
        pools = 0;
    }
    ++pools;
}

void shm_pool_stopped()
{
    std::lock_guard<std::mutex> lock(pools_mutex);
    if (pools_pid == getpid() && pools > 0) --pools;
}

size_t shm_arena_capacity() { return Arena::get().capacity(); }

}  // namespace psh
