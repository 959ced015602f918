// PSH_MPI: one map spread over the ranks of an MPI communicator. Each rank
// maps a contiguous block of the indices with a local context (serial,
// threads or processes) under global worker ids, then all ranks agree on
// the outcome, so a failure anywhere is the same error everywhere. Arrays
// of the context live in one MPI shared window per node, which every rank
// of the node (and their forked workers) writes in place.
//
// This file stands on the engine of the process, never on a copy of it: it
// reaches the engine only through the table of src/pasha_internal.h (an
// external context kind and a few accessors), which libpasha_mpi takes from
// the libpasha it links, and the Python extension from the _pasha module
// that holds the engine there (PASHA_MPI_HOSTED: pasha_mpi_set_engine).
#include <mpi.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "../pasha_internal.h"
#include "pasha/pasha_mpi.h"

namespace psh_mpi {

namespace {

// The engine (src/pasha_internal.h).
const psh_internal_engine *E = nullptr;

// Errors here are C++ exceptions until they cross back into C (guard, or
// the callbacks of the context kind, which fill a psh_internal_failure).
// Where a failed map failed (psh_error_info's facts), carried with its
// error from the rank it happened on to every rank.
struct Where {
    int has_info = 0;
    int worker_id = -1;
    long long index = -1;
    int signal = 0;
    int exit_status = -1;
};

struct Error {
    int code;
    std::string message;
    Where where{};
};

[[noreturn]] __attribute__((format(printf, 2, 3))) void fail(int code, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    throw Error{code, buf};
}

void keep(psh_internal_failure *err, int code, const std::string &message, const Where &w = Where())
{
    err->code = code;
    snprintf(err->message, sizeof err->message, "%s", message.c_str());
    err->has_info = w.has_info;
    err->worker_id = w.worker_id;
    err->index = w.index;
    err->signal = w.signal;
    err->exit_status = w.exit_status;
}

// Run body for the C function fn: PSH_OK, or the code of what it threw with
// psh_last_error() set to "fn: message".
bool have_engine()
{
#ifndef PASHA_MPI_HOSTED
    if (!E) E = psh_internal_engine_get(PSH_INTERNAL_VERSION);
#endif
    return E && E->struct_size >= sizeof(psh_internal_engine);  // else a libpasha of another layout
}

template <class F>
int guard(const char *fn, F body)
{
    if (!have_engine()) return PSH_ESYS;
    try {
        body();
        return PSH_OK;
    } catch (const Error &e) {
        return E->set_error(fn, e.code, e.message.c_str());
    } catch (const std::bad_alloc &) {
        return E->set_error(fn, PSH_ENOMEM, "out of memory");
    }
}

// The array fields this file reads.
struct ArrayInfo {
    size_t nbytes, size, span, rows;
    int ndim;
    psh_dtype dtype;
    psh_order order;
    char *data;
};

ArrayInfo info_of(const psh_array *a)
{
    ArrayInfo i;
    i.nbytes = E->array_nbytes(a);
    i.size = E->array_size(a);
    i.span = E->array_span(a);
    i.ndim = E->array_ndim(a);
    i.dtype = E->array_dtype(a);
    i.order = E->array_order(a);
    i.data = (char *)E->array_data(a);
    const size_t *shape = E->array_shape(a);
    i.rows = i.ndim ? (i.order == PSH_ORDER_F ? shape[i.ndim - 1] : shape[0]) : 0;
    return i;
}

extern const psh_internal_kind kKind;

const size_t kAlign = 64;  // psh arrays are aligned to at least this

// Ranks are told apart from the user's messages by a duplicated
// communicator; these are only our own reductions and broadcasts.
struct Failure {
    int code;
    Where where;
    char message[1000];
};

// The lowest failing rank, whose error the calling thread's last failed
// creation returned on this rank, which did not fail itself, and that
// error (-1: none, or this rank's own error).
thread_local int create_failed_rank = -1;
thread_local Failure create_failure;

// What a rank is doing at the first collective of a call on the context
// (every rank must do the same); REFUSED: a call that failed its checks on
// this rank and only brings its error.
enum Call { CALL_REFUSED = 0, CALL_MAP, CALL_ALLOC, CALL_GATHER, CALL_ALLGATHER, CALL_REDUCE };

const char *call_name(long long c)
{
    switch (c) {
    case CALL_MAP: return "a map";
    case CALL_ALLOC: return "psh_alloc";
    case CALL_GATHER: return "psh_mpi_gather";
    case CALL_ALLGATHER: return "psh_mpi_allgather";
    case CALL_REDUCE: return "psh_mpi_reduce";
    default: return "another call";
    }
}

// With a cancel flag on any rank, a rank that is cancelled or fails tells
// the others with a message of tag kStopTag, which their local maps look
// for at each tick (no waiting for each other), so that every rank stops
// early.
const int kStopTag = 0x7073;

// What the ranks told each other at the start of a call: the values each
// passed (the lowest and highest over the ranks) and the flags (the OR).
struct Entry {
    static const int kValues = 5;  // the call and four of its arguments
    long long lo[kValues], hi[kValues];
    long long flags;
    bool same() const
    {
        for (int i = 0; i < kValues; ++i)
            if (lo[i] != hi[i]) return false;
        return true;
    }
};

class MpiContext;

// One buffer per node: a window of shared memory made collectively over
// the node's communicator (its memory in rank 0 of the node, seen by all),
// or, for a rank alone on its node, a block of the engine's shared memory.
struct MpiBlock {
    MPI_Win win;
    void *lone;  // the engine's block (E->shm_free)
};

void free_block(void *p)
{
    auto *b = static_cast<MpiBlock *>(p);
    int finalized = 1;
    MPI_Finalized(&finalized);
    if (b->win != MPI_WIN_NULL && !finalized) MPI_Win_free(&b->win);  // collective over the node
    if (b->lone) E->shm_free(b->lone);
    delete b;
}

// Rank r's share [begin, end) of n items split over R ranks in contiguous
// blocks: the first n % R ranks get one more.
void rank_block(size_t n, int r, int R, size_t &begin, size_t &end)
{
    size_t q = n / (size_t)R, rem = n % (size_t)R, ur = (size_t)r;
    begin = ur * q + std::min(ur, rem);
    end = begin + q + (ur < rem ? 1 : 0);
}

class MpiContext {
public:
    MpiContext(MPI_Comm comm, psh_context *local) : comm_(comm), local_(local) {}

