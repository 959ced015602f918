#include "shm.hh"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <string>

#include "error.hh"
#include "fork_safety.hh"
#include "pasha/pasha.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace psh {

namespace {

const size_t kPage = 4096;

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

// A shm object with an unpredictable name, O_EXCL and mode 0600, unlinked
// at once: for kernels without memfd_create.
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
        if (errno != EEXIST) fail_errno("shm_open", errno);
    }
    fail(PSH_ESYS, "shm_open: could not find an unused name");
}

// An anonymous shared-memory file: memfd (independent of the /dev/shm
// mount's size, which containers set to 64 MiB), else shm_open.
int open_anonymous_shm()
{
    int fd = memfd_create("pasha", MFD_CLOEXEC);
    if (fd >= 0) {
        fchmod(fd, 0600);
        return fd;
    }
    if (errno != ENOSYS && errno != EINVAL) fail_errno("memfd_create", errno);
    return open_unlinked_shm();
}

// The memory this process can have, in bytes, and where the limit comes
// from: RAM + swap, or the cgroup's memory limit if lower.
struct MemoryLimit {
    size_t bytes = SIZE_MAX;
    std::string source;
};

bool read_number_file(const std::string &path, size_t &out)
{
    FILE *f = fopen(path.c_str(), "re");
    if (!f) return false;
    char buf[64] = {0};
    bool ok = fgets(buf, sizeof buf, f) != nullptr;
    fclose(f);
    if (!ok) return false;
    if (strncmp(buf, "max", 3) == 0) {
        out = SIZE_MAX;
        return true;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno || end == buf) return false;
    out = (size_t)v;
    return true;
}

// The lowest memory limit of this process's cgroup and its ancestors (v2:
// memory.max; v1: memory.limit_in_bytes), SIZE_MAX if none.
size_t cgroup_memory_limit(std::string &where)
{
    size_t limit = SIZE_MAX;
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f) return limit;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *c1 = strchr(line, ':');
        if (!c1) continue;
        char *c2 = strchr(c1 + 1, ':');
        if (!c2) continue;
        std::string controllers(c1 + 1, c2), path(c2 + 1);
        std::string root, file;
        if (controllers.empty()) {
            root = "/sys/fs/cgroup";
            file = "memory.max";
        } else if (("," + controllers + ",").find(",memory,") != std::string::npos) {
            root = "/sys/fs/cgroup/memory";
            file = "memory.limit_in_bytes";
        } else {
            continue;
        }
        // Walk from the process's cgroup up to the root of the hierarchy.
        for (std::string p = path;;) {
            size_t v;
            std::string full = root + (p == "/" ? "" : p) + "/" + file;
            if (read_number_file(full, v) && v < limit) {
                limit = v;
                where = full;
            }
            if (p.empty() || p == "/") break;
            size_t slash = p.rfind('/');
            p = slash == 0 || slash == std::string::npos ? "/" : p.substr(0, slash);
        }
    }
    fclose(f);
    // cgroup v1 reports "no limit" as a huge page-rounded number.
    if (limit >= ((size_t)1 << 62)) limit = SIZE_MAX;
    return limit;
}

const MemoryLimit &memory_limit()
{
    static const MemoryLimit limit = [] {
        MemoryLimit m;
        struct sysinfo si;
        if (sysinfo(&si) == 0) {
            unsigned long long unit = si.mem_unit ? si.mem_unit : 1;
            m.bytes = (size_t)((si.totalram + si.totalswap) * unit);
            m.source = "RAM + swap";
        }
        std::string where;
        size_t cg = cgroup_memory_limit(where);
        if (cg < m.bytes) {
            m.bytes = cg;
            m.source = "the cgroup memory limit in " + where;
        }
        return m;
    }();
    return limit;
}

// Bytes committed to psh arrays by this process (arena and standalone).
std::mutex committed_mutex;
size_t committed = 0;

// Reserve len bytes against the process's memory limit, or fail with the
// numbers. Undone by unreserve.
void reserve(size_t len)
{
    const MemoryLimit &m = memory_limit();
    std::lock_guard<std::mutex> lock(committed_mutex);
    if (len > m.bytes || committed > m.bytes - len)
        fail(PSH_ENOMEM,
             "an array of %zu bytes does not fit in the memory this process can have: %zu bytes (%s), of "
             "which psh arrays already hold %zu",
             len, m.bytes, m.source.c_str(), committed);
    committed += len;
}

void unreserve(size_t len)
{
    std::lock_guard<std::mutex> lock(committed_mutex);
    committed -= len < committed ? len : committed;
}

