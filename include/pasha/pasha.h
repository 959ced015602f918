/*
 * libpasha - parallel map over shared memory.
 *
 * Apply a kernel to every element of a large collection in parallel, on
 * threads or on forked processes, with the results written straight into
 * memory that every worker and the caller share: no copies, no pickling.
 *
 * Read this header top to bottom once and you can use the whole library:
 *
 *   1. conventions: status codes, errors, versions
 *   2. contexts: how a map runs (serial, threads, processes)
 *   3. arrays: shared-memory output buffers
 *   4. functors: what a map iterates over
 *   5. map: running a kernel over a functor
 *
 * Conventions (after libgit2):
 *   - Functions that can fail return int: PSH_OK (0) or a negative PSH_E*
 *     code; psh_last_error() then says what went wrong, in words, and
 *     psh_last_error_info() as data (code, worker, index, signal, callback).
 *   - The output parameter comes first and is set only on success.
 *   - Accessors (psh_*_get-like functions such as psh_array_ndim) never fail;
 *     given NULL they return 0 / NULL.
 *   - Every destroy/free function accepts NULL and then does nothing.
 *   - Option structs carry struct_size and have an _init function: always
 *     call it first, so that your binary keeps working when the struct grows.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#ifndef PASHA_PASHA_H
#define PASHA_PASHA_H

#include <stddef.h>

#include "pasha_version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
/** Marks the functions libpasha exports (every other symbol is hidden). */
#define PSH_API __attribute__((visibility("default")))
#else
/** Marks the functions libpasha exports (nothing to mark here). */
#define PSH_API
#endif

/* ---------------------------------------------------------------------- */
/* 1. Conventions: status codes, errors, version                          */
/* ---------------------------------------------------------------------- */

/** Status codes. Every fallible function returns one of these. */
enum {
    PSH_OK = 0,        /**< success */
    PSH_EINVAL = -1,   /**< an argument was invalid (NULL, out of range, ...) */
    PSH_ENOMEM = -2,   /**< out of memory, or out of space in /dev/shm */
    PSH_ESYS = -3,     /**< a system call failed (fork, mmap, shm_open, ...) */
    PSH_EKERNEL = -4,  /**< the kernel (or a functor callback) returned non-zero */
    PSH_EWORKER = -5,  /**< a worker process died (signal or exit) */
    PSH_ECANCELED = -6,/**< the map was cancelled through its cancel flag */
    PSH_ENOTSUP = -7   /**< not supported in this build or on this platform */
};

/** The name and meaning of a status code, e.g. "PSH_EINVAL: invalid
 *  argument". Never NULL; static storage, do not free. */
PSH_API const char *psh_strerror(int code);

/** Detail of the last failed call made by this thread, e.g.
 *  "psh_alloc: ndim 40 is out of range 0..32". Thread-local; valid until
 *  this thread's next failing call; "" when nothing has failed yet. */
PSH_API const char *psh_last_error(void);

/** What is known about the last failed call made by this thread, as data,
 *  so that callers and bindings never parse psh_last_error()'s words.
 *  Versioned: set struct_size to sizeof(psh_error_info). */
typedef struct psh_error_info {
    size_t struct_size;      /**< the caller sets sizeof(psh_error_info) */
    int code;                /**< PSH_E*; 0 when the thread's last call succeeded */
    int worker_id;           /**< -1: no worker involved */
    long long index;         /**< item (or block start) that failed; -1: none */
    int signal;              /**< signal that ended a worker process; 0: none */
    int exit_status;         /**< exit status of a worker process that exited; -1: none */
    const char *callback;    /**< "kernel", "block_kernel", "get", "worker_begin", ...; NULL: none */
    const char *message;     /**< the text psh_last_error() returns */
} psh_error_info;