    ~MpiContext()
    {
        E->context_destroy(local_);
        int finalized = 1;
        MPI_Finalized(&finalized);
        if (finalized) return;
        if (leaders_ != MPI_COMM_NULL) MPI_Comm_free(&leaders_);
        if (node_ != MPI_COMM_NULL) MPI_Comm_free(&node_);
        if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
    }

    // The rest of the collective set-up, once the local context exists on
    // every rank.
    void connect(int local_workers, int node_size)
    {
        MPI_Comm_rank(comm_, &rank_);
        MPI_Comm_size(comm_, &size_);
        MPI_Comm shared;
        MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &shared);
        // PASHA_MPI_NODE_SIZE=k cuts each real node into groups of k ranks
        // that each behave as a node of their own: it lets one machine test
        // the paths between nodes.
        int k = node_size;
        if (k > 0) {
            int r;
            MPI_Comm_rank(shared, &r);
            MPI_Comm_split(shared, r / k, r, &node_);
            MPI_Comm_free(&shared);
        } else {
            node_ = shared;
        }
        MPI_Comm_set_errhandler(node_, MPI_ERRORS_RETURN);
        MPI_Comm_rank(node_, &node_rank_);
        MPI_Comm_size(node_, &node_size_);
        MPI_Comm_split(comm_, node_rank_ == 0 ? 0 : MPI_UNDEFINED, rank_, &leaders_);
        // Which node each rank is on, named by its leader's rank in comm_,
        // and the leader's rank among the leaders.
        int mine[2] = {rank_, -1};
        if (leaders_ != MPI_COMM_NULL) MPI_Comm_rank(leaders_, &mine[1]);
        MPI_Bcast(mine, 2, MPI_INT, 0, node_);
        std::vector<int> all(2 * (size_t)size_);
        MPI_Allgather(mine, 2, MPI_INT, all.data(), 2, MPI_INT, comm_);
        node_of_.resize(size_);
        leader_index_.resize(size_);
        for (int r = 0; r < size_; ++r) {
            node_of_[r] = all[2 * r];
            leader_index_[r] = all[2 * r + 1];
        }
        long long w = local_workers, offset = 0, total = 0;
        MPI_Exscan(&w, &offset, 1, MPI_LONG_LONG, MPI_SUM, comm_);
        if (rank_ == 0) offset = 0;  // MPI_Exscan leaves rank 0's undefined
        MPI_Allreduce(&w, &total, 1, MPI_LONG_LONG, MPI_SUM, comm_);
        if (total > INT_MAX) throw_agreed(PSH_EINVAL, "the ranks have %lld workers in all, more than %d", total, INT_MAX);
        offset_ = (int)offset;
        total_ = (int)total;
    }

    int total_workers() const { return total_; }

    int rank() const { return rank_; }
    int size() const { return size_; }
    MPI_Comm comm() const { return comm_; }
    // The rank whose error the last failed call spread; -1: an error of
    // every rank alike (the ranks passed different values), -2: the ranks
    // made different calls.
    int failed_rank() const { return failed_rank_; }
    // Whether this rank's own part of the last failed call failed (not
    // only another rank's), and how many calls began (the first collective
    // of each): the binding tells its own errors from the spread ones, and
    // a call that never reached the context from one that did.
    bool self_failed() const { return self_failed_; }
    long long calls() const { return calls_; }
    int node_rank() const { return node_rank_; }
    int node_size() const { return node_size_; }
    const std::vector<int> &node_of() const { return node_of_; }

