// Shared memory. Every psh array lives in a Block of shared memory mapped
// MAP_SHARED, so forked workers write straight into the caller's pages.
//
// Blocks normally come from one arena per process: a large memfd (an
// anonymous shm object, invisible by name, not bound by the size of the
// /dev/shm mount), reserved (not committed) and mapped once at a fixed
// range. Because the whole range is mapped before any worker is forked, an
// array allocated after a persistent process pool started is already visible
// in its workers at the same address: nothing needs to be sent to them.
//
// Pages are committed per array through the mapping (MADV_POPULATE_WRITE,
// which reports a failure as an error, never a SIGBUS in a kernel) and given
// back with MADV_REMOVE, so no descriptor is kept once the arena is mapped:
// a program that closes descriptors it does not own cannot make libpasha
// write into one of its files. Where the kernel lacks MADV_POPULATE_WRITE
// (Linux < 5.14) the descriptor is kept, and checked (fstat) before each
// use. Before committing, an array is checked against the memory the
// process can have (RAM + swap, and the cgroup's memory limit).
//
// A process forked from the one that made the arena gets an arena of its
// own at its first allocation (it shares the parent's pages, not its
// bookkeeping). Arrays the arena cannot hold get a standalone block.
#pragma once

#include <cstddef>
#include <memory>

namespace psh {

class Block {
public:
    virtual ~Block() = default;
    void *data() const { return data_; }
    size_t size() const { return size_; }

protected:
    Block(void *data, size_t size) : data_(data), size_(size) {}
    void *data_;
    size_t size_;
};

// Zero-filled shared memory of at least nbytes (>= 1 page), page aligned.
// Throws PSH_ENOMEM when the memory cannot be had, PSH_ESYS on other failures.
std::unique_ptr<Block> shm_allocate(size_t nbytes);

// A standalone block, outside the arena.
std::unique_ptr<Block> shm_allocate_standalone(size_t nbytes);

// Bytes of arena address space reserved in this process (0: no arena).
size_t shm_arena_capacity();

// Persistent pools alive in this process. While one is, an array the arena
// cannot hold is an error (its workers, forked earlier, could not see a
// standalone segment) instead of a silent fallback.
void shm_pool_started();
void shm_pool_stopped();

// Called by the fork handlers in the child: the arena and its locks become
// the parent's; this process makes its own at its next allocation.
void shm_after_fork_child();

// Parse a size in bytes from the environment variable name: digits with an
// optional K, M, G or T suffix (powers of 1024). Returns false if unset or
// empty; throws PSH_EINVAL naming the variable if malformed or too large.
bool parse_size_env(const char *name, size_t &out);

}  // namespace psh