/** Fill *info about this thread's last call into libpasha that can fail.
 *  After a success code is 0 and worker_id, index, signal, exit_status and
 *  callback hold their "none" values; message is always psh_last_error()
 *  (whose text stays until the next failing call). A failed map sets:
 *   - a kernel, block kernel or functor get returning non-zero, or any
 *     callback throwing (C++): PSH_EKERNEL, the worker id the callback got,
 *     the index (a block kernel's block start; -1 for callbacks outside the
 *     items) and callback, one of "kernel", "block_kernel", "get",
 *     "functor_worker_begin", "functor_worker_end" (psh_functor_vtable),
 *     "worker_begin", "worker_end" (psh_map_options), "progress";
 *   - a worker process that died: PSH_EWORKER, its worker id, the index it
 *     was on (-1 before its first item), and signal (killed by a signal) or
 *     exit_status (exited; both none when its status was reaped elsewhere);
 *   - a cancel, an invalid argument, a system error: code only (a failed
 *     fork names the worker).
 *  The strings are static or thread-local: valid until this thread's next
 *  failing call. A struct_size smaller than the current struct fills only
 *  the fields that fit (a caller built against an older header).
 *  This call never changes the thread's error state, even when it fails.
 *  Errors: PSH_EINVAL (NULL info, struct_size too small to hold code). */
PSH_API int psh_last_error_info(psh_error_info *info);

/** The library version as "MAJOR.MINOR.PATCH". Static storage. */
PSH_API const char *psh_version(void);

/** The library version as MAJOR * 10000 + MINOR * 100 + PATCH (200 for
 *  0.2.0): compare with PSH_VERSION_NUMBER of the header compiled against. */
PSH_API unsigned psh_version_number(void);

/* ---------------------------------------------------------------------- */
/* 2. Contexts                                                            */
/* ---------------------------------------------------------------------- */

/** A context decides how a map runs: its kind, how many workers, how the
 *  work is split. Opaque and reference counted; thread-safe to share. */
typedef struct psh_context psh_context;

/** How the workers of a context run. */
typedef enum {
    PSH_SERIAL = 0,    /**< in the calling thread, as worker 0 */
    PSH_THREADS = 1,   /**< a pool of threads made with the context */
    PSH_PROCESSES = 2, /**< forked processes (see psh_context_options) */
    PSH_MPI = 3        /**< ranks of an MPI communicator (pasha_mpi.h) */
} psh_kind;

/** The default number of workers, the same everywhere: PASHA_NUM_WORKERS if
 *  set (malformed: PSH_EINVAL naming it), else the smallest of the affinity
 *  mask, the cgroup v2/v1 CPU quota rounded up, and SLURM_CPUS_PER_TASK. >= 1.
 *  The quota is the smallest one on the way from the process's cgroup up to
 *  the root (cgroup v2 cpu.max; v1 cpu.cfs_quota_us / cpu.cfs_period_us), so
 *  Docker --cpus, Kubernetes CPU limits and systemd CPUQuota count. Read
 *  afresh at every call; at most 4096. Errors: PSH_EINVAL (PASHA_NUM_WORKERS
 *  or SLURM_CPUS_PER_TASK not a whole number in 1..4096, named in
 *  psh_last_error). */
PSH_API int psh_cpu_count(void);

/** Create a context of `kind` with `num_workers` workers and return it in
 *  *out with one reference. num_workers <= 0 picks the default,
 *  psh_cpu_count() (this is also the default context's worker count and
 *  that of MPI contexts' local workers). PSH_SERIAL always has one worker.
 *  THREADS starts num_workers - 1 pool threads; the calling thread of
 *  psh_map is worker 0. PROCESSES forks num_workers children at every map,
 *  so kernels see the caller's memory as it was when psh_map was called.
 *  Errors: PSH_EINVAL (NULL out, unknown kind, num_workers > 4096, a
 *  malformed PASHA_NUM_WORKERS or SLURM_CPUS_PER_TASK), PSH_ESYS, PSH_ENOMEM. */
PSH_API int psh_context_create(psh_context **out, psh_kind kind, int num_workers);

/** Add one reference to ctx and return it (NULL stays NULL). */
PSH_API psh_context *psh_context_reference(psh_context *ctx);

/** Drop one reference; the context is freed, its threads joined and its
 *  worker processes ended, when the last one goes. NULL is a no-op. */
PSH_API void psh_context_destroy(psh_context *ctx);

/** The number of workers (worker ids run 0..n-1); 0 for NULL. */
PSH_API int psh_context_num_workers(const psh_context *ctx);

/** The kind of ctx; PSH_SERIAL for NULL. */
PSH_API psh_kind psh_context_kind(const psh_context *ctx);

/** The library's default context, made on first use as PSH_PROCESSES with
 *  the default number of workers. The library owns this reference: do not
 *  destroy it (take your own with psh_context_reference to keep it past a
 *  psh_set_default_*). NULL only if it could not be made (see
 *  psh_last_error). */