    // Collective over comm_: first the ranks agree that they all allocate
    // the same size, then each node makes its buffer, then they agree again
    // and, if any node failed, the others free theirs and all throw.
    MpiBlock *allocate(size_t nbytes, char *&data)
    {
        entered_ = true;  // errors from here on are every rank's already
        int code = PSH_OK;
        std::string why;
        if (nbytes > (size_t)PTRDIFF_MAX - kAlign)
            code = PSH_EINVAL, why = std::to_string(nbytes) + " bytes is too large for an MPI window";
        else if (node_size_ > 1)
            address_space_check(nbytes + kAlign, code, why);
        long long same[4] = {(long long)std::min(nbytes, (size_t)LLONG_MAX), 0, 0, 0};
        Entry in = enter(CALL_ALLOC, same, code, why, 0);
        if (!in.same())
            fail(PSH_EINVAL, "the ranks disagree on the array's size (%lld to %lld bytes)", in.lo[1], in.hi[1]);
        void *lone = nullptr;
        MPI_Win win = MPI_WIN_NULL;
        data = nullptr;
        try {
            // Alone on its node, a rank needs no window; MPI would also make
            // that one private memory, which forked workers could not write.
            if (node_size_ == 1) {
                psh_internal_failure f{};
                void *mem = nullptr;
                if (E->shm_alloc(nbytes, &mem, &lone, &f) != PSH_OK) throw Error{f.code, f.message};
                data = (char *)mem;
            } else {
                data = node_window(nbytes, win);
            }
        } catch (const Error &e) {
            code = e.code;
            why = e.message;
        } catch (const std::bad_alloc &) {
            code = PSH_ENOMEM;
            why = "out of memory";
        }
        try {
            agree(code, why);
        } catch (...) {
            // Every rank of a node that made its window has it: free it
            // together (the block of a lone rank goes with `lone`).
            if (win != MPI_WIN_NULL) MPI_Win_free(&win);
            if (lone) E->shm_free(lone);
            throw;
        }
        entered_ = false;
        return new MpiBlock{win, lone};
    }

    // A call that failed its checks on this rank before allocate() or run():
    // join the first collective of what the other ranks are doing with the
    // error, so that all throw it (errors of allocate() itself are agreed
    // already).
    void refuse(int code, const std::string &message)
    {
        if (entered_) {
            entered_ = false;
            return;
        }
        int finalized = 1;
        MPI_Finalized(&finalized);
        if (finalized) return;
        long long none[4] = {0, 0, 0, 0};
        enter(CALL_REFUSED, none, code, message, 0);
    }

    // Every rank of a node maps the node's whole window: one whose
    // RLIMIT_AS (ulimit -v) it would pass makes Open MPI hang or abort in
    // MPI_Win_allocate_shared, so it is this rank's PSH_ENOMEM instead
    // (agreed, as every error here).
    static void address_space_check(size_t want, int &code, std::string &why)
    {
        struct rlimit lim;
        if (getrlimit(RLIMIT_AS, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY) return;
        FILE *f = fopen("/proc/self/statm", "r");
        unsigned long long pages = 0;
        if (!f) return;
        int got = fscanf(f, "%llu", &pages);
        fclose(f);
        if (got != 1) return;
        unsigned long long used = pages * (unsigned long long)sysconf(_SC_PAGESIZE);
        unsigned long long limit = lim.rlim_cur, left = limit > used ? limit - used : 0;
        if (want + (64u << 20) > left) {  // room for MPI's own mappings
            char buf[256];
            snprintf(buf, sizeof buf,
                     "a %zu-byte MPI shared window would pass this rank's address-space limit (RLIMIT_AS, "
                     "ulimit -v: %llu bytes, %llu left)",
                     want, limit, left);
            code = PSH_ENOMEM;
            why = buf;
        }
    }

    // This node's window of nbytes (node_size_ > 1): collective over node_;
    // every rank of the node returns its data or throws the same error, and
    // leaves no window behind when it throws.
    char *node_window(size_t nbytes, MPI_Win &win)
    {
        size_t want = nbytes + kAlign;
        // Open MPI hangs in MPI_Win_allocate_shared when its backing file
        // does not fit: look at the room first, and fail every rank alike.
        long long room = node_rank_ == 0 ? backing_room() : -1;
        MPI_Bcast(&room, 1, MPI_LONG_LONG, 0, node_);
        if (room >= 0 && (unsigned long long)room < want + (1u << 20))
            fail(PSH_ENOMEM, "%zu bytes of MPI shared memory do not fit in the %lld bytes free in %s", nbytes, room,
                 backing_dir());
        void *base = nullptr;
        int rc = MPI_Win_allocate_shared(node_rank_ == 0 ? (MPI_Aint)want : 0, 1, MPI_INFO_NULL, node_, &base, &win);
        int ok = rc == MPI_SUCCESS, all_ok = 0;
        MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, node_);
        if (!all_ok) {
            // A rank that got its part keeps it: freeing is collective and
            // the ranks whose call failed have no window to free.
            win = MPI_WIN_NULL;
            fail(PSH_ENOMEM, "MPI_Win_allocate_shared of %zu bytes failed on this node", want);
        }
        MPI_Aint got = 0;
        int disp = 0;
        char *mem = nullptr;
        MPI_Win_shared_query(win, 0, &got, &disp, &mem);
        char *data = mem + (kAlign - (uintptr_t)mem % kAlign) % kAlign;
        // Commit the pages now, so that a full /dev/shm is an error here and
        // never a SIGBUS in a kernel (MPI only sizes the file), then zero
        // them: psh arrays start zeroed.
        int err = 0;
        if (node_rank_ == 0) {
            err = commit(mem, (size_t)got);
            if (!err) memset(data, 0, nbytes);
        }
        MPI_Bcast(&err, 1, MPI_INT, 0, node_);
        if (err) {
            MPI_Win_free(&win);
            fail(PSH_ENOMEM, "cannot commit %zu bytes of MPI shared memory on this node: %s", want, strerror(err));
        }
        return data;
    }

    // Where Open MPI puts the files of shared windows, and the bytes free
    // there (-1: unknown).
    static const char *backing_dir()
    {
        const char *dir = getenv("OMPI_MCA_osc_sm_backing_directory");
        return dir && *dir ? dir : "/dev/shm";
    }
    static long long backing_room()
    {
        struct statvfs st;
        if (statvfs(backing_dir(), &st) != 0) return -1;
        return (long long)st.f_bavail * (long long)st.f_frsize;
    }

