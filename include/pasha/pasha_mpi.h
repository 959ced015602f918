/*
 * libpasha over MPI: one psh_map spread over the ranks of a communicator,
 * each rank mapping its block with a local threads or processes context.
 * Installed only when libpasha is built with -Dmpi=enabled; link with
 * libpasha_mpi, which stands on libpasha (pkg-config pasha-mpi, which
 * brings pasha and MPI, or CMake pasha::pasha_mpi): a process has one
 * engine whichever library it calls.
 *
 * Every function here, psh_alloc/psh_alloc_like/psh_array_free on an array
 * of an MPI context, psh_map and its variants on an MPI context and
 * psh_context_destroy of the last reference are COLLECTIVE: every rank of
 * the communicator calls them, in the same order, with the same sizes.
 * Call them from one thread per rank (MPI_THREAD_FUNNELED is enough); free
 * arrays and destroy MPI contexts before MPI_Finalize.
 *
 * No rank hangs the others: each of these calls (psh_context_destroy and
 * psh_array_free aside, which cannot fail) starts with one small allreduce
 * in which the ranks agree that every one of them can go ahead. An error
 * found on one rank only (bad arguments or map options, a cancel flag
 * already set, a buffer that cannot be made, a different call or size than
 * the other ranks) is returned on EVERY rank, with the message of the
 * lowest failing rank prefixed by "rank N: "; a node whose buffer was made
 * frees it again when another node's failed. A map's cancel flag, given on
 * any rank, stops every rank: a rank that is cancelled (or fails) sends
 * the others a stop message, which their local maps look for as they run
 * (where they look for their own cancel flag, without waiting for each
 * other), so they stop shortly after. The one argument this
 * cannot cover is ctx itself: it must be the same MPI context on every
 * rank (a NULL or other ctx on one rank cannot reach the others).
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#ifndef PASHA_PASHA_MPI_H
#define PASHA_PASHA_MPI_H

#include <mpi.h>

#include "pasha.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Element-wise operations of psh_mpi_reduce. */
enum {
    PSH_OP_SUM = 0, /**< the sum (complex dtypes: the complex sum) */
    PSH_OP_MIN = 1, /**< the minimum (not for complex dtypes) */
    PSH_OP_MAX = 2  /**< the maximum (not for complex dtypes) */
};

/** Create a PSH_MPI context over the ranks of comm (collective over comm;
 *  comm is duplicated, so the caller may free its own handle). Each rank
 *  runs its share with a local context of local_kind (PSH_SERIAL,
 *  PSH_THREADS or PSH_PROCESSES) and local_workers workers (<= 0: the
 *  default, as psh_context_create). psh_context_num_workers gives the
 *  total over all ranks; rank r's workers have the global ids
 *  offset_r .. offset_r + local - 1, offset_r being the sum of the local
 *  counts of ranks 0..r-1, so per_worker arrays work unchanged.
 *  psh_map splits [0, n) over the ranks in contiguous blocks (rank r:
 *  [r*q + min(r, n%R), ...) with q = n/R for R ranks); kernels see global
 *  indices. A failure on any rank (kernel error, dead worker process,
 *  cancel, ...) makes psh_map return the code of the lowest failing rank on
 *  every rank, its message prefixed by "rank N: ".
 *  psh_alloc on the context makes one buffer per node, an MPI shared
 *  window on the node's communicator, which all the node's ranks and their
 *  workers write zero-copy; psh_array_data is valid in every rank. A
 *  window that would pass a rank's RLIMIT_AS (with 64 MiB to spare) is
 *  PSH_ENOMEM on every rank, as one that does not fit in /dev/shm.
 *  Errors (on every rank alike when they come from one rank): PSH_EINVAL
 *  (NULL out, MPI not initialized or already finalized, MPI_COMM_NULL, an
 *  intercommunicator, local_kind not one of the three,
 *  PASHA_MPI_NODE_SIZE neither empty nor a non-negative integer), and
 *  those of psh_context_create for the local context. */
PSH_API int psh_context_create_mpi(psh_context **out, MPI_Comm comm, psh_kind local_kind, int local_workers);

/** psh_context_create_mpi with every option of the local context: each
 *  rank's local context is made by psh_context_create_ext(local), and the
 *  MPI context's maps take its schedule and chunk (a PSH_SCHEDULE_DYNAMIC
 *  local context hands out chunks within the rank's block) and pin_cpus.
 *  local->kind is the local kind, local->num_workers the workers per rank
 *  (<= 0: psh_cpu_count()). Errors: those of psh_context_create_mpi, and
 *  PSH_EINVAL for a NULL local, a struct_size below 0.2's options (not
 *  initialised with psh_context_options_init) or local->persistent (the
 *  MPI context's local maps fork per map). */
PSH_API int psh_context_create_mpi_ext(psh_context **out, MPI_Comm comm, const psh_context_options *local);

/** The rank of the calling process in the context's communicator and the
 *  number of ranks; -1 / 0 for NULL or a context that is not PSH_MPI. */
PSH_API int psh_mpi_rank(const psh_context *ctx);
PSH_API int psh_mpi_size(const psh_context *ctx);

/** After a map in which every index was written by one rank: the whole
 *  array on root (collective). The array's slowest axis (axis 0 in C
 *  order, the last in F order) of length m is split as psh_map splits m
 *  items, and rank r contributes its block of it: the layout of a map over
 *  psh_functor_array(a, 0) or psh_functor_range(m). For an array of the
 *  MPI context, the result is in root's node buffer (so every rank on
 *  root's node sees it); for any other psh array it is root's own copy.
 *  Errors: PSH_EINVAL (NULL or non-MPI ctx, NULL a, 0-d array, root out of
 *  range, an array of another MPI context, a slab too big for MPI, padded
 *  per-worker rows: PSH_PER_WORKER_PADDED). */
PSH_API int psh_mpi_gather(psh_context *ctx, psh_array *a, int root);

/** psh_mpi_gather with the whole array on every rank afterwards. */
PSH_API int psh_mpi_allgather(psh_context *ctx, psh_array *a);

/** Element-wise op (PSH_OP_SUM, _MIN, _MAX) across ranks, the result in a
 *  on root (collective), e.g. of per_worker accumulators. For an array of
 *  the MPI context the ranks of one node share one buffer, so each NODE
 *  contributes once (its buffer, which its ranks wrote together) and the
 *  result lands in root's node buffer; for any other psh array each rank
 *  contributes its own copy. PSH_PER_WORKER_PADDED rows are reduced with
 *  their gaps. Errors: PSH_EINVAL (as psh_mpi_gather but for padded rows;
 *  an unknown op; MIN/MAX of a complex dtype). */
PSH_API int psh_mpi_reduce(psh_context *ctx, psh_array *a, int op, int root);

#ifdef __cplusplus
}
#endif

#endif /* PASHA_PASHA_MPI_H */