PSH_API psh_context *psh_get_default_context(void);

/** An owned reference to the library's default context (made on first use,
 *  as psh_get_default_context): safe against a concurrent psh_set_default_*,
 *  which may free the context psh_get_default_context returned. Prefer this
 *  one; drop the reference with psh_context_destroy. NULL only if the
 *  context could not be made (see psh_last_error). */
PSH_API psh_context *psh_default_context_ref(void);

/** Make ctx the default context; the library takes its own reference and
 *  drops the one it held. Errors: PSH_EINVAL (NULL ctx). */
PSH_API int psh_set_default_context(psh_context *ctx);

/** Replace the default context by a new one of `kind` with num_workers.
 *  Errors: as psh_context_create. */
PSH_API int psh_set_default_kind(psh_kind kind, int num_workers);

/** How a map's indices [0, n) are split among the workers. */
typedef enum {
    PSH_SCHEDULE_CONTEXT = -1, /**< in psh_map_options only: the context's */
    PSH_SCHEDULE_STATIC = 0,   /**< worker w gets [w*n/W, (w+1)*n/W): the
                                    original pasha's split */
    PSH_SCHEDULE_DYNAMIC = 1,  /**< workers take chunks from a shared counter */
    PSH_SCHEDULE_GUIDED = 2    /**< like dynamic, chunks shrink as work runs out */
} psh_schedule;

/** Everything about a context. Versioned: call psh_context_options_init. */
typedef struct psh_context_options {
    size_t struct_size;     /**< set by psh_context_options_init */
    psh_kind kind;          /**< PSH_PROCESSES after init */
    int num_workers;        /**< <= 0: the default (see psh_context_create) */
    int persistent;         /**< PSH_PROCESSES: fork the workers once, at
                                 creation, and reuse them for every map.
                                 Workers see every psh array live, whenever
                                 it was made. Everything else they see as a
                                 snapshot taken when the context was made:
                                 later writes to globals and memory
                                 allocated later by other means (malloc, the
                                 stack, later dlopen'ed code) are NOT
                                 visible to them. Pass such data through psh
                                 arrays, or user_data with
                                 psh_map_options.user_data_size.
                                 Arrays live in one shm arena reserved at
                                 the first allocation (PASHA_ARENA_SIZE,
                                 default twice the RAM, at least 64 GiB of
                                 address space); with PASHA_ARENA_SIZE=0, or
                                 once the arena is full, psh_alloc fails
                                 with PSH_ENOMEM while a persistent pool
                                 exists (its workers could not see the
                                 array). A map without worker hooks
                                 (psh_map_options.worker_begin/end, the
                                 functor's) on a pool without pin_cpus may
                                 run worker w's share in another worker
                                 process, under worker id w, when w has
                                 not started it (never two at once): keep
                                 per-worker state in per_worker arrays,
                                 not in a worker process's own memory. */
    psh_schedule schedule;  /**< default PSH_SCHEDULE_STATIC */
    size_t chunk;           /**< items per chunk for dynamic/guided (the
                                 smallest chunk for guided); 0: the library
                                 chooses */
    int pin_cpus;           /**< non-zero: pin worker w to the w-th CPU of the
                                 affinity mask, wrapping (threads and
                                 processes; the calling thread, worker 0 of
                                 a threads context, is never pinned) */
} psh_context_options;

/** Fill opts with the defaults and set struct_size. NULL is a no-op. */
PSH_API void psh_context_options_init(psh_context_options *opts);

/** Create a context from options (opts NULL: the defaults, i.e. a
 *  fork-per-map PSH_PROCESSES context). Errors: PSH_EINVAL (NULL out,
 *  struct_size too small, unknown kind or schedule, persistent on a kind
 *  that is not PSH_PROCESSES, too many workers), PSH_ESYS (fork or mmap
 *  failed), PSH_ENOMEM. */
PSH_API int psh_context_create_ext(psh_context **out, const psh_context_options *opts);

/** The context's schedule and chunk (0 when the library chooses). */
PSH_API psh_schedule psh_context_schedule(const psh_context *ctx);

/* ---------------------------------------------------------------------- */
/* 3. Shared-memory arrays                                                */
/* ---------------------------------------------------------------------- */