    // Fault in every page of [p, p + n) writable; 0 or an errno value.
    static int commit(char *p, size_t n)
    {
        uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
        uintptr_t lo = (uintptr_t)p & ~(page - 1), hi = ((uintptr_t)p + n + page - 1) & ~(page - 1);
        if (madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE) == 0) return 0;
        int err = errno;
        if (err == EINVAL) return 0;  // kernels before 5.14: the memset commits
        return err == EFAULT || err == EFBIG || err == ENOSPC ? ENOMEM : err;
    }

    void gather(psh_array *a, int root, bool everywhere);
    void reduce(psh_array *a, int op, int root);

    void run(psh_internal_job *job, size_t job_begin, size_t job_end, const volatile int *cancel)
    {
        size_t n = job_end - job_begin;
        long long same[4] = {(long long)n, 0, 0, 0};
        Entry in = enter(CALL_MAP, same, PSH_OK, std::string(), cancel ? 1 : 0);
        if (!in.same()) fail(PSH_EINVAL, "the ranks disagree on the number of items (%lld to %lld)", in.lo[1], in.hi[1]);
        // Every rank is here, so every fill of a new array is done.
        size_t b, e;
        rank_block(n, rank_, size_, b, e);
        // One part, or with a cancel flag on any rank up to kCancelRounds,
        // looking for stop messages before each.
        bool watch = in.flags != 0;
        int code = PSH_OK;
        std::string message;
        Where where;
        peer_stopped_ = false;
        psh_internal_failure f{};
        if (e > b && E->map_local(local_, job, job_begin + b, job_begin + e, offset_, watch ? poll_stop : nullptr,
                                  this, &f) != PSH_OK) {
            code = f.code;
            message = f.message;
            where = Where{f.has_info, f.worker_id, f.index, f.signal, f.exit_status};
        }
        // Stopped by another rank's message: that rank's error is the map's.
        if (code == PSH_ECANCELED && peer_stopped_ &&
            !(cancel && __atomic_load_n(const_cast<const int *>(cancel), __ATOMIC_RELAXED)))
            code = PSH_OK, message.clear(), where = Where();
        // A failing rank tells every other rank to stop (zero-byte sends).
        std::vector<MPI_Request> sends;
        if (watch && code != PSH_OK) {
            sends.reserve((size_t)size_);
            for (int r = 0; r < size_; ++r) {
                if (r == rank_) continue;
                sends.emplace_back();
                MPI_Isend(nullptr, 0, MPI_BYTE, r, kStopTag, comm_, &sends.back());
            }
        }
        int mine_first = code != PSH_OK ? rank_ : size_, first = size_;
        self_failed_ = code != PSH_OK;
        MPI_Allreduce(&mine_first, &first, 1, MPI_INT, MPI_MIN, comm_);
        if (first == size_) return;  // nobody failed, so nobody sent
        if (watch) {
            // Every failing rank sent one message to each other rank: take
            // ours off the queue, so that the next map starts clean.
            int sent = code != PSH_OK ? 1 : 0, senders = 0;
            MPI_Allreduce(&sent, &senders, 1, MPI_INT, MPI_SUM, comm_);
            for (int i = 0; i < senders - sent; ++i)
                MPI_Recv(nullptr, 0, MPI_BYTE, MPI_ANY_SOURCE, kStopTag, comm_, MPI_STATUS_IGNORE);
            MPI_Waitall((int)sends.size(), sends.data(), MPI_STATUSES_IGNORE);
        }
        spread_failure(first, code, message, where);
    }

private:
    // The local map's poll (in this rank's thread, at its ticks): has
    // another rank sent a stop message?
    static int poll_stop(void *p)
    {
        auto *m = static_cast<MpiContext *>(p);
        if (!m->peer_stopped_) {
            int stop = 0;
            MPI_Iprobe(MPI_ANY_SOURCE, kStopTag, m->comm_, &stop, MPI_STATUS_IGNORE);
            m->peer_stopped_ = stop != 0;
        }
        return m->peer_stopped_;
    }

