/*
 * The engine's interface for libpasha's optional parts (the MPI context of
 * libpasha_mpi, and the Python package's MPI extension), which build on the
 * one engine of the process instead of carrying a copy of it. NOT a public
 * API: never installed, not in pasha.h, and reached only through
 * psh_internal_engine_get(PSH_INTERNAL_VERSION), which returns NULL for any
 * other version, so a part built against another layout fails cleanly.
 *
 * Plain C, so that no C++ type, exception or vtable crosses the boundary
 * between the two libraries: errors travel as (code, message) in a
 * psh_internal_failure.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#ifndef PASHA_INTERNAL_H
#define PASHA_INTERNAL_H

#include <stddef.h>

#include "pasha/pasha.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PSH_INTERNAL_VERSION 2

/* Why a call across the boundary failed: a PSH_E* code and its text, and
 * for a failed map the facts of psh_error_info (worker_id, index: -1,
 * signal: 0, exit_status: -1 where they do not apply; zero-initialised
 * fields count as "not set": a part fills them only for a map). */
typedef struct psh_internal_failure {
    int code;
    char message[1024];
    int has_info; /* the four fields below are set */
    int worker_id;
    long long index;
    int signal;
    int exit_status;
} psh_internal_failure;

/* One map in progress on an external context (opaque: the engine's job
 * and its progress/cancel monitor). */
typedef struct psh_internal_job psh_internal_job;

/* A context kind implemented outside the engine. impl is the part's own
 * object; every callback returns PSH_OK or a code with *err filled. */
typedef struct psh_internal_kind {
    /* Run the items [begin, end) of job (cancel: the map's flag or NULL). */
    int (*run)(void *impl, psh_internal_job *job, size_t begin, size_t end, const volatile int *cancel,
               psh_internal_failure *err);
    /* Memory for an array of nbytes: *data, and *block for free_block. */
    int (*allocate)(void *impl, size_t nbytes, void **data, void **block, psh_internal_failure *err);
    void (*free_block)(void *block);
    /* A psh_alloc or map on the context failed its checks on this process
     * before allocate or run (code, message): a collective kind makes it
     * every process's error (returns it, possibly with another rank's
     * text); PSH_OK: keep the local error. */
    int (*refuse)(void *impl, int code, const char *message, psh_internal_failure *err);
    /* The last reference went (psh_context_destroy). */
    void (*destroy)(void *impl);
    /* Non-NULL: a map in a process forked from the creator fails with
     * PSH_ENOTSUP and this text. */
    const char *after_fork;
} psh_internal_kind;

typedef struct psh_internal_engine {
    size_t struct_size;
    int version;
    /* A context of kind PSH_MPI with num_workers workers whose maps and
     * allocations go to kind's callbacks on impl (which it owns from here
     * on, even when this fails); its maps take the schedule and chunk of
     * the context local (the part's local context). */
    int (*context_create_external)(psh_context **out, const psh_internal_kind *kind, void *impl, int num_workers,
                                   const psh_context *local, psh_internal_failure *err);
    /* impl of ctx if it is an external context of kind, else NULL. */
    void *(*context_impl)(const psh_context *ctx, const psh_internal_kind *kind);
    /* impl of the context of kind whose allocate made a's memory, else NULL. */
    void *(*array_impl)(const psh_array *a, const psh_internal_kind *kind);
    /* Bytes from a's data to one past its last element (> nbytes: padded rows). */
    size_t (*array_span)(const psh_array *a);
    /* Run [begin, end) of job on the local context with worker ids from
     * worker_base (its progress and cancel flag come along); poll (may be
     * NULL) is asked in this thread while the map runs, and non-zero stops
     * it as a cancel does (PSH_ECANCELED). */
    int (*map_local)(psh_context *local, psh_internal_job *job, size_t begin, size_t end, int worker_base,
                     int (*poll)(void *), void *poll_data, psh_internal_failure *err);
    /* The engine's zeroed shared memory (its arena) of nbytes: *data and
     * *block, freed by shm_free. */
    int (*shm_alloc)(size_t nbytes, void **data, void **block, psh_internal_failure *err);
    void (*shm_free)(void *block);
    /* Set the thread's psh_last_error() to "fn: message"; returns code. */
    int (*set_error)(const char *fn, int code, const char *message);
    /* The public API, for parts that cannot link the engine's symbols
     * (a Python extension module next to the one holding the engine). */
    int (*context_create)(psh_context **out, psh_kind kind, int num_workers);
    int (*alloc)(psh_array **out, psh_context *ctx, psh_dtype dtype, int ndim, const size_t *shape,
                 const psh_alloc_options *opts);
    void (*array_free)(psh_array *a);
    void (*context_destroy)(psh_context *ctx);
    int (*context_num_workers)(const psh_context *ctx);
    psh_schedule (*context_schedule)(const psh_context *ctx);
    const char *(*last_error)(void);
    int (*cpu_count)(void);
    void *(*array_data)(const psh_array *a);
    psh_dtype (*array_dtype)(const psh_array *a);
    int (*array_ndim)(const psh_array *a);
    const size_t *(*array_shape)(const psh_array *a);
    psh_order (*array_order)(const psh_array *a);
    size_t (*array_size)(const psh_array *a);
    size_t (*array_nbytes)(const psh_array *a);
    size_t (*dtype_size)(psh_dtype dtype);
    void (*context_options_init)(psh_context_options *opts);
    int (*context_create_ext)(psh_context **out, const psh_context_options *opts);
} psh_internal_engine;

/* The engine's table for version PSH_INTERNAL_VERSION; NULL for any other. */
PSH_API const psh_internal_engine *psh_internal_engine_get(int version);

#ifdef __cplusplus
}
#endif

#endif /* PASHA_INTERNAL_H */