/** An n-dimensional array in shared memory, visible to every worker of
 *  every context at the same address. Opaque; free with psh_array_free.
 *
 *  Memory guarantees:
 *   - The memory is anonymous (memfd; shm_open where memfd_create is
 *     missing): it never appears as a file in /dev/shm and does not depend
 *     on the size of the /dev/shm mount (containers give it 64 MiB).
 *   - It is committed when the array is made: an array that does not fit
 *     is PSH_ENOMEM from psh_alloc, never a SIGBUS in a kernel. An array
 *     larger than the memory the process can have (RAM + swap, or the
 *     cgroup v1/v2 memory limit, counting the psh arrays it already holds)
 *     is refused up front with the numbers in psh_last_error, before the
 *     OOM killer could be involved.
 *   - Arrays are carved from one arena per process (PASHA_ARENA_SIZE of
 *     address space, digits with an optional K/M/G/T suffix, powers of
 *     1024; malformed values are PSH_EINVAL). The arena stays a couple of
 *     mappings however many arrays come and go, and keeps no file
 *     descriptor once mapped (where the kernel has MADV_POPULATE_WRITE,
 *     Linux >= 5.14; elsewhere its descriptor is checked before every use):
 *     a program that closes descriptors it does not own cannot make
 *     libpasha write into one of its files. Every descriptor libpasha opens
 *     is close-on-exec.
 *   - Aligned to at least 64 bytes (a page; per_worker arrays start 128 to
 *     3968 bytes past one, see psh_alloc_options), zero-filled unless a fill
 *     value is given; excluded from core dumps except for the part arrays
 *     have used. */
typedef struct psh_array psh_array;

/** Element types (numpy's names: int8 ... complex128). Complex types are
 *  pairs of float32 / float64 (real, imaginary). */
typedef enum {
    PSH_INT8, PSH_UINT8, PSH_INT16, PSH_UINT16, PSH_INT32, PSH_UINT32,
    PSH_INT64, PSH_UINT64, PSH_FLOAT32, PSH_FLOAT64,
    PSH_COMPLEX64, PSH_COMPLEX128
} psh_dtype;

/** Memory order of an array's elements. */
typedef enum {
    PSH_ORDER_DEFAULT = 0, /**< C for psh_alloc, like's order for psh_alloc_like */
    PSH_ORDER_C = 1,       /**< row-major: the last index varies fastest */
    PSH_ORDER_F = 2        /**< column-major: the first index varies fastest */
} psh_order;

/** Options of psh_alloc. Versioned: call psh_alloc_options_init. */
typedef struct psh_alloc_options {
    size_t struct_size;  /**< set by psh_alloc_options_init */
    psh_order order;     /**< PSH_ORDER_DEFAULT after init */
    const void *fill;    /**< NULL: zero-filled; else points at one element
                              of the dtype, copied into every element */
    int per_worker;      /**< non-zero: add an axis of length num_workers of
                              the context, first in C order, last in F order,
                              to be indexed by worker_id; the data starts
                              128..3968 bytes (a multiple of 128) past a page
                              boundary (no 4K aliasing with page-aligned
                              inputs). 1 (any value but 0 and
                              PSH_PER_WORKER_PADDED): contiguous strides, the
                              rows back to back; PSH_PER_WORKER_PADDED: rows
                              apart, see below */
} psh_alloc_options;

/** Values of psh_alloc_options.per_worker besides 0 (none) and 1 (rows
 *  back to back). */
enum {
    /** Per-worker rows with gaps. Row w starts at data + w * strides[worker
     *  axis] (strides[0] in C order, the last in F order), a multiple of 128
     *  bytes, and at least 128 bytes after row w-1 ends; within a row the
     *  strides are contiguous. Use it for small rows that workers update
     *  often (histograms, counters, partial sums): back to back, a core's
     *  next-line prefetcher keeps pulling the next worker's first cache line
     *  away from it (bench (f): 1.4x slower). The array is not contiguous:
     *  index rows with the strides; psh_array_nbytes counts the elements
     *  only; psh_mpi_reduce reduces it (gaps included), psh_mpi_gather and
     *  psh_mpi_allgather refuse it (PSH_EINVAL). Fill values fill the gaps
     *  too. */
    PSH_PER_WORKER_PADDED = 2
};

/** Fill opts with the defaults and set struct_size. NULL is a no-op. */
PSH_API void psh_alloc_options_init(psh_alloc_options *opts);