    // All ranks call this with their own result; all throw the error of
    // the lowest failing rank, or all return.
    void agree(int code, const std::string &message)
    {
        int mine = code != PSH_OK ? rank_ : size_, first = size_;
        self_failed_ = code != PSH_OK;
        MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm_);
        if (first < size_) spread_failure(first, code, message);
    }

    // The error of rank `first` on every rank (collective).
    [[noreturn]] void spread_failure(int first, int code, const std::string &message,
                                     const Where &where = Where())
    {
        failed_rank_ = first;
        Failure f{};
        if (rank_ == first) {
            f.code = code;
            f.where = where;
            snprintf(f.message, sizeof f.message, "%s", message.c_str());
        }
        MPI_Bcast(&f, (int)sizeof f, MPI_BYTE, first, comm_);
        char buf[1100];
        snprintf(buf, sizeof buf, "rank %d: %s", first, f.message);
        throw Error{f.code, buf, f.where};
    }

    // The first collective of every call on the context, one allreduce:
    // the ranks learn whether any of them failed its local checks (code,
    // why), and then all throw the lowest such rank's error, so that no rank
    // returns while the others wait for it; else they learn the lowest and
    // highest of the call and the values each passed in `same` (which the
    // caller checks) and the OR of `flags`.
    Entry enter(int call, const long long (&same)[4], int code, const std::string &why, long long flags)
    {
        const int K = Entry::kValues;
        bool failing = code != PSH_OK;
        failed_rank_ = -1;
        self_failed_ = failing;
        ++calls_;
        long long mine[K] = {call, same[0], same[1], same[2], same[3]};
        long long v[2 + 2 * K];
        v[0] = -(long long)(failing ? rank_ : size_);  // MAX: minus the lowest failing rank
        v[1] = flags;
        for (int i = 0; i < K; ++i) {
            // A failing rank's values do not count: its error comes first.
            v[2 + i] = failing ? LLONG_MIN : mine[i];
            v[2 + K + i] = failing ? LLONG_MIN : -mine[i];
        }
        MPI_Allreduce(MPI_IN_PLACE, v, 2 + 2 * K, MPI_LONG_LONG, MPI_MAX, comm_);
        int first = (int)-v[0];
        if (first < size_) spread_failure(first, code, why);
        Entry in;
        in.flags = v[1];
        for (int i = 0; i < K; ++i) {
            in.hi[i] = v[2 + i];
            in.lo[i] = -v[2 + K + i];
        }
        if (in.lo[0] != in.hi[0]) {
            failed_rank_ = -2;
            fail(PSH_EINVAL, "the ranks make different calls on the MPI context (%s on some, %s on others)",
                 call_name(in.lo[0]), call_name(in.hi[0]));
        }
        return in;
    }

    [[noreturn]] void throw_agreed(int code, const char *fmt, long long a, int b)
    {
        char buf[256];
        snprintf(buf, sizeof buf, fmt, a, b);
        throw Error{code, buf};
    }

    // The MPI type of one row along the slowest axis and the row count.
    MPI_Datatype row_type(const psh_array *a, size_t &rows);
    // The first collective of a gather or reduce: every rank passes the
    // same array shape and kind, root and op, and none found its arguments
    // bad (code, why); else all throw the same error.
    void check_same(int call, const psh_array *a, int root, int op, int code, const std::string &why, bool shared);
    bool is_shared(const psh_array *a);
    bool shared_or_error(const psh_array *a, int &code, std::string &why);

    MPI_Comm comm_;
    MPI_Comm node_ = MPI_COMM_NULL;
    MPI_Comm leaders_ = MPI_COMM_NULL;
    psh_context *local_;
    int rank_ = 0, size_ = 1, node_rank_ = 0, node_size_ = 1, offset_ = 0, total_ = 0;
    bool entered_ = false;  // allocate() began: its errors need no refuse()
    int failed_rank_ = -1;
    bool self_failed_ = false;
    long long calls_ = 0;
    bool peer_stopped_ = false;  // this map was stopped by another rank's message
    std::vector<int> node_of_;       // rank -> its node leader's rank in comm_
    std::vector<int> leader_index_;  // rank -> its node leader's rank in leaders_
};

// is_shared, with a failure kept as (code, why) for the ranks to agree on
// instead of thrown on this rank alone.
bool MpiContext::shared_or_error(const psh_array *a, int &code, std::string &why)
{
    try {
        return is_shared(a);
    } catch (const Error &e) {
        code = e.code;
        why = e.message;
        return false;
    }
}

bool MpiContext::is_shared(const psh_array *a)
{
    void *owner = E->array_impl(a, &kKind);
    if (!owner) return false;
    if (owner != this) fail(PSH_EINVAL, "the array was allocated with another MPI context");
    return true;
}

void MpiContext::check_same(int call, const psh_array *a, int root, int op, int code, const std::string &why,
                            bool shared)
{
    ArrayInfo i{};
    if (a) i = info_of(a);
    long long same[4] = {a ? (long long)i.nbytes : 0, root,
                         a ? (long long)i.ndim | (long long)i.dtype << 8 | (shared ? 1LL << 16 : 0) : 0, op};
    Entry in = enter(call, same, code, why, 0);
    if (!in.same())
        fail(PSH_EINVAL,
             "the ranks disagree on the array's size, ndim, dtype or kind, on the root (root %lld to %lld) or on "
             "the op",
             in.lo[2], in.hi[2]);
}

MPI_Datatype MpiContext::row_type(const psh_array *a, size_t &rows)
{
    ArrayInfo i = info_of(a);
    rows = i.rows;
    size_t row_bytes = rows ? i.nbytes / rows : 0;
    MPI_Datatype t;
    MPI_Type_contiguous((int)row_bytes, MPI_BYTE, &t);
    MPI_Type_commit(&t);
    return t;
}

