// Shared memory. Every psh array lives in a Block of POSIX shared memory
// mapped MAP_SHARED, so forked workers write straight into the caller's
// pages.
//
// Blocks normally come from one arena: a large shm object, reserved (not
// committed) and mapped once per process at a fixed range. Because the whole
// range is mapped before any worker is forked, an array allocated after a
// persistent process pool started is already visible in its workers at the
// same address: nothing needs to be sent to them. Space is committed with
// posix_fallocate per array (so a full /dev/shm is an error at allocation,
// never a SIGBUS in a kernel) and given back with FALLOC_FL_PUNCH_HOLE.
// Arrays too large for the arena, and arrays allocated in a forked child,
// get a standalone shm object of their own.
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
// Throws PSH_ENOMEM when /dev/shm has no room, PSH_ESYS on other failures.
std::unique_ptr<Block> shm_allocate(size_t nbytes);

// A standalone shm object, outside the arena (used for the arena's own
// fallbacks and for control blocks shared with workers).
std::unique_ptr<Block> shm_allocate_standalone(size_t nbytes);

// Bytes of arena address space reserved in this process (0: no arena).
size_t shm_arena_capacity();

// Persistent pools alive in this process. While one is, an array the arena
// cannot hold is an error (its workers, forked earlier, could not see a
// standalone segment) instead of a silent fallback.
void shm_pool_started();
void shm_pool_stopped();

}  // namespace psh