/** Allocate an array of `ndim` dimensions (0..32) of the given shape and
 *  dtype in shared memory and return it in *out. ctx NULL: the default
 *  context (it matters for per_worker and for MPI contexts); opts NULL:
 *  the defaults (C order, zero-filled). A zero-length dimension is allowed.
 *  Errors: PSH_EINVAL (NULL out, NULL shape with ndim > 0, bad ndim, dtype
 *  or order, a byte size that overflows, a malformed PASHA_ARENA_SIZE),
 *  PSH_ENOMEM (more than the memory the process can have, or not enough
 *  address space), PSH_ESYS. */
PSH_API int psh_alloc(psh_array **out, psh_context *ctx, psh_dtype dtype, int ndim,
                      const size_t *shape, const psh_alloc_options *opts);

/** Allocate an array with the shape and dtype of `like`, in like's order
 *  unless opts set one. per_worker adds the worker axis to like's shape.
 *  Errors: as psh_alloc; PSH_EINVAL for NULL like. */
PSH_API int psh_alloc_like(psh_array **out, psh_context *ctx, const psh_array *like,
                           const psh_alloc_options *opts);

/** Free an array and give its memory back. Pointers into it become invalid;
 *  functors made over it must not be used afterwards. NULL is a no-op. */
PSH_API void psh_array_free(psh_array *a);

/** The first element. Writable by every worker; NULL for NULL. */
PSH_API void *psh_array_data(const psh_array *a);
/** The element type. */
PSH_API psh_dtype psh_array_dtype(const psh_array *a);
/** The number of dimensions; 0 for NULL. */
PSH_API int psh_array_ndim(const psh_array *a);
/** The shape: ndim lengths, owned by the array. */
PSH_API const size_t *psh_array_shape(const psh_array *a);
/** The strides in bytes: ndim values, owned by the array. */
PSH_API const ptrdiff_t *psh_array_strides(const psh_array *a);
/** The memory order the array was made in (C or F). */
PSH_API psh_order psh_array_order(const psh_array *a);
/** The number of elements (the product of the shape). */
PSH_API size_t psh_array_size(const psh_array *a);
/** The number of bytes of data (size times the dtype's size). */
PSH_API size_t psh_array_nbytes(const psh_array *a);
/** The size of one element of dtype in bytes; 0 for an unknown dtype. */
PSH_API size_t psh_dtype_size(psh_dtype dtype);

/* ---------------------------------------------------------------------- */
/* 4. Functors: what a map iterates over                                  */
/* ---------------------------------------------------------------------- */

/** A functor has a length n and hands the kernel one value per index in
 *  [0, n). Opaque; a functor may be used by several maps, one at a time
 *  or at once. Destroy with psh_functor_destroy. */
typedef struct psh_functor psh_functor;

/** A sub-array as handed to kernels by psh_functor_array/_strided. The
 *  pointers are valid during the kernel call only. */
typedef struct psh_view {
    void *data;               /**< the sub-array's first element */
    psh_dtype dtype;          /**< the element type */
    int ndim;                 /**< the source's ndim - 1 */
    const size_t *shape;      /**< ndim lengths */
    const ptrdiff_t *strides; /**< ndim strides in bytes */
} psh_view;

/** Callbacks of a user-written functor. Versioned: set struct_size to
 *  sizeof(psh_functor_vtable). The callbacks run inside the workers, in
 *  threads or child processes, and must be safe to call concurrently. */
typedef struct psh_functor_vtable {
    size_t struct_size;       /**< sizeof(psh_functor_vtable) */
    /** The number of items. Called once, by psh_functor_custom. */
    size_t (*length)(void *self);
    /** Set *value to what the kernel gets for index; non-zero: error,
     *  which stops the map with PSH_EKERNEL. */
    int (*get)(void *self, size_t index, const void **value);
    /** Optional: runs inside the worker before its first item (e.g. reopen
     *  files in a child process); non-zero: error, as for get. */
    int (*worker_begin)(void *self, int worker_id);
    /** Optional: runs inside the worker after its last item. */
    void (*worker_end)(void *self, int worker_id);
} psh_functor_vtable;

/** The indices 0..n-1; the kernel's value is NULL. */
PSH_API int psh_functor_range(psh_functor **out, size_t n);

/** count elements of foreign memory at base, stride bytes apart; the
 *  kernel's value is base + i*stride. The memory must outlive the maps.
 *  Errors: PSH_EINVAL (NULL out, NULL base with count > 0, (count - 1) *
 *  stride overflowing the address space). */