void MpiContext::gather(psh_array *a, int root, bool everywhere)
{
    int code = PSH_OK;
    std::string why;
    if (!a) code = PSH_EINVAL, why = "array is NULL";
    bool shared = a && shared_or_error(a, code, why);
    ArrayInfo i{};
    if (a) i = info_of(a);
    size_t rows = i.rows;
    if (code == PSH_OK) {
        if (i.ndim == 0) code = PSH_EINVAL, why = "the array is 0-d: it has no axis to split over the ranks";
        else if (root < 0 || root >= size_) code = PSH_EINVAL, why = "root " + std::to_string(root) + " is not a rank of 0.." + std::to_string(size_ - 1);
        else if (i.span != i.nbytes)
            code = PSH_EINVAL, why = "the array's per-worker rows are padded (PSH_PER_WORKER_PADDED): gather needs a "
                                     "contiguous array";
        else if (rows > (size_t)INT_MAX || (rows && i.nbytes / rows > (size_t)INT_MAX))
            code = PSH_EINVAL, why = "the array's rows or row size are too large for MPI counts";
    }
    check_same(everywhere ? CALL_ALLGATHER : CALL_GATHER, a, root, 0, code, why, shared);
    if (rows == 0 || i.nbytes == 0) return;
    MPI_Datatype t = row_type(a, rows);
    std::vector<int> counts(size_), displs(size_);
    for (int r = 0; r < size_; ++r) {
        size_t b, e;
        rank_block(rows, r, size_, b, e);
        displs[r] = (int)b;
        // In a shared array the ranks on root's node already wrote in place.
        counts[r] = shared && node_of_[r] == node_of_[root] ? 0 : (int)(e - b);
    }
    char *data = i.data;
    size_t row_bytes = i.nbytes / rows;
    if (shared) MPI_Barrier(node_);
    if (everywhere && !shared) {
        MPI_Allgatherv(MPI_IN_PLACE, 0, t, data, counts.data(), displs.data(), t, comm_);
    } else {
        if (rank_ == root)
            MPI_Gatherv(MPI_IN_PLACE, 0, t, data, counts.data(), displs.data(), t, root, comm_);
        else
            MPI_Gatherv(data + (size_t)displs[rank_] * row_bytes, counts[rank_], t, nullptr, nullptr, nullptr, t,
                        root, comm_);
        // allgather passes root 0, always its node's leader (keys are ranks).
        if (everywhere && leaders_ != MPI_COMM_NULL) MPI_Bcast(data, (int)rows, t, leader_index_[root], leaders_);
    }
    if (shared) MPI_Barrier(node_);
    MPI_Type_free(&t);
}

MPI_Datatype mpi_dtype(int dtype)
{
    switch (dtype) {
    case PSH_INT8: return MPI_INT8_T;
    case PSH_UINT8: return MPI_UINT8_T;
    case PSH_INT16: return MPI_INT16_T;
    case PSH_UINT16: return MPI_UINT16_T;
    case PSH_INT32: return MPI_INT32_T;
    case PSH_UINT32: return MPI_UINT32_T;
    case PSH_INT64: return MPI_INT64_T;
    case PSH_UINT64: return MPI_UINT64_T;
    case PSH_FLOAT32: return MPI_FLOAT;
    case PSH_FLOAT64: return MPI_DOUBLE;
    case PSH_COMPLEX64: return MPI_C_FLOAT_COMPLEX;
    default: return MPI_C_DOUBLE_COMPLEX;
    }
}

void MpiContext::reduce(psh_array *a, int op, int root)
{
    int code = PSH_OK;
    std::string why;
    if (!a) code = PSH_EINVAL, why = "array is NULL";
    bool shared = a && shared_or_error(a, code, why);
    ArrayInfo i{};
    if (a) i = info_of(a);
    bool complex = a && (i.dtype == PSH_COMPLEX64 || i.dtype == PSH_COMPLEX128);
    if (code == PSH_OK) {
        if (root < 0 || root >= size_) code = PSH_EINVAL, why = "root " + std::to_string(root) + " is not a rank of 0.." + std::to_string(size_ - 1);
        else if (op != PSH_OP_SUM && op != PSH_OP_MIN && op != PSH_OP_MAX) code = PSH_EINVAL, why = "unknown op " + std::to_string(op);
        else if (complex && op != PSH_OP_SUM) code = PSH_EINVAL, why = "MIN and MAX are not defined for complex dtypes";
    }
    check_same(CALL_REDUCE, a, root, op, code, why, shared);
    if (i.size == 0) return;
    // Padded per-worker rows are reduced with their gaps: a whole number of
    // elements, and every rank has the same layout.
    size_t item = E->dtype_size(i.dtype);
    size_t elements = i.span / item;
    MPI_Op mop = op == PSH_OP_SUM ? MPI_SUM : op == PSH_OP_MIN ? MPI_MIN : MPI_MAX;
    MPI_Datatype t = mpi_dtype(i.dtype);
    // Shared arrays: one contribution per node, from its leader.
    MPI_Comm over = shared ? leaders_ : comm_;
    bool on_root = shared ? rank_ == node_of_[root] : rank_ == root;
    int to = shared ? leader_index_[root] : root;
    if (shared) MPI_Barrier(node_);
    if (over != MPI_COMM_NULL) {
        const size_t step = (size_t)1 << 30;
        for (size_t done = 0; done < elements; done += step) {
            int count = (int)std::min(step, elements - done);
            char *p = i.data + done * item;
            if (on_root)
                MPI_Reduce(MPI_IN_PLACE, p, count, t, mop, to, over);
            else
                MPI_Reduce(p, nullptr, count, t, mop, to, over);
        }
    }
    if (shared) MPI_Barrier(node_);
}

void check_mpi_ready()
{
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (!initialized) fail(PSH_EINVAL, "MPI is not initialized: call MPI_Init first");
    if (finalized) fail(PSH_EINVAL, "MPI is already finalized");
}

MpiContext *mpi_context(psh_context *ctx)
{
    if (!ctx) fail(PSH_EINVAL, "ctx is NULL");
    auto *m = static_cast<MpiContext *>(E->context_impl(ctx, &kKind));
    if (!m) fail(PSH_EINVAL, "ctx is not an MPI context (see psh_context_create_mpi)");
    check_mpi_ready();
    return m;
}