[[noreturn]] void fail_commit(int err, size_t len)
{
    if (err == ENOSPC || err == ENOMEM || err == EFAULT)
        fail(PSH_ENOMEM, "cannot commit %zu bytes of shared memory: %s", len, strerror(err));
    fail_errno("committing shared memory", err);
}

// posix_fallocate, retried on EINTR; returns 0 or an errno value.
int fallocate_commit(int fd, off_t offset, size_t len)
{
    int rc;
    do {
        rc = posix_fallocate(fd, offset, (off_t)len);
    } while (rc == EINTR);
    return rc;
}

// Fault in len bytes of a shared mapping for writing; 0 or an errno value.
int populate(void *p, size_t len)
{
    for (;;) {
        if (madvise(p, len, MADV_POPULATE_WRITE) == 0) return 0;
        if (errno != EINTR && errno != EAGAIN) return errno;
    }
}

bool populate_supported(void *probe)
{
    if (madvise(probe, kPage, MADV_POPULATE_WRITE) != 0) return false;
    madvise(probe, kPage, MADV_REMOVE);
    return true;
}

class StandaloneBlock final : public Block {
public:
    StandaloneBlock(void *data, size_t size) : Block(data, size), owner_(current_pid()) {}
    ~StandaloneBlock() override
    {
        munmap(data_, size_);
        if (owner_ == current_pid()) unreserve(size_);
    }

private:
    pid_t owner_;
};

class Arena {
public:
    // The arena of this process, made (not yet mapped) on first use.
    static Arena &get();

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
    // The kept descriptor (no MADV_POPULATE_WRITE), if still ours.
    int checked_fd();

    std::mutex mutex_;
    bool initialized_ = false;
    bool populate_ = false;  // commit through the mapping; no descriptor kept
    int fd_ = -1;
    dev_t dev_ = 0;
    ino_t ino_ = 0;
    char *base_ = nullptr;
    size_t capacity_ = 0;
    size_t dump_end_ = 0;  // [0, dump_end_) is in core dumps; the rest not
    pid_t owner_ = current_pid();
    std::map<size_t, size_t> free_;  // offset -> length

public:
    Arena *retired_next = nullptr;  // a forked child keeps its parents' arenas here
};

class ArenaBlock final : public Block {
public:
    ArenaBlock(Arena *arena, void *data, size_t size, size_t offset)
        : Block(data, size), arena_(arena), offset_(offset)
    {
    }
    ~ArenaBlock() override { arena_->free(offset_, size_); }

private:
    Arena *arena_;
    size_t offset_;
};

// The arena of the current process. A forked child drops its parent's
// (without freeing it: the parent's arrays stay mapped and shared) and makes
// its own at its first allocation.
std::mutex arena_mutex;
Arena *current_arena = nullptr;
Arena *retired_arenas = nullptr;  // the parents' (still referenced by inherited blocks)

Arena &Arena::get()
{
    std::lock_guard<std::mutex> lock(arena_mutex);
    if (!current_arena) current_arena = new Arena();  // never destroyed: blocks may outlive main
    return *current_arena;
}

size_t default_arena_size()
{
    size_t v;
    if (parse_size_env("PASHA_ARENA_SIZE", v)) return v;
    // Under valgrind the leak check reads every page of the arena, and
    // shared memory backs every page read through a shared mapping: a huge
    // arena would fill memory. (Valgrind's preloaded core is vgpreload_*.)
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
    size_t want = round_up(default_arena_size(), kPage);  // may throw (bad PASHA_ARENA_SIZE)
    initialized_ = true;
    if (want == 0) return;
    int fd;
    try {
        fd = open_anonymous_shm();
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
        // reservation. The low part that arrays have used is included,
        // growing as they do (one boundary, so the arena stays two mappings
        // however many arrays come and go: vm.max_map_count).
        madvise(p, size, MADV_DONTDUMP);
        base_ = (char *)p;
        capacity_ = size;
        free_[0] = size;
        populate_ = populate_supported(p);
        if (populate_) {
            close(fd);
        } else {
            struct stat st;
            fstat(fd, &st);
            fd_ = fd;
            dev_ = st.st_dev;
            ino_ = st.st_ino;
        }
        return;
    }
    close(fd);
}

int Arena::checked_fd()
{
    struct stat st;
    if (fstat(fd_, &st) != 0 || st.st_dev != dev_ || st.st_ino != ino_)
        fail(PSH_ESYS,
             "the shm arena's file descriptor %d was closed behind libpasha's back (it now refers to "
             "another file, or to none); libpasha will not touch it",
             fd_);
    return fd_;
}