PSH_API int psh_functor_sequence(psh_functor **out, const void *base, size_t count,
                                 size_t stride);

/** The sub-arrays of a along `axis` (negative counts from the end, as in
 *  numpy); the kernel's value is a const psh_view * of sub-array i. For a
 *  1-d array the view is 0-d: its data points at element i. a must
 *  outlive the functor. Errors: PSH_EINVAL (NULL, 0-d array, bad axis). */
PSH_API int psh_functor_array(psh_functor **out, const psh_array *a, int axis);

/** The same over foreign memory described by dtype, shape and byte
 *  strides, e.g. a numpy array. strides NULL: C-contiguous. Errors: as
 *  psh_functor_array, and PSH_EINVAL when the strides make an element's
 *  offset overflow ptrdiff_t. */
PSH_API int psh_functor_strided(psh_functor **out, const void *data, psh_dtype dtype, int ndim,
                                const size_t *shape, const ptrdiff_t *strides, int axis);

/** A functor made of user callbacks; vt is copied, self is passed back to
 *  every callback and must outlive the functor. Errors: PSH_EINVAL (NULL
 *  vt, struct_size too small, NULL length or get). */
PSH_API int psh_functor_custom(psh_functor **out, const psh_functor_vtable *vt, void *self);

/** The number of items; 0 for NULL. */
PSH_API size_t psh_functor_length(const psh_functor *f);

/** Destroy a functor. NULL is a no-op. */
PSH_API void psh_functor_destroy(psh_functor *f);

/* ---------------------------------------------------------------------- */
/* 5. Map                                                                 */
/* ---------------------------------------------------------------------- */

/** A kernel, called once per index: user_data as given to psh_map,
 *  worker_id in 0..num_workers-1 (no two workers share an id at once, so
 *  per_worker arrays can be indexed by it), the index, and the functor's
 *  value for it. Return 0; non-zero stops the map (PSH_EKERNEL). */
typedef int (*psh_kernel)(void *user_data, int worker_id, size_t index, const void *value);

/** Call kernel for every index of functor, split among ctx's workers, and
 *  return when all are done. ctx NULL: the default context (a thread that
 *  may race with psh_set_default_* should pass psh_default_context_ref()).
 *  Results must be written into psh arrays: in a PSH_PROCESSES context
 *  nothing else the kernel writes reaches the caller.
 *  A kernel's non-zero return stops the map early (other workers stop at
 *  their next item) and gives PSH_EKERNEL; psh_last_error names the index,
 *  the worker and the code. A worker process that dies gives PSH_EWORKER,
 *  naming the signal or exit status and the index; the context stays
 *  usable. Never hangs on a dead worker.
 *  In a worker process, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT and
 *  SIGSYS have their default action (so a crash ends the worker and is
 *  reported) and SIGINT is ignored (the caller handles Ctrl-C).
 *  Called from inside a kernel, psh_map runs the inner map serially in the
 *  calling worker, with the same worker_id. Two threads mapping on one
 *  context at once are serialized.
 *  Errors: PSH_EINVAL (NULL kernel or functor), PSH_EKERNEL, PSH_EWORKER,
 *  PSH_ESYS (fork failed). */
PSH_API int psh_map(psh_context *ctx, psh_kernel kernel, void *user_data, psh_functor *functor);

/** A block kernel: called once per contiguous chunk [begin, end) of the
 *  indices, by worker worker_id. Return 0; non-zero is an error as for
 *  psh_kernel, reported at index begin. */
typedef int (*psh_block_kernel)(void *user_data, int worker_id, size_t begin, size_t end);

/** Call kernel once per contiguous chunk of [0, n), split as the context's
 *  schedule says; with the static schedule each worker gets its whole
 *  share [w*n/W, (w+1)*n/W) in one call (empty shares are not called).
 *  Errors: as psh_map. */
PSH_API int psh_map_blocks(psh_context *ctx, psh_block_kernel kernel, void *user_data, size_t n);

/** Progress callback: done of total items finished. Called from the
 *  thread that called psh_map_ext, at most about 10 times a second, and
 *  once at the end when the map succeeded. */
typedef void (*psh_progress_fn)(void *user_data, size_t done, size_t total);