const MpiContext *mpi_context_or_null(const psh_context *ctx)
{
    return ctx && have_engine() ? static_cast<const MpiContext *>(E->context_impl(ctx, &kKind)) : nullptr;
}

// The context kind the engine calls back (src/pasha_internal.h).
template <class F>
int caught(psh_internal_failure *err, F body)
{
    try {
        body();
        return PSH_OK;
    } catch (const Error &e) {
        keep(err, e.code, e.message, e.where);
    } catch (const std::bad_alloc &) {
        keep(err, PSH_ENOMEM, "out of memory");
    }
    return err->code;
}

int kind_run(void *impl, psh_internal_job *job, size_t begin, size_t end, const volatile int *cancel,
             psh_internal_failure *err)
{
    return caught(err, [&] { static_cast<MpiContext *>(impl)->run(job, begin, end, cancel); });
}

int kind_allocate(void *impl, size_t nbytes, void **data, void **block, psh_internal_failure *err)
{
    return caught(err, [&] {
        char *d = nullptr;
        *block = static_cast<MpiContext *>(impl)->allocate(nbytes, d);
        *data = d;
    });
}

int kind_refuse(void *impl, int code, const char *message, psh_internal_failure *err)
{
    return caught(err, [&] { static_cast<MpiContext *>(impl)->refuse(code, message); });
}

void kind_destroy(void *impl) { delete static_cast<MpiContext *>(impl); }

const psh_internal_kind kKind = {kind_run, kind_allocate, free_block, kind_refuse, kind_destroy,
                                 "an MPI context cannot be used in a process forked from its rank"};

// PASHA_MPI_NODE_SIZE=k (k ranks per "node"; empty or 0: the real nodes),
// or -1 with why set when it is not such a number.
int node_size_setting(std::string &why)
{
    const char *env = getenv("PASHA_MPI_NODE_SIZE");
    if (!env) return 0;
    const char *p = env;
    while (*p == ' ' || *p == '\t') ++p;
    if (!*p) return 0;
    char *end = nullptr;
    errno = 0;
    long k = strtol(p, &end, 10);
    while (end && (*end == ' ' || *end == '\t')) ++end;
    if (errno || end == p || *end || k < 0 || k > INT_MAX) {
        why = std::string("PASHA_MPI_NODE_SIZE='") + env +
              "': not a number of ranks (a positive integer, 0 or empty: the real nodes)";
        return -1;
    }
    return (int)k;
}

}  // namespace

}  // namespace psh_mpi

using namespace psh_mpi;

#ifdef PASHA_MPI_HOSTED
// The engine of a process whose libpasha symbols this code cannot link
// (the Python extension module next to the one holding the engine).
extern "C" int pasha_mpi_set_engine(const psh_internal_engine *engine)
{
    if (!engine || engine->version != PSH_INTERNAL_VERSION || engine->struct_size < sizeof(psh_internal_engine))
        return PSH_EINVAL;
    E = engine;
    return PSH_OK;
}

// The rank whose error the context's last failed call returned on every
// rank (-1: none, or an error of all ranks alike, -2: the ranks made
// different calls): the binding raises its
// own exception there and names that rank elsewhere, reading no text.
extern "C" int pasha_mpi_failed_rank(const psh_context *ctx)
{
    const MpiContext *m = mpi_context_or_null(ctx);
    return m ? m->failed_rank() : -1;
}

// The calls begun on the context so far and whether this rank's own part
// of the last one failed (see MpiContext::self_failed); -1 if not MPI.
extern "C" int pasha_mpi_call_state(const psh_context *ctx, long long *calls, int *self_failed)
{
    const MpiContext *m = mpi_context_or_null(ctx);
    if (!m) return -1;
    *calls = m->calls();
    *self_failed = m->self_failed();
    return 0;
}

// The rank whose error the calling thread's last failed
// psh_context_create_mpi(_ext) returned on this rank, with that rank's code
// and text (without the "rank N: " prefix); -1: none, or this rank's own.
extern "C" int pasha_mpi_create_failure(int *code, const char **message)
{
    *code = create_failure.code;
    *message = create_failure.message;
    return create_failed_rank;
}

// The context's own communicator (a duplicate of the one it was made on),
// for the binding's own collectives (MPI_COMM_NULL if not MPI).
extern "C" MPI_Comm pasha_mpi_comm(const psh_context *ctx)
{
    const MpiContext *m = mpi_context_or_null(ctx);
    return m ? m->comm() : MPI_COMM_NULL;
}

// This rank's place in its node (rank, size) and every rank's node, named
// by its leader's rank (node_of: psh_mpi_size entries); -1 if not MPI.
extern "C" int pasha_mpi_node_info(const psh_context *ctx, int *node_rank, int *node_size, int *node_of)
{
    const MpiContext *m = mpi_context_or_null(ctx);
    if (!m) return -1;
    *node_rank = m->node_rank();
    *node_size = m->node_size();
    std::copy(m->node_of().begin(), m->node_of().end(), node_of);
    return 0;
}
#endif