std::unique_ptr<Block> Arena::allocate(size_t len)
{
    std::lock_guard<std::mutex> lock(mutex_);
    init_locked();
    if (!base_) return nullptr;
    for (auto it = free_.begin(); it != free_.end(); ++it) {
        if (it->second < len) continue;
        size_t offset = it->first, avail = it->second;
        reserve(len);
        int err = populate_ ? populate(base_ + offset, len) : fallocate_commit(checked_fd(), (off_t)offset, len);
        if (err) {
            if (populate_)
                madvise(base_ + offset, len, MADV_REMOVE);
            else
                fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)len);
            unreserve(len);
            fail_commit(err, len);
        }
        free_.erase(it);
        if (avail > len) free_[offset + len] = avail - len;
        if (offset + len > dump_end_) {
            madvise(base_ + dump_end_, offset + len - dump_end_, MADV_DODUMP);
            dump_end_ = offset + len;
        }
        return std::unique_ptr<Block>(new ArenaBlock(this, base_ + offset, len, offset));
    }
    return nullptr;
}

void Arena::free(size_t offset, size_t len)
{
    if (current_pid() != owner_) return;  // a forked child: the parent owns these pages
    std::lock_guard<std::mutex> lock(mutex_);
    if (populate_) {
        madvise(base_ + offset, len, MADV_REMOVE);
    } else {
        // A descriptor that is no longer ours is left alone: the pages stay
        // committed (a leak, not a corruption).
        struct stat st;
        if (fstat(fd_, &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_)
            fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)len);
    }
    unreserve(len);
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
    return pools_pid == current_pid() && pools > 0;
}

}  // namespace

bool parse_size_env(const char *name, size_t &out)
{
    const char *env = getenv(name);
    if (!env || !*env) return false;
    const char *p = env;
    if (*p < '0' || *p > '9')
        fail(PSH_EINVAL, "%s='%s' is not a size: digits with an optional K, M, G or T suffix", name, env);
    char *end;
    errno = 0;
    unsigned long long v = strtoull(p, &end, 10);
    unsigned shift = 0;
    switch (*end) {
    case 'K': case 'k': shift = 10; ++end; break;
    case 'M': case 'm': shift = 20; ++end; break;
    case 'G': case 'g': shift = 30; ++end; break;
    case 'T': case 't': shift = 40; ++end; break;
    default: break;
    }
    if (*end)
        fail(PSH_EINVAL, "%s='%s' is not a size: digits with an optional K, M, G or T suffix", name, env);
    if (errno == ERANGE || (shift && v > (ULLONG_MAX >> shift)) || (v << shift) > SIZE_MAX)
        fail(PSH_EINVAL, "%s='%s' is too large", name, env);
    out = (size_t)(v << shift);
    return true;
}

std::unique_ptr<Block> shm_allocate_standalone(size_t nbytes)
{
    size_t len = round_up(nbytes ? nbytes : 1, kPage);
    if (len < nbytes) fail(PSH_ENOMEM, "%zu bytes is more than the address space", nbytes);
    reserve(len);
    int fd = -1;
    try {
        fd = open_anonymous_shm();
    } catch (...) {
        unreserve(len);
        throw;
    }
    int err = ftruncate(fd, (off_t)len) != 0 ? errno : fallocate_commit(fd, 0, len);
    void *p = MAP_FAILED;
    if (!err) {
        p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) err = errno;
    }
    close(fd);
    if (err) {
        unreserve(len);
        fail_commit(err, len);
    }
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
    if (pools_pid != current_pid()) {  // a forked child does not own its parent's pools
        pools_pid = current_pid();
        pools = 0;
    }
    ++pools;
}

void shm_pool_stopped()
{
    std::lock_guard<std::mutex> lock(pools_mutex);
    if (pools_pid == current_pid() && pools > 0) --pools;
}

size_t shm_arena_capacity() { return Arena::get().capacity(); }

void shm_after_fork_child()
{
    // Another thread may have held any of these at the fork; it does not
    // exist here. The parent's arena object is left as it is (its blocks
    // still point at it and free nothing here).
    new (&arena_mutex) std::mutex();
    new (&committed_mutex) std::mutex();
    new (&pools_mutex) std::mutex();
    if (current_arena) {
        current_arena->retired_next = retired_arenas;
        retired_arenas = current_arena;
    }
    current_arena = nullptr;
    committed = 0;
}

}  // namespace psh