/** Options of one map. Versioned: call psh_map_options_init. */
typedef struct psh_map_options {
    size_t struct_size;          /**< set by psh_map_options_init */
    psh_schedule schedule;       /**< PSH_SCHEDULE_CONTEXT after init */
    size_t chunk;                /**< 0: the context's; a chunk larger than
                                      the map counts as the whole map */
    psh_progress_fn progress;    /**< NULL: none */
    void *progress_data;         /**< passed to progress */
    const volatile int *cancel;  /**< NULL, or a flag that another thread or
                                      a signal handler sets non-zero to end
                                      the map with PSH_ECANCELED; workers stop
                                      at their next item and none is left
                                      behind. The library reads it with
                                      relaxed atomic loads: another thread
                                      should set it with an atomic store
                                      (C11 atomic_store_explicit, or
                                      __atomic_store_n) */
    size_t user_data_size;       /**< persistent pools only: copy this many
                                      bytes (at most 65536) of user_data into
                                      memory the workers share and hand the
                                      kernels the copy, so user_data may live
                                      on the caller's stack. 0: pass the
                                      pointer as is. Other kinds ignore it. */
    /** NULL, or called in each worker (its thread or process) once per map,
     *  before its first item, with the map's user_data (the shared copy in
     *  a persistent pool) and the worker's id; non-zero fails the map like
     *  a kernel error (PSH_EKERNEL, callback "worker_begin") and that worker
     *  runs no items. Every worker of the map runs it, also one that gets
     *  no items (so per-worker setup and teardown always pair up); a
     *  worker that takes several chunks (dynamic, guided) runs it once.
     *  It runs before the functor's worker_begin (psh_functor_vtable). A map
     *  of no items returns at once and runs neither; a map nested in a
     *  kernel runs its hooks in that worker, around the inner map. */
    int (*worker_begin)(void *user_data, int worker_id);
    /** NULL, or called in each worker once per map after its last item,
     *  also after an error, when its worker_begin (if any) returned 0; runs
     *  after the functor's worker_end and before psh_map returns. Non-zero
     *  fails the map (PSH_EKERNEL, callback "worker_end") unless it already
     *  failed. A worker process that dies does not run it. */
    int (*worker_end)(void *user_data, int worker_id);
} psh_map_options;

/** Fill the first struct_size bytes of opts with the defaults and set its
 *  struct_size to them (at most sizeof(psh_map_options) of this version):
 *  the safe way to initialize a struct that may be older or newer than the
 *  library. NULL, or a size too small for schedule, is a no-op. */
PSH_API void psh_map_options_init_size(psh_map_options *opts, size_t struct_size);

/** Fill opts with the defaults and set struct_size. NULL is a no-op.
 *  From C and C++ this is a macro that passes sizeof(psh_map_options) of
 *  the header compiled against to psh_map_options_init_size. The exported
 *  function of this name (what binaries built against pasha 0.2 or older, and
 *  foreign-function interfaces call) fills the struct as it was in 0.2, up
 *  to user_data_size, so that it never writes past an older caller's
 *  struct; an FFI that declares worker_begin / worker_end must call
 *  psh_map_options_init_size instead. */
PSH_API void psh_map_options_init(psh_map_options *opts);
/** psh_map_options_init for C and C++: the size of the struct compiled against. */
#define psh_map_options_init(opts) psh_map_options_init_size((opts), sizeof(psh_map_options))

/** psh_map with options (opts NULL: as psh_map). Errors: as psh_map;
 *  PSH_ECANCELED; PSH_EINVAL for a bad schedule or struct_size. */
PSH_API int psh_map_ext(psh_context *ctx, psh_kernel kernel, void *user_data,
                        psh_functor *functor, const psh_map_options *opts);

/** psh_map_blocks with options (opts NULL: as psh_map_blocks). */
PSH_API int psh_map_blocks_ext(psh_context *ctx, psh_block_kernel kernel, void *user_data,
                               size_t n, const psh_map_options *opts);

/* ---------------------------------------------------------------------- */
/* 6. Guarantees at the worker boundary; fork hooks                       */
/* ---------------------------------------------------------------------- */