extern "C" {

// psh_context_create_mpi(_ext): fn names the caller in errors.
static int create_mpi(const char *fn, psh_context **out, MPI_Comm comm, const psh_context_options *opts)
{
    create_failed_rank = -1;
    return guard(fn, [&] {
        check_mpi_ready();
        if (comm == MPI_COMM_NULL) fail(PSH_EINVAL, "comm is MPI_COMM_NULL");
        int inter = 0;
        MPI_Comm_test_inter(comm, &inter);
        if (inter) fail(PSH_EINVAL, "comm is an intercommunicator");
        // From here on every rank takes part in the same collectives, so that
        // bad arguments on one rank fail all of them instead of hanging.
        int code = PSH_OK;
        std::string why;
        // The local options as this library knows them (a caller built
        // against a newer header may pass a longer struct).
        psh_context_options lo;
        E->context_options_init(&lo);
        const size_t known = offsetof(psh_context_options, pin_cpus) + sizeof lo.pin_cpus;
        bool sized = opts && opts->struct_size >= known;
        if (sized) {
            memcpy(&lo, opts, std::min(opts->struct_size, sizeof lo));
            lo.struct_size = sizeof lo;
        }
        int kind;
        memcpy(&kind, &lo.kind, sizeof kind);
        psh_context *local = nullptr;
        int node_size = node_size_setting(why);
        if (node_size < 0) code = PSH_EINVAL, node_size = 0;
        else if (!out) code = PSH_EINVAL, why = "out is NULL";
        else if (!opts) code = PSH_EINVAL, why = "local (the local context's options) is NULL";
        else if (!sized)
            code = PSH_EINVAL, why = "the local options' struct_size is " + std::to_string(opts->struct_size) +
                                     " (call psh_context_options_init)";
        else if (kind != PSH_SERIAL && kind != PSH_THREADS && kind != PSH_PROCESSES)
            code = PSH_EINVAL, why = "local_kind " + std::to_string(kind) + " is not PSH_SERIAL, PSH_THREADS or PSH_PROCESSES";
        else if (lo.persistent)
            code = PSH_EINVAL, why = "the local context cannot be a persistent pool (the MPI context forks per map)";
        else if (lo.num_workers <= 0 && kind != PSH_SERIAL && (lo.num_workers = E->cpu_count()) < 1)
            code = PSH_EINVAL, why = std::string("the local context: ") + E->last_error();
        else if ((code = E->context_create_ext(&local, &lo)) != PSH_OK)
            why = std::string("the local context: ") + E->last_error();
        MPI_Comm dup;
        MPI_Comm_dup(comm, &dup);
        auto ctx = std::make_unique<MpiContext>(dup, local);  // owns dup and local
        // All learn who failed before the collective set-up, which must run
        // alike on every rank (the node split depends on the node size).
        int me = 0, ranks = 1;
        MPI_Comm_rank(dup, &me);
        MPI_Comm_size(dup, &ranks);
        long long v[3] = {-(long long)(code != PSH_OK ? me : ranks), node_size, -(long long)node_size};
        MPI_Allreduce(MPI_IN_PLACE, v, 3, MPI_LONG_LONG, MPI_MAX, dup);
        int first = (int)-v[0];
        if (first != ranks) {
            Failure &f = create_failure;
            f = Failure{};
            if (me == first) {
                f.code = code;
                snprintf(f.message, sizeof f.message, "%s", why.c_str());
            }
            MPI_Bcast(&f, (int)sizeof f, MPI_BYTE, first, dup);
            create_failed_rank = code != PSH_OK ? -1 : first;  // (-1: this rank failed too)
            fail(f.code, "rank %d: %s", first, f.message);
        }
        if (v[1] != -v[2])
            fail(PSH_EINVAL, "the ranks have different PASHA_MPI_NODE_SIZE values (%lld to %lld)", -v[2], v[1]);
        ctx->connect(E->context_num_workers(local), node_size);
        psh_internal_failure f{};
        int total = ctx->total_workers();
        if (E->context_create_external(out, &kKind, ctx.release(), total, local, &f) != PSH_OK)
            fail(f.code, "%s", f.message);
    });
}

PSH_API int psh_context_create_mpi(psh_context **out, MPI_Comm comm, psh_kind local_kind, int local_workers)
{
    if (!have_engine()) return PSH_ESYS;  // (a libpasha of another layout: guard's answer)
    psh_context_options lo;
    E->context_options_init(&lo);
    lo.kind = local_kind;
    lo.num_workers = local_workers;
    return create_mpi("psh_context_create_mpi", out, comm, &lo);
}

PSH_API int psh_context_create_mpi_ext(psh_context **out, MPI_Comm comm, const psh_context_options *local)
{
    return create_mpi("psh_context_create_mpi_ext", out, comm, local);
}

PSH_API int psh_mpi_rank(const psh_context *ctx)
{
    const MpiContext *m = mpi_context_or_null(ctx);
    return m ? m->rank() : -1;
}

PSH_API int psh_mpi_size(const psh_context *ctx)
{
    const MpiContext *m = mpi_context_or_null(ctx);
    return m ? m->size() : 0;
}

PSH_API int psh_mpi_gather(psh_context *ctx, psh_array *a, int root)
{
    return guard("psh_mpi_gather", [&] {
        MpiContext *m = mpi_context(ctx);
        m->gather(a, root, false);
    });
}

PSH_API int psh_mpi_allgather(psh_context *ctx, psh_array *a)
{
    return guard("psh_mpi_allgather", [&] {
        MpiContext *m = mpi_context(ctx);
        m->gather(a, 0, true);
    });
}

PSH_API int psh_mpi_reduce(psh_context *ctx, psh_array *a, int op, int root)
{
    return guard("psh_mpi_reduce", [&] {
        MpiContext *m = mpi_context(ctx);
        m->reduce(a, op, root);
    });
}

}  // extern "C"