/*
 * C++ exceptions. A kernel, block kernel, functor callback (get,
 * worker_begin, worker_end) or progress callback compiled as C++ may throw
 * through the C function pointer, in every kind. The throw stops the map
 * like a non-zero return: PSH_EKERNEL, and psh_last_error names the
 * callback, the exception's type and what(), the index and the worker. It
 * never calls std::terminate, never leaves a helper thread running after
 * psh_map returned, never lets a forked worker return into the program, and
 * the context stays usable (a pool keeps its workers).
 *
 * Worker processes. A forked worker runs only libpasha's worker loop and
 * the callbacks, and always ends with _exit: it never returns into the
 * program, never runs atexit handlers, and drops the stdio buffers it
 * inherited (the caller writes its own pending output once); what kernels
 * print to stdout and stderr is flushed when the worker ends, and after
 * each map in a pool. Output a kernel writes to other FILE streams must be
 * flushed by the kernel. A pool's workers end with the process that made
 * them, not with the thread that made them (a pool worker's parent-death
 * signal is SIGRTMIN+5, whose handler ends it only when the parent process
 * is gone: kernels must leave that signal's disposition alone); a worker
 * that dies between maps is replaced at the next map, which then runs
 * normally.
 *
 * The program's own forks. A program may call fork() while other threads
 * are inside libpasha, even inside psh_map: in the child, every context
 * that existed works (threads and worker processes are made anew there at
 * its first map), new contexts and pools work, and psh_alloc serves arrays
 * from an arena of the child's own (arrays inherited from the parent stay
 * shared with it). This relies on pthread_atfork handlers, so a child made
 * by a raw clone() or _Fork() (which run no fork handlers) must not use
 * libpasha.
 *
 * Cancelling. The cancel flag (psh_map_options.cancel) is honoured at the
 * next item boundary in every kind (the next block for block kernels).
 * Threads cannot be killed: a kernel that never returns keeps a serial or
 * threads map waiting for ever, whatever the flag says. Worker processes
 * still running 1 s after a cancel are killed (SIGKILL).
 *
 * Re-entrance. A progress callback that calls psh_map on the context it
 * reports on gets PSH_EINVAL (it would wait for itself); a psh_map called
 * from inside a kernel runs serially in that worker.
 *
 * OpenMP and other thread pools inside kernels. Kernels may use OpenMP in
 * every kind. GNU libgomp's threads do not survive fork (a region in the
 * child would wait for them for ever), so before libpasha forks worker
 * processes (fork-per-map maps, pool creation, pool workers replaced) it
 * asks a loaded libgomp to release the forking thread's threads with
 * omp_pause_resource_all(omp_pause_soft) (looked up at run time: libpasha
 * links no OpenMP runtime); the parent's next OpenMP region starts new
 * threads, which costs it some tens of microseconds after each
 * fork-per-map map. LLVM's libomp and Intel's libiomp5 re-initialise
 * themselves in the child and are left alone. A libgomp without that
 * function (older than OpenMP 5.0) in a process with other threads makes
 * such a map fail at once with PSH_ENOTSUP naming the runtime and the
 * remedies (a newer GCC, a PSH_THREADS context, or a persistent pool made
 * before the first OpenMP region). Pools with their own fork handling
 * (OpenBLAS, as in numpy) need nothing.
 *
 * Unloading. libpasha is linked with -z nodelete: dlclose of libpasha, or
 * of a plugin linked to it, leaves libpasha mapped, so the threads it
 * started (a threads context's, the default context's) stay valid. A
 * context left alive at dlclose keeps its threads or worker processes
 * until the process ends; kernels and fork hooks that live in a plugin
 * must not be used after the plugin is unloaded.
 */

/** A hook run around the forks libpasha makes for its worker processes. */
typedef void (*psh_fork_hook)(void *data);

/** Register hooks run around every fork libpasha makes for a worker process
 *  (fork-per-map maps, pool creation, pool workers replaced): `prepare` in
 *  the forking thread just before fork, `parent` in it just after, `child`
 *  in the new worker before any kernel or functor callback. As with
 *  pthread_atfork, prepare hooks run in reverse order of registration and
 *  the others in order; any of the three may be NULL. They are not run for
 *  forks the program makes itself. A language runtime uses this to keep
 *  its own state consistent across the fork (CPython: PyOS_BeforeFork,
 *  PyOS_AfterFork_Parent, PyOS_AfterFork_Child). Hooks cannot be removed.
 *  Errors: PSH_EINVAL (all three NULL), PSH_ENOMEM (more than 16 sets). */
PSH_API int psh_register_fork_hooks(psh_fork_hook prepare, psh_fork_hook parent, psh_fork_hook child,
                                    void *data);

#ifdef __cplusplus
}
#endif

#endif /* PASHA_PASHA_H */
